"""Checks of a valid config against this machine: what would fail at spawn time.

This module owns the look at the file system that ``dsup check`` adds to
validation: is each program's working directory a directory, and can its
executable be found. It does not own validation itself (``config``): a config
that passes here on one machine may not on another, so these are warnings.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.config import Config, ProgramSpec


def preflight(config: Config) -> list[str]:
    """Problems a spawn of each program would hit here, one line each (may be empty)."""
    return [problem for spec in config.programs.values() for problem in _program(spec)]


def _program(spec: ProgramSpec) -> list[str]:
    where = f"programs.{spec.name}"
    if not spec.cwd.is_dir():
        return [f"{where}.cwd: {str(spec.cwd)!r} is not a directory"]
    executable = spec.command[0]
    # Like exec: a name with a slash is a path (relative to cwd), else looked up in PATH.
    if "/" in executable:
        path = spec.cwd / executable
        if not os.access(path, os.X_OK) or path.is_dir():
            return [f"{where}.command: {str(path)!r} is not an executable file"]
        return []
    search = spec.env.get("PATH", os.environ.get("PATH", os.defpath))
    if shutil.which(executable, path=search) is None:
        return [f"{where}.command: {executable!r} is not found in PATH"]
    return []

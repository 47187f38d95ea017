"""Helpers for the task tests: task programs running ``tests/workers/task_worker.py``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psutil

WORKER = Path(__file__).parent.parent / "workers" / "task_worker.py"


def task_program(name: str, *args: str, **keys: object) -> str:
    """A ``[programs.NAME]`` table of a oneshot task worker in mode ``args``."""
    settings: dict[str, object] = {
        "command": [sys.executable, "-u", str(WORKER), *args],
        "tasks": "oneshot",
        "stop_timeout_seconds": 2.0,
        **keys,
    }
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    return f"[programs.{name}]\n{body}\n"


def held(hold_dir: Path) -> dict[int, list[psutil.Process]]:
    """The tasks a ``hold`` worker reported, with their process and grandchild."""
    found: dict[int, list[psutil.Process]] = {}
    for path in hold_dir.glob("*.pids"):
        pids = [int(p) for p in path.read_text().split()]
        procs = []
        for pid in pids:
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
        found[int(path.stem)] = procs
    return found

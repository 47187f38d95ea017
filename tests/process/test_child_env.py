"""A run's environment: dsup's own secrets stay with dsup."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.config.schema import ProgramSpec
from supervisor.process.run import child_env

if TYPE_CHECKING:
    import pytest


def _env(spec: ProgramSpec) -> dict[str, str]:
    return child_env(
        spec, node="n", instance_id="i", process="w:0", run_id="r", secrets={"BOT_TOKEN"}
    )


def test_child_env_leaves_out_secrets_unless_the_program_sets_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOT_TOKEN", "s3cret")
    monkeypatch.setenv("OTHER", "kept")
    env = _env(ProgramSpec(name="w", command=("true",), cwd=Path("/")))
    assert "BOT_TOKEN" not in env
    assert env["OTHER"] == "kept"
    given = _env(
        ProgramSpec(name="w", command=("true",), cwd=Path("/"), env={"BOT_TOKEN": "its own"})
    )
    assert given["BOT_TOKEN"] == "its own"

"""examples/pipeline runs as its README says: a planner, two workers, a human's yes.

Its ``dsup ctl`` sample is what ctl prints in that run, and its Discord sample what
the bridge's own functions say of the run's tasks (any number for any number).
"""

from __future__ import annotations

import functools
import os
import pwd
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from supervisor.bridge.tasks import announcement, answer_text
from supervisor.commands.access import AccessLevel, Actor
from supervisor.tasks.records import TaskRecord, TaskState
from tests._control import Node, running_node
from tests._e2e import ctl_run
from tests._wait import eventually
from tests.test_docs import samples, shape

if TYPE_CHECKING:
    from supervisor.events import Question

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "pipeline"
ALICE = Actor(name="alice", source="local", level=AccessLevel.ADMIN)


def _copy(tmp_path: Path) -> Path:
    """The example in ``tmp_path`` (its state there too), with worker_sdk on the path."""
    where = tmp_path / "pipeline"
    shutil.copytree(EXAMPLE, where, ignore=shutil.ignore_patterns(".dsup"))
    config = where / "dsup.toml"
    text = config.read_text(encoding="utf-8").replace('"../.."', repr(str(REPO)).replace("'", '"'))
    config.write_text(text, encoding="utf-8")
    return config


async def _open_question(node: Node) -> Question:
    """The one open question, once there is one."""
    found: list[Question] = []

    async def probe() -> bool:
        found[:] = (await node.service.asks(ALICE)).questions
        return len(found) == 1

    await eventually(probe, seconds=30)
    return found[0]


def _ctl(config: Path, *args: str) -> list[str]:
    """What ``dsup ctl`` prints, the local user called alice as in the README."""
    done = ctl_run(config, *args)
    assert done.returncode == 0, done.stderr
    me = re.compile(rf"\b{re.escape(pwd.getpwuid(os.getuid()).pw_name)}\b")
    return [me.sub("alice", line) for line in done.stdout.splitlines()]


def _in_discord(tasks: list[TaskRecord], request: TaskRecord) -> list[str]:
    """What the task channel shows of the run: each step given, then the request's answer.

    (The steps' answers are left out, as in the README.)
    """
    steps = [announcement(t) for t in sorted(tasks, key=lambda t: t.id) if t.source == "worker"]
    return "\n".join([*steps, answer_text(request)]).splitlines()


async def test_pipeline_example_writes_shouts_and_publishes_after_a_yes(tmp_path: Path) -> None:
    config = _copy(tmp_path)
    async with running_node(config) as node:

        async def ctl(*args: str) -> list[str]:
            return await anyio.to_thread.run_sync(functools.partial(_ctl, config, *args))

        printed = await ctl("task", "planner", "otters, beavers")
        question = await _open_question(node)
        assert question.process.startswith("publish:")
        printed += await ctl("asks")
        printed += await ctl("answer", str(question.id), "yes")
        done = await node.tasks.wait(int(printed[0]), 30)
        printed += await ctl("tasks")
        shown = _in_discord(list((await node.service.tasks(ALICE, limit=50)).tasks), done)
        refused = await node.service.task(ALICE, "planner", "squirrels")
        await node.service.answer(ALICE, (await _open_question(node)).id, "no")
        said_no = await node.tasks.wait(refused.id, 30)
        steps = {t.program for t in (await node.service.tasks(ALICE, limit=50)).tasks}
    assert done.state is TaskState.DONE, done
    assert done.result.startswith("published:\nOTTERS: A SHORT PARAGRAPH ABOUT OTTERS")
    assert "BEAVERS: A SHORT PARAGRAPH ABOUT BEAVERS" in done.result
    assert said_no.state is TaskState.FAILED
    assert said_no.reason == "publish: failed: a human said no (or nobody answered in 10 minutes)"
    assert steps == {"planner", "writer", "shout", "publish"}
    readme = samples([EXAMPLE / "README.md"])
    assert list(map(shape, readme["README.md:pipeline-ctl"])) == list(map(shape, printed)), (
        "\n".join(printed)
    )
    assert list(map(shape, readme["README.md:pipeline-discord"])) == list(map(shape, shown)), (
        "\n".join(shown)
    )

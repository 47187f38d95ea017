"""examples/pipeline runs as its README says: a planner, two workers, a human's yes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.commands.access import AccessLevel, Actor
from supervisor.tasks.records import TaskState
from tests._control import Node, running_node
from tests._wait import eventually

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


async def test_pipeline_example_writes_shouts_and_publishes_after_a_yes(tmp_path: Path) -> None:
    async with running_node(_copy(tmp_path)) as node:
        request = await node.service.task(ALICE, "planner", "otters, beavers")
        question = await _open_question(node)
        assert question.process.startswith("publish:")
        await node.service.answer(ALICE, question.id, "yes")
        done = await node.tasks.wait(request.id, 30)
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

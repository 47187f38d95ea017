"""One attempt of a oneshot task: a process of the program, with the task on stdin and argv.

Built from the process core, so a task's process is recorded, captured and ended like any
other run: a timeout or a cancel stops its whole tree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import shutil
from typing import TYPE_CHECKING

import anyio

from supervisor import humanize, signals
from supervisor.config.schema import TASK_PLACEHOLDER
from supervisor.errors import SpawnError
from supervisor.events import ResultReported
from supervisor.output.logfile import log_paths
from supervisor.process.run import spawn
from supervisor.process.slot import STOP_MARGIN_SECONDS
from supervisor.tasks import files
from supervisor.tasks.records import TaskOutcome, TaskState
from worker_sdk import protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from supervisor.config.schema import ProgramSpec
    from supervisor.events import Event, WorkerResult
    from supervisor.process.run import Run
    from supervisor.process.worker_link import TaskBroker, WorkerLink
    from supervisor.tasks.queue import TaskContext
    from supervisor.tasks.records import TaskRecord

logger = logging.getLogger(__name__)

RESULT_MAX_BYTES = 1024 * 1024
"""The most of a task's stdout kept as its result; the log file has all of it."""
STDERR_LINES = 10
"""The last lines of stderr a failure's reason quotes."""
_STDERR_TAIL_BYTES = 8192
_PIPE_GRACE_SECONDS = 1.0  # for output still in the pipes once the tree is gone


def task_argv(command: tuple[str, ...], text: str) -> tuple[str, ...]:
    """``command`` with each element that is exactly ``{task}`` replaced by ``text``."""
    return tuple(text if arg == TASK_PLACEHOLDER else arg for arg in command)


async def run_attempt(
    spec: ProgramSpec,
    task: TaskRecord,
    ctx: TaskContext,
    cancel: anyio.CancelScope,
    live: dict[str, Run],
    broker: TaskBroker | None = None,
) -> TaskOutcome:
    """Run one attempt of ``task`` to its end; the outcome to record.

    Args:
        spec: the task's program.
        task: the task, as claimed.
        ctx: the node's shared parts.
        cancel: cancelled by the queue when an operator cancels the task.
        live: the queue's live runs: this attempt's is in it from its spawn
            until its tree is gone (the reaper's sweeps spare it meanwhile).
        broker: where the process may give tasks (``worker_sdk.submit``).

    When cancelled from outside (shutdown), stops the tree (shielded, bounded)
    and re-raises.
    """
    process = f"{spec.name}:task{task.id}"
    work = ctx.work_dir / str(task.id)
    await anyio.to_thread.run_sync(_fresh_start, work, log_paths(ctx.log_dir, process))
    try:
        await anyio.to_thread.run_sync(files.copy_into, files.files_root(ctx.work_dir), task, work)
        env = {**spec.env, protocol.TASK_ID: str(task.id), protocol.TASK_DIR: str(work)}
        attempt_spec = dataclasses.replace(
            spec, command=task_argv(spec.command, task.text), cwd=work, env=env
        )
        with _stdin_of(task.text) as stdin:
            try:
                run = spawn(
                    attempt_spec,
                    process=process,
                    node=ctx.node,
                    instance_id=ctx.instance_id,
                    log_dir=ctx.log_dir,
                    clock=ctx.clock,
                    stdin=stdin,
                    with_channel=ctx.desk is not None and ctx.store is not None,
                )
            except SpawnError as exc:
                return TaskOutcome(state=TaskState.FAILED, reason=str(exc))
        live[run.run_id] = run
        results: list[WorkerResult] = []
        try:
            link = _link(run, spec, ctx, work, results, broker)
            ended = await _watch(run, spec, ctx, cancel, link)
        finally:
            del live[run.run_id]
            run.close()
        outcome = await anyio.to_thread.run_sync(_outcome, run, ended, spec, ctx.log_dir)
        if outcome.state is TaskState.DONE and results:
            return dataclasses.replace(outcome, result=_reported(results[-1]))
        return outcome
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_remove_dir, work)


def _remove_dir(path: Path) -> None:
    """Remove an attempt's directory, whatever the worker left in it."""
    shutil.rmtree(path, ignore_errors=True)


def _fresh_start(work: Path, logs: tuple[Path, Path]) -> None:
    """An empty directory and no logs: an earlier attempt's (a node died) are dropped."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700, parents=True)
    for path in logs:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _stdin_of(text: str) -> Iterator[int]:
    """An fd reading ``text`` from its start: an unnamed temporary file, never a pipe.

    A pipe would need writing while the child reads; a file takes any length at once.
    """
    import tempfile  # here: only a oneshot task needs it, a fleet without one never does

    with tempfile.TemporaryFile() as file:
        file.write(text.encode("utf-8"))
        file.seek(0)
        yield file.fileno()


def _link(
    run: Run,
    spec: ProgramSpec,
    ctx: TaskContext,
    work: Path,
    results: list[WorkerResult],
    broker: TaskBroker | None,
) -> Callable[[], WorkerLink] | None:
    """What makes the reader of the attempt's channel: its results are kept in ``results`` too."""
    if run.channel is None or ctx.desk is None or ctx.store is None:
        return None

    from supervisor.process.worker_link import WorkerLink  # here, as in Slot._make_link

    def emit(event: Event) -> None:
        if isinstance(event, ResultReported):
            results.append(event.result)
        ctx.emit(event)

    return functools.partial(
        WorkerLink,
        run.channel,
        process=run.process,
        program=spec.name,
        run_id=run.run_id,
        cwd=str(work),
        emit=emit,
        desk=ctx.desk,
        store=ctx.store,
        clock=ctx.clock,
        tasks=broker,
    )


def _reported(result: WorkerResult) -> str:
    """A result a worker reported through ``worker_sdk.result``, as the task's answer."""
    parts = [result.text] if result.text else []
    if result.data is not None:
        parts.append(json.dumps(json.loads(result.data), indent=2, ensure_ascii=False))
    if result.files:
        parts.append("files: " + ", ".join(result.files))
    return "\n".join(parts)


async def _watch(
    run: Run,
    spec: ProgramSpec,
    ctx: TaskContext,
    cancel: anyio.CancelScope,
    link: Callable[[], WorkerLink] | None,
) -> TaskState | None:
    """Watch the run to its end; stop its tree on timeout, cancel or shutdown.

    Returns:
        None when the process exited by itself, else TIMED_OUT or CANCELLED.
    """
    ended: TaskState | None = None
    async with anyio.create_task_group() as tg:
        with anyio.CancelScope(shield=True):  # a spawn is recorded whole
            await run.identify(ctx.reaper)
            try:
                await run.record_start(ctx.ledger)
            finally:
                run.start_watchers(tg, consumer=None, max_line_bytes=spec.max_line_bytes, link=link)
        try:
            try:
                with anyio.move_on_after(spec.task_timeout_seconds) as timer, cancel:
                    await run.exited.wait()
                if cancel.cancelled_caught:
                    ended = TaskState.CANCELLED
                elif timer.cancelled_caught:
                    ended = TaskState.TIMED_OUT
            except BaseException:
                with anyio.move_on_after(_stop_bound(spec), shield=True):
                    await _stop_tree(run, spec, ctx)
                raise
            with anyio.move_on_after(_stop_bound(spec), shield=True):
                if ended is None:
                    await run.record_exit(ctx.ledger)
                    if _group_alive(run.pid):
                        await ctx.reaper.end_leftovers(
                            run.ident,
                            run_id=run.run_id,
                            sig=spec.stop_signal,
                            timeout=spec.stop_timeout_seconds,
                        )
                    await run.drain(_PIPE_GRACE_SECONDS)
                else:
                    await _stop_tree(run, spec, ctx)
        finally:
            run.end_watchers()
    return ended


def _group_alive(pgid: int) -> bool:
    """Whether the attempt's process group still has a member.

    Most tasks leave nothing behind: then the reaper's scan of every process is
    skipped. A descendant that left the group (``setsid``) still carries the
    run's markers, and the reaper's next periodic sweep ends it.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed its credentials: it exists
        return True
    return True


def _stop_bound(spec: ProgramSpec) -> float:
    return spec.stop_timeout_seconds + STOP_MARGIN_SECONDS


async def _stop_tree(run: Run, spec: ProgramSpec, ctx: TaskContext) -> None:
    """Stop the attempt's whole tree (stop_signal, stop_timeout_seconds, SIGKILL)."""
    outcome = await ctx.reaper.terminate_tree(
        run.ident,
        run_id=run.run_id,
        sig=spec.stop_signal,
        timeout=spec.stop_timeout_seconds,
        main_exited=run.exited,
    )
    logger.info("task process %s (pid %d): stopped: %s", run.process, run.pid, outcome)
    await run.exited.wait()
    await run.record_exit(ctx.ledger)
    await run.drain(_PIPE_GRACE_SECONDS)


def _outcome(run: Run, ended: TaskState | None, spec: ProgramSpec, log_dir: Path) -> TaskOutcome:
    """What the attempt's exit and logs say (read once the logs are closed)."""
    out_path, err_path = log_paths(log_dir, run.process)
    code, sig = run.exit_code, run.exit_signal
    if ended is None and code == 0:
        return TaskOutcome(state=TaskState.DONE, result=_head(out_path), exit_code=0)
    if ended is TaskState.TIMED_OUT:
        why = f"timed out after {spec.task_timeout_seconds:g} s (task_timeout_seconds)"
    elif ended is TaskState.CANCELLED:
        why = "cancelled"
    elif sig is not None:
        why = f"killed by {signals.name(sig)}"
    else:
        why = f"exit code {code}"
    tail = _stderr_tail(err_path)
    reason = f"{why}; last lines of stderr:\n{tail}" if tail else why
    return TaskOutcome(
        state=ended or TaskState.FAILED, reason=reason, exit_code=code, exit_signal=sig
    )


def _head(path: Path) -> str:
    """The start of a task's stdout, up to RESULT_MAX_BYTES (and a note if cut)."""
    try:
        with path.open("rb") as file:
            data = file.read(RESULT_MAX_BYTES + 1)
            size = os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        return ""
    text = data[:RESULT_MAX_BYTES].decode("utf-8", errors="replace")
    if len(data) > RESULT_MAX_BYTES:
        text += f"\n[{humanize.memory(size - RESULT_MAX_BYTES)} more in {path}]"
    return text


def _stderr_tail(path: Path) -> str:
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            file.seek(max(0, size - _STDERR_TAIL_BYTES))
            data = file.read()
    except FileNotFoundError:
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-STDERR_LINES:])

"""The names dsup and its workers share: environment variables now, the worker protocol's
messages as they come. Standard library only; ``supervisor`` imports from here, never
the other way round."""

from __future__ import annotations

from typing import Final

ENV_PREFIX = "DSUP_"
"""Every variable dsup sets in a worker's environment starts with this; configs may not."""

NODE = "DSUP_NODE"
"""The node's name."""
INSTANCE = "DSUP_INSTANCE"
"""The state directory's instance id: the marker that makes a process this node's."""
PROGRAM = "DSUP_PROGRAM"
"""The program's name."""
PROCESS = "DSUP_PROCESS"
"""The process, ``program:index``."""
RUN_ID = "DSUP_RUN_ID"
"""The run's id (uuid4 hex), recorded in the ledger with every pid of the run."""
TASK_ID = "DSUP_TASK_ID"
"""The id of the task a oneshot process runs."""
TASK_DIR = "DSUP_TASK_DIR"
"""A oneshot task's fresh directory, also the process's cwd; removed once the task ends."""
FD = "DSUP_FD"
"""The number of the worker's end of its channel to dsup: a unix stream socket.

JSON lines both ways (docs/worker_protocol.md). Absent when dsup gave none (an
older dsup, or the worker runs on its own)."""

# -- the messages ---------------------------------------------------------------
#
# One JSON object per line, UTF-8, at most MAX_MESSAGE_BYTES with its newline.
# Every message has "type"; the other keys depend on it. Unknown keys are ignored
# (a newer worker may send more), unknown types are counted and ignored.

TYPE = "type"
"""The key naming a message's type; the values are the constants below."""

# worker -> dsup
PROGRESS = "progress"
"""``fraction`` 0..1, or ``done`` and ``total``; optional ``text``. Latest wins."""
LOG = "log"
"""``text``; optional ``level``, one of :data:`LEVELS` (default ``info``)."""
RESULT = "result"
"""Any of ``data`` (a JSON object), ``text`` and ``files`` (paths, relative to the
worker's cwd); at least one."""
ASK = "ask"
"""``id`` (the worker's, unique in its run), ``question``; optional ``choices``
(strings; null or absent for free text), ``timeout`` (seconds), ``default``."""

TAKE_TASKS = "take_tasks"
"""A worker of a ``tasks = "stream"`` program is ready for tasks (``worker_sdk.tasks()``)."""
TASK_REPLY = "task_reply"
"""A task's answer: ``id`` (the task's), and any of ``text``, ``data``, ``files``."""
TASK_FAIL = "task_fail"
"""A task failed: ``id`` and ``reason``."""

SUBMIT = "submit"
"""Give a task to a program (pipelines): ``id`` (the worker's), ``program``, ``text``;
dsup answers with :data:`SUBMITTED` or an ``error``."""
TASK_WAIT = "task_wait"
"""Wait for a task to end: ``id`` (the worker's), ``task``, optional ``timeout``
(seconds); dsup answers with :data:`TASK_RESULT`, at the end or the timeout."""

# dsup -> worker
SUBMITTED = "submitted"
"""To a ``submit``: ``id``, ``task`` (dsup's task id)."""
TASK_RESULT = "task_result"
"""To a ``task_wait``: ``id``, ``task``, ``state`` (``queued`` or ``running`` when the
wait timed out), ``result``, ``reason``."""
TASK = "task"
"""A task for a stream worker: ``id``, ``text``, ``author``, ``files`` (paths)."""
TASK_CANCEL = "task_cancel"
"""Stop working on a task (timed out, or cancelled): ``id``; a later answer is ignored."""
ANSWER = "answer"
"""To an ``ask``: ``id``, ``status`` (:data:`ANSWERED` with ``answer`` and ``by``,
or :data:`TIMED_OUT` with ``answer`` = the default when there was one)."""
ERROR = "error"
"""To a message dsup refused: ``id`` when the message had one, ``message`` (why)."""

ANSWERED: Final = "answered"
TIMED_OUT: Final = "timeout"
GONE: Final = "gone"
"""A question closed because its worker went away (or dsup stopped): never sent."""

LEVELS = ("debug", "info", "warning", "error")
"""The levels of a ``log`` message, lowest first."""

# -- limits ---------------------------------------------------------------------

MAX_MESSAGE_BYTES = 64 * 1024
"""The longest message line, newline included; longer ones are dropped and counted."""
MAX_TEXT_CHARS = 4000
"""The longest ``text`` of a log or result, and the longest question."""
MAX_PROGRESS_TEXT_CHARS = 200
"""The longest ``text`` of a progress message."""
MAX_CHOICES = 25
"""The most choices a question offers (one button each in Discord)."""
MAX_CHOICE_CHARS = 80
"""The longest choice (a button's label in Discord)."""
MAX_ANSWER_CHARS = 1000
"""The longest free-text answer."""
MAX_FILES = 10
"""The most files one result names (Discord's attachments per message)."""
MAX_OPEN_QUESTIONS = 16
"""Questions one run may have open at once; more are refused with an ``error``."""
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600.0
"""The longest ``timeout`` of a question."""

"""The names dsup and its workers share: environment variables now, the worker protocol's
messages as they come. Standard library only; ``supervisor`` imports from here, never
the other way round."""

from __future__ import annotations

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

"""Files given with a task (a Discord message's attachments), kept until the task ends.

They wait in ``state_dir/task-files/KEY`` (KEY from the task's source key) and are
copied into each attempt's fresh directory, so an attempt run again gets them too.
"""

from __future__ import annotations

import re
import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from supervisor.tasks.records import TaskRecord

MAX_FILE_BYTES = 25 * 1024 * 1024
"""The most bytes one file of a task may have."""
MAX_TASK_FILES_BYTES = 50 * 1024 * 1024
"""The most bytes all the files of one task may have together."""
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def files_root(work_dir: Path) -> Path:
    """Where tasks' files wait, beside the attempts' directories (``work_dir``)."""
    return work_dir.with_name("task-files")


def inbox(root: Path, source_key: str) -> Path:
    """The directory of the files of the task submitted with ``source_key``."""
    return root / _UNSAFE.sub("_", source_key)


def safe_name(name: str, taken: set[str]) -> str:
    """``name`` as a plain file name: no directory, no ``..``, not hidden, not in ``taken``.

    Only the last part of a path is kept; characters other than letters, digits,
    ``.``, ``_`` and ``-`` become ``_``; a name taken gets a ``2-`` (``3-``...) prefix.
    """
    last = name.replace("\\", "/").rsplit("/", 1)[-1]
    plain = _UNSAFE.sub("_", last).lstrip(".")[:100] or "file"
    unique, n = plain, 1
    while unique in taken:
        n += 1
        unique = f"{n}-{plain}"
    taken.add(unique)
    return unique


def held(root: Path, task: TaskRecord) -> list[Path]:
    """The files that came with ``task``, by name."""
    if task.source_key is None:
        return []
    folder = inbox(root, task.source_key)
    return sorted(folder.iterdir()) if folder.is_dir() else []


def copy_into(root: Path, task: TaskRecord, work: Path) -> None:
    """Copy the files of ``task`` into an attempt's directory ``work``."""
    for path in held(root, task):
        shutil.copyfile(path, work / path.name)


def drop(root: Path, task: TaskRecord) -> None:
    """Forget the files of an ended task."""
    if task.source_key is not None:
        shutil.rmtree(inbox(root, task.source_key), ignore_errors=True)

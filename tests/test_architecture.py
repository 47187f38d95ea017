"""docs/architecture.md's module map names every module of the tree, and only those.

A module added without a row, or a row left behind by a move, fails here: the map is the
one place a newcomer reads to find where a behaviour lives.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAP = REPO / "docs" / "architecture.md"
PACKAGES = ("supervisor", "worker_sdk")

_HEADING = re.compile(r"^### `(?P<folder>[\w/]+/)`")
_ROW = re.compile(r"^\| `(?P<module>[\w/]+\.py)` \|")


def _mapped(text: str) -> dict[str, int]:
    """Each module path the map names (``supervisor/process/slot.py``), with its count."""
    section = ("\n" + text).split("\n## Module map\n", 1)[1].split("\n## ", 1)[0]
    named: dict[str, int] = {}
    folder = ""
    for line in section.splitlines():
        if heading := _HEADING.match(line):
            folder = heading["folder"]
        elif (row := _ROW.match(line)) and folder:
            path = folder + row["module"]
            named[path] = named.get(path, 0) + 1
    return named


def _modules() -> set[str]:
    """Every module in the tree, package ``__init__`` files aside."""
    return {
        path.relative_to(REPO).as_posix()
        for package in PACKAGES
        for path in (REPO / package).rglob("*.py")
        if path.name != "__init__.py"
    }


def test_architecture_map_names_every_module() -> None:
    missing = sorted(_modules() - set(_mapped(MAP.read_text(encoding="utf-8"))))
    assert not missing, (
        f"docs/architecture.md's module map does not name {missing}: add a row for each "
        "under the heading of its package"
    )


def test_architecture_map_names_no_module_that_does_not_exist() -> None:
    stale = sorted(set(_mapped(MAP.read_text(encoding="utf-8"))) - _modules())
    assert not stale, f"docs/architecture.md's module map names {stale}, which do not exist"


def test_architecture_map_names_each_module_once() -> None:
    twice = sorted(m for m, n in _mapped(MAP.read_text(encoding="utf-8")).items() if n > 1)
    assert not twice, f"docs/architecture.md's module map names {twice} more than once"


def test_architecture_map_reader_reads_rows_under_their_heading() -> None:
    """The checks above could pass on a map the reader failed to parse; this one cannot."""
    text = "## Module map\n\n### `supervisor/x/`\n\n| `a.py` | one |\n| `b.py` | two |\n\n## End\n"
    assert _mapped(text) == {"supervisor/x/a.py": 1, "supervisor/x/b.py": 1}
    assert len(_mapped(MAP.read_text(encoding="utf-8"))) > 50

"""Writing TOML text: strings, keys, values and comments, quoted as TOML wants.

The standard library reads TOML but does not write it. Also shows the spot in a source that a
syntax error points at.
"""

from __future__ import annotations

import math
import re

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_ERROR_AT_RE = re.compile(r"\(at line (\d+), column (\d+)\)$")
_ERROR_HINTS = {"Cannot overwrite a value": "is a key set twice?"}
_EXCERPT_CHARS = 100
_TOML_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_str(text: str) -> str:
    """Quote ``text`` as a TOML basic string (JSON-style escapes, no raw controls)."""
    out = [
        _TOML_ESCAPES.get(ch) or (f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ch == "\x7f" else ch)
        for ch in text
    ]
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    """A TOML key: bare when it can be, quoted otherwise."""
    return key if _BARE_KEY_RE.fullmatch(key) else toml_str(key)


def toml_value(value: object) -> str:
    """Format a str, bool, int, float, list or dict as a TOML value.

    Raises:
        TypeError: for any other type.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)  # inf, -inf, nan
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def toml_comment(line: str) -> str:
    """Escape the control characters a TOML comment may not hold (a tab is fine)."""
    return "".join(
        ch if ch == "\t" or (ch >= " " and ch != "\x7f") else f"\\x{ord(ch):02x}" for ch in line
    )


def toml_error_excerpt(text: str, message: str) -> str:
    """A TOML reader's ``message`` with the line of ``text`` it names, and a caret.

    ``tomllib`` says where (``(at line 5, column 18)``) but not always what
    (``Cannot overwrite a value``): the excerpt and a hint fill that in. Control
    characters in the line show as ``?``; a long line is cut around the column.
    The caller redacts secrets from the result.
    """
    hint = next((h for start, h in _ERROR_HINTS.items() if message.startswith(start)), None)
    if hint:
        message = f"{message}: {hint}"
    at = _ERROR_AT_RE.search(message.removesuffix(f": {hint}") if hint else message)
    lines = text.splitlines()
    if at is None or not 1 <= int(at[1]) <= len(lines):
        return message
    number, column = int(at[1]), int(at[2]) - 1
    line = "".join(ch if ch.isprintable() else "?" for ch in lines[number - 1])
    start = max(0, min(column - _EXCERPT_CHARS // 2, len(line) - _EXCERPT_CHARS))
    shown = ("…" if start else "") + line[start : start + _EXCERPT_CHARS]
    shown += "…" if start + _EXCERPT_CHARS < len(line) else ""
    caret = column - start + (1 if start else 0)
    gutter = f"{number} | "
    return f"{message}\n  {gutter}{shown}\n  {' ' * (len(gutter) - 2)}| {' ' * caret}^"

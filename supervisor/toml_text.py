"""Writing TOML text: strings, keys, values and comments, quoted as TOML wants.

This module owns turning Python values into TOML source text (the standard
library reads TOML but does not write it). It does not own what is written
(``supervisord_import`` writes converted configs) nor reading TOML (``config``).
"""

from __future__ import annotations

import math
import re

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
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

"""Keeping the bot token, and discord.py's tracebacks, out of every log line.

discord.py logs a traceback at each reconnect; its records are cut to one line
here and every record from its loggers is scrubbed of the token.
"""

from __future__ import annotations

import logging

from supervisor.config.values import redact

_REDACTED = "<redacted token>"


def scrub(text: str, token: str) -> str:
    """``text`` with ``token`` (and anything shaped like a bot token) replaced."""
    return redact(text.replace(token, _REDACTED) if token else text)


class _TokenFilter(logging.Filter):
    """Drops the traceback of a discord.py record and scrubs its message of the token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message = f"{message} ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        record.msg, record.args = scrub(message, self._token), None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def quiet_discord_logs(token: str) -> None:
    """Attach the filter to every discord.py logger (logger filters are not inherited)."""
    token_filter = _TokenFilter(token)
    loggers = logging.root.manager.loggerDict
    names = [n for n in loggers if n == "discord" or n.startswith("discord.")]
    for name in names:
        log = logging.getLogger(name)
        for old in [f for f in log.filters if isinstance(f, _TokenFilter)]:
            log.removeFilter(old)
        log.addFilter(token_filter)

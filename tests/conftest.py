"""Shared fixtures: the anyio backend and the leak checks every test runs under."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """discord.py is asyncio-only, so the whole suite runs on asyncio."""
    return "asyncio"

"""pytest fixtures for the Discord fake: ``fake_discord`` and ``anyio_backend``.

Load with ``pytest_plugins = ["tests.discord_fake.pytest_plugin"]`` in a conftest, or
import the fixtures into a test module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.discord_fake.connect import use_discord_api
from tests.discord_fake.server import FakeDiscord, open_fake_discord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
def anyio_backend() -> str:
    """discord.py is asyncio-only."""
    return "asyncio"


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A fresh fake on a free 127.0.0.1 port, with discord.py pointed at it.

    discord.py's endpoints are restored after the test, and the server is stopped.
    """
    async with (
        open_fake_discord() as fake,
        use_discord_api(fake.api_base, fake.token),
    ):
        yield fake

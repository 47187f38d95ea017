"""discord.Client against the fake: login, ready, messages, edits, reactions, files, history."""

from __future__ import annotations

import io

import anyio
import discord
import pytest

from tests.discord_fake import FakeDiscord, intents_for_tests, run_client
from tests.discord_fake.harness import GUILD_READY_TIMEOUT, RecordingClient
from tests.discord_fake.pytest_plugin import fake_discord

__all__ = ["fake_discord"]


def make_client() -> discord.Client:
    return discord.Client(intents=intents_for_tests(), guild_ready_timeout=GUILD_READY_TIMEOUT)


async def test_client_logs_in_and_sees_the_guild(fake_discord: FakeDiscord) -> None:
    async with run_client(make_client(), fake_discord.token) as client:
        assert client.user is not None
        assert client.user.id == fake_discord.application_id
        guild = client.get_guild(fake_discord.guild_id)
        assert guild is not None
        assert {c.name for c in guild.text_channels} == {"general", "ops"}
    assert fake_discord.identify_count == 1


class Recorder(RecordingClient):
    """Echoes ``!echo text`` so a test can watch a full round trip."""

    async def on_message(self, message: discord.Message) -> None:
        await super().on_message(message)
        if message.author != self.user and message.content.startswith("!echo "):
            await message.channel.send(message.content.removeprefix("!echo "))


async def test_client_message_round_trip(fake_discord: FakeDiscord) -> None:
    alice = fake_discord.add_user("alice", roles=("operator",))
    async with run_client(Recorder(), fake_discord.token) as client:
        fake_discord.post_message(alice, "general", "!echo hello there")
        action = await fake_discord.wait_for_action("general", kind="create")
        received = (await client.wait_seen("message"))[0]
    assert isinstance(received, discord.Message)
    assert received.author.id == alice.id
    assert isinstance(received.author, discord.Member)
    assert [r.name for r in received.author.roles] == ["@everyone", "operator"]
    assert action.content == "hello there"
    assert [m["content"] for m in fake_discord.messages("general")] == [
        "!echo hello there",
        "hello there",
    ]


async def test_client_edit_delete_and_reaction(fake_discord: FakeDiscord) -> None:
    bob = fake_discord.add_user("bob")
    async with run_client(Recorder(), fake_discord.token) as client:
        channel = client.get_channel(fake_discord.channel("ops").id)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("v1")
        edited = await sent.edit(content="v2")
        await sent.add_reaction("👍")
        fake_discord.react(bob, "ops", sent.id, "👍")
        reactions = await client.wait_seen("reaction", count=2)
        edits = await client.wait_seen("edit")
        extra = await channel.send("to delete")
        await extra.delete()
        await client.wait_seen("delete")
    assert edited.content == "v2"
    assert edited.edited_at is not None
    assert isinstance(edits[0], discord.Message)
    assert edits[0].content == "v2"
    assert reactions == [("👍", fake_discord.application_id, 1, True), ("👍", bob.id, 2, True)]
    kinds = [(a.kind, a.content or a.emoji) for a in fake_discord.bot_actions("ops")]
    assert kinds == [
        ("create", "v1"),
        ("edit", "v2"),
        ("react", "👍"),
        ("create", "to delete"),
        ("delete", None),
    ]
    assert [m["content"] for m in fake_discord.bot_messages("ops")] == ["v2"]
    assert fake_discord.bot_messages("ops")[0]["reactions"][0]["count"] == 2


async def test_client_file_upload_and_download(fake_discord: FakeDiscord) -> None:
    async with run_client(Recorder(), fake_discord.token) as client:
        channel = client.get_channel(fake_discord.channel("general").id)
        assert isinstance(channel, discord.TextChannel)
        payload = b"line\n" * 1000
        sent = await channel.send("log attached", file=discord.File(io.BytesIO(payload), "out.log"))
        downloaded = await sent.attachments[0].read()
    assert sent.attachments[0].filename == "out.log"
    assert sent.attachments[0].size == len(payload)
    assert downloaded == payload
    action = fake_discord.bot_actions("general")[0]
    assert action.message is not None
    assert action.message["attachments"][0]["filename"] == "out.log"


async def test_client_downloads_the_files_of_a_users_message(fake_discord: FakeDiscord) -> None:
    alice = fake_discord.add_user("alice")
    files = [("notes.txt", b"first\n"), ("../../x.bin", bytes(range(256)) * 40)]
    async with run_client(Recorder(), fake_discord.token) as client:
        fake_discord.post_message(alice, "general", "two files", files=files)
        received = (await client.wait_seen("message"))[0]
        assert isinstance(received, discord.Message)
        downloaded = [await a.read() for a in received.attachments]
    assert [(a.filename, a.size) for a in received.attachments] == [
        (name, len(data)) for name, data in files
    ]
    assert downloaded == [data for _, data in files]
    (stored,) = fake_discord.messages("general")
    assert [a["filename"] for a in stored["attachments"]] == ["notes.txt", "../../x.bin"]


async def test_client_history_pages_in_order(fake_discord: FakeDiscord) -> None:
    carol = fake_discord.add_user("carol")
    posted = [fake_discord.post_message(carol, "general", f"m{i}") for i in range(130)]
    async with run_client(Recorder(), fake_discord.token) as client:
        channel = client.get_channel(fake_discord.channel("general").id)
        assert isinstance(channel, discord.TextChannel)
        newest_first = [m.content async for m in channel.history(limit=None)]
        middle = discord.Object(id=int(posted[100]["id"]))
        after = [m.content async for m in channel.history(limit=5, after=middle)]
        before = [m.content async for m in channel.history(limit=3, before=middle)]
    assert newest_first == [f"m{i}" for i in reversed(range(130))]
    assert after == ["m101", "m102", "m103", "m104", "m105"]
    assert before == ["m99", "m98", "m97"]


async def test_client_wrong_token_is_a_login_failure(fake_discord: FakeDiscord) -> None:
    client = discord.Client(intents=intents_for_tests())
    async with client:
        with anyio.fail_after(5), pytest.raises(discord.LoginFailure):
            await client.login("not-the-token")


async def test_client_nonce_is_enforced(fake_discord: FakeDiscord) -> None:
    async with run_client(Recorder(), fake_discord.token) as client:
        channel = client.get_channel(fake_discord.channel("general").id)
        assert isinstance(channel, discord.TextChannel)
        first = await channel.send("once", nonce="outbox-42")
        second = await channel.send("once", nonce="outbox-42")
    assert first.id == second.id
    assert [m["content"] for m in fake_discord.bot_messages("general")] == ["once"]


def text_channel(client: discord.Client, fake: FakeDiscord, name: str) -> discord.TextChannel:
    channel = client.get_channel(fake.channel(name).id)
    assert isinstance(channel, discord.TextChannel)
    return channel


async def test_client_custom_emoji_reactions_parse(fake_discord: FakeDiscord) -> None:
    """Regression (audit 2): ``:name:id`` became emoji id "name:id" and killed the client."""
    bob = fake_discord.add_user("bob")
    async with run_client(RecordingClient(), fake_discord.token) as client:
        channel = text_channel(client, fake_discord, "general")
        sent = await channel.send("react to me")
        await sent.add_reaction("<:party:111111111111111111>")
        await sent.add_reaction("<a:dance:222222222222222222>")
        await sent.add_reaction("wave:333333333333333333")
        fake_discord.react(bob, "general", sent.id, "a:dance:222222222222222222")
        seen = await client.wait_seen("reaction", count=4)
        fetched = await channel.fetch_message(sent.id)
    party, dance, wave = (
        "<:party:111111111111111111>",
        "<a:dance:222222222222222222>",
        "<:wave:333333333333333333>",
    )
    assert [s[:3] for s in seen if isinstance(s, tuple)] == [
        (party, fake_discord.application_id, 1),
        (dance, fake_discord.application_id, 1),
        (wave, fake_discord.application_id, 1),
        (dance, bob.id, 2),
    ]
    assert [(str(r.emoji), r.count, r.me) for r in fetched.reactions] == [
        (party, 1, True),
        (dance, 2, True),
        (wave, 1, True),
    ]
    assert [a.emoji for a in fake_discord.bot_actions("general") if a.kind == "react"] == [
        "party:111111111111111111",
        "dance:222222222222222222",
        "wave:333333333333333333",
    ]


async def test_client_typing_reaction_removal_and_fetch(fake_discord: FakeDiscord) -> None:
    bob = fake_discord.add_user("bob")
    async with run_client(RecordingClient(), fake_discord.token) as client:
        channel = text_channel(client, fake_discord, "general")
        await channel.typing()
        sent = await channel.send("x")
        await sent.add_reaction("👍")
        fake_discord.react(bob, "general", sent.id, "👍")
        fake_discord.react(bob, "general", sent.id, "🎉")
        await sent.remove_reaction("👍", discord.Object(id=fake_discord.application_id))
        await sent.remove_reaction("🎉", discord.Object(id=bob.id))
        fetched = await channel.fetch_message(sent.id)
        fake_discord.unreact(bob, "general", sent.id, "👍")
        removed = await client.wait_seen("unreaction", count=3)
    assert removed == [("👍", fake_discord.application_id), ("🎉", bob.id), ("👍", bob.id)]
    assert [(str(r.emoji), r.count, r.me) for r in fetched.reactions] == [("👍", 1, False)]
    assert fetched.content == "x"
    assert [(a.kind, a.emoji) for a in fake_discord.bot_actions("general")] == [
        ("typing", None),
        ("create", None),
        ("react", "👍"),
        ("unreact", "👍"),
        ("unreact", "🎉"),
    ]
    assert fake_discord.messages("general")[0]["reactions"] == []


async def test_client_multipart_edit_keeps_or_removes_attachments(
    fake_discord: FakeDiscord,
) -> None:
    async with run_client(RecordingClient(), fake_discord.token) as client:
        channel = text_channel(client, fake_discord, "general")
        sent = await channel.send("v1", file=discord.File(io.BytesIO(b"a"), "a.txt"))
        new = discord.File(io.BytesIO(b"b"), "b.txt")
        both = await sent.edit(content="v2", attachments=[sent.attachments[0], new])
        only_new = await both.edit(attachments=[both.attachments[1]])
        none = await only_new.edit(attachments=[])
    assert [a.filename for a in both.attachments] == ["a.txt", "b.txt"]
    assert [a.filename for a in only_new.attachments] == ["b.txt"]
    assert none.attachments == []
    assert none.content == "v2"
    edits = [a.message for a in fake_discord.bot_actions("general") if a.kind == "edit"]
    assert [[x["filename"] for x in m["attachments"]] for m in edits if m] == [
        ["a.txt", "b.txt"],
        ["b.txt"],
        [],
    ]


async def test_client_replies_carry_the_referenced_message(fake_discord: FakeDiscord) -> None:
    """Regression (audit 9): replies were type 0 without ``referenced_message``."""
    uma = fake_discord.add_user("uma")
    async with run_client(RecordingClient(), fake_discord.token) as client:
        asked = fake_discord.post_message(uma, "general", "status?")
        (question,) = await client.wait_seen("message")
        assert isinstance(question, discord.Message)
        answer = await question.reply("all good")
        fake_discord.post_message(uma, "general", "thanks", reply_to=answer.id)
        *_, thanks = await client.wait_seen("message", count=3)
        channel = text_channel(client, fake_discord, "general")
        with pytest.raises(discord.HTTPException) as unknown:
            await channel.send("to nothing", reference=channel.get_partial_message(123))
        loose = discord.MessageReference(
            message_id=123, channel_id=channel.id, fail_if_not_exists=False
        )
        plain = await channel.send("to nothing, leniently", reference=loose)
        await question.delete()
        fetched = await channel.fetch_message(answer.id)
    assert answer.type is discord.MessageType.reply
    assert answer.reference is not None
    assert isinstance(answer.reference.resolved, discord.Message)
    assert answer.reference.resolved.content == "status?"
    assert int(asked["id"]) == answer.reference.message_id
    assert isinstance(thanks, discord.Message)
    assert thanks.type is discord.MessageType.reply
    assert thanks.reference is not None
    assert isinstance(thanks.reference.resolved, discord.Message)
    assert thanks.reference.resolved.author.id == fake_discord.application_id
    assert [m.id for m in thanks.mentions] == [fake_discord.application_id]
    assert (unknown.value.status, unknown.value.code) == (400, 50035)
    assert plain.type is discord.MessageType.default
    assert fetched.reference is not None
    assert isinstance(fetched.reference.resolved, discord.DeletedReferencedMessage)


async def fail_in_block(token: str) -> None:
    async with run_client(RecordingClient(), token):
        pytest.fail("from the block")  # what a failed pytest.raises inside would raise


async def test_run_client_raises_a_failure_in_its_block_as_itself(
    fake_discord: FakeDiscord,
) -> None:
    """Regression (audit 12): a pytest failure came out in an exception group, which
    stopped anyio's test runner and added a teardown error."""
    with pytest.raises(pytest.fail.Exception, match="from the block"):
        await fail_in_block(fake_discord.token)

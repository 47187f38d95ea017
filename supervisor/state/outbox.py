"""The outbox: every message bound for Discord, in the ledger before it is sent.

Rows are sent in order per channel, retried, and replayed after a restart, each with a stable
nonce so a retry never posts twice; only output excerpts are ever summarised away.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from supervisor.humanize import duration
from supervisor.state.ledger import is_no_room
from supervisor.state.outbox_files import DIR_NAME, OutboxFiles

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from supervisor.state.ledger import Ledger

logger = logging.getLogger(__name__)

Kind = Literal[
    "output", "state", "incident", "result", "reply", "audit", "notice", "question", "progress"
]
"""What a row carries; only ``output`` rows may be summarised away."""

MESSAGE_CHARS = 2000
"""Discord's limit on a message's content."""
MARKER_CHARS = 51
"""Characters the invisible marker of a 25-character nonce takes at the end of a message."""
MAX_CONTENT_CHARS = MESSAGE_CHARS - MARKER_CHARS
"""The longest content a row may carry (longer content is cut, saying so)."""
MAX_PENDING_OUTPUT = 300
"""Pending output rows per channel before the oldest are summarised (5 min at 1/s)."""
KEEP_SENT = 10_000
"""Sent rows kept (their message ids let later edits find their message)."""
RETRY_MAX_SECONDS = 60.0
DROP_VIEW = '{"view": null}'
"""An edit row's ``attach`` that removes the message's buttons."""

# Four zero-width characters, two bits each, after an invisible separator that
# starts every marker (so one marker never ends another). Nobody sees them.
_ZW = "\u200b\u200c\u200d\u2060"
_MARK = "\u2063"
_COLUMNS = (
    "o.id, o.channel, o.kind, o.content, o.target, o.reply_to, o.attempts, o.first_try_at, "
    "o.created_at, o.attach, o.files, t.message_id AS target_message_id, t.status AS target_status"
)
# The oldest pending row of each channel, with its retry time and the channel's count.
_HEADS = (
    f"SELECT {_COLUMNS}, o.next_try_at, h.n FROM (SELECT min(id) AS id, count(*) AS n "
    "FROM outbox WHERE status = 'pending' GROUP BY channel) h JOIN outbox o ON o.id = h.id "
    "LEFT JOIN outbox t ON t.id = o.target ORDER BY o.id"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxRow:
    """One pending message, as the sender needs it.

    Attributes:
        id: the row id; rows of one channel go out in id order.
        channel: the Discord channel id.
        kind: what it carries (see :data:`Kind`).
        content: the text, without the marker.
        target: for an edit, the row whose message is edited; None for a create.
        target_message_id: that row's Discord message id, once it was sent.
        target_status: that row's status (None when it was pruned).
        reply_to: a Discord message id the create replies to, if any.
        attempts: how many times sending was begun.
        first_try_at: wall time of the first attempt (past the nonce window,
            the sender looks for the marker in the channel before posting again).
        created_at: wall time the row was written.
        nonce: stable across retries and restarts; at most 25 characters.
        marker: invisible text appended to the content, found again in history.
        attach: embeds, files and a task's Cancel button to send with a create, as
            JSON (``{"embeds": [...], "files": [paths], "cancel_task": id}``); "" for
            none. On an edit, :data:`DROP_VIEW` (the edit removes the buttons).
        files: the folder of files the create sends (:attr:`Outbox.files`, removed
            once the row is sent or abandoned); "" for none.
    """

    id: int
    channel: int
    kind: str
    content: str
    target: int | None
    target_message_id: int | None
    target_status: str | None
    reply_to: int | None
    attempts: int
    first_try_at: float | None
    created_at: float
    nonce: str
    marker: str
    attach: str = ""
    files: str = ""

    @property
    def is_edit(self) -> bool:
        """True when this row edits the message of another row."""
        return self.target is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """What :meth:`Outbox.claim` took, and what it left.

    Attributes:
        rows: the rows whose sending begins now.
        waiting: for each channel with a pending row left (skipped, not due yet,
            or behind a row taken), when its oldest is due (wall clock; 0 behind a
            row taken): the sender need not look again before one of these is due
            or a row is written.
        writes: :attr:`Outbox.writes` as the claim began: every write it counts is
            in what the claim saw (a later one may be too).
        pending: the rows pending per channel as the claim took its rows (those
            taken included; a channel with none is left out); None when the claim
            took nothing because the ledger refuses writes.
    """

    rows: list[OutboxRow]
    waiting: Mapping[int, float]
    writes: int = 0
    pending: Mapping[int, int] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxStats:
    """Counts for the sender's drain: pending rows per channel."""

    pending: Mapping[int, int]


LATEST_CONTENT = (
    "(SELECT o.content FROM outbox o WHERE o.id = m.row_id OR o.target = m.row_id "
    "ORDER BY o.id DESC LIMIT 1)"
)
"""SQL: the latest text of the message whose row ``m`` (an ``outbox_meta`` row) names:
its create's, or its newest edit's."""


def key_range(prefix: str) -> tuple[str, str]:
    """The bounds ``[low, high)`` of the ``outbox_meta`` keys that start with ``prefix``."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def retry_delay(attempts: int) -> float:
    """Seconds before retrying a row that failed ``attempts`` times: 1, 2, 4 ... 60."""
    return min(RETRY_MAX_SECONDS, 2.0 ** max(0, min(attempts - 1, 10)))


def encode_marker(nonce: str) -> str:
    """The nonce as zero-width characters (hex digits only; other characters skipped)."""
    digits = "".join(c for c in nonce if c in "0123456789abcdef")
    return _MARK + "".join(_ZW[int(d, 16) >> 2] + _ZW[int(d, 16) & 3] for d in digits)


def fit(content: str, limit: int = MAX_CONTENT_CHARS) -> str:
    """``content`` cut to ``limit`` characters, saying so (a code block is closed)."""
    if len(content) <= limit:
        return content
    note = f"\n... (cut: {len(content):,} characters)"
    head = content[: limit - len(note) - 4]
    if head.count("```") % 2:
        head += "\n```"
    return head + note


class Outbox:
    """The outbox table of one ledger. Methods are synchronous and thread-safe.

    Writes go through :meth:`Ledger.record`: on a full disk they wait in memory, in
    order, and are written when the disk takes them again (the ledger says so once;
    beyond its bound they are dropped and counted). Row ids are handed out at once
    meanwhile, and nothing is sent until every waiting write is in the table, so a
    row is never sent without being recorded first.

    Args:
        ledger: the ledger holding the table (migrated by ``Ledger.open``).
        max_pending_output: pending output rows per channel before summarising.
        keep_sent: sent rows kept for later edits; markers (:meth:`post`'s
            ``marker``) go with the rows they mark.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        max_pending_output: int = MAX_PENDING_OUTPUT,
        keep_sent: int = KEEP_SENT,
    ) -> None:
        self._ledger = ledger
        self.files = OutboxFiles(ledger.path.parent / DIR_NAME)
        self.max_pending_output = max_pending_output
        self.keep_sent = keep_sent
        (row,) = ledger.read("SELECT value FROM outbox_meta WHERE key = 'salt'")
        self._salt: str = row["value"]
        self._waiting_meta: dict[str, str] = {}  # written while the disk refuses it
        self._lock = threading.Lock()
        self._claiming = threading.Lock()  # one claim_marker at a time
        self._is_held = False
        self._on_written: Callable[[], None] | None = None
        self.writes = 0
        """Messages and edits queued so far (counted once committed or waiting)."""

    def watch(self, on_written: Callable[[], None]) -> None:
        """Have ``on_written`` called after each message or edit is queued.

        Called in the writer's thread (often a worker thread), once the row is
        committed or waits for the disk: the sender needs no poll to see new rows.
        """
        self._on_written = on_written

    def _written(self) -> None:
        with self._lock:
            self.writes += 1
        if self._on_written is not None:
            self._on_written()

    # -- writing ---------------------------------------------------------------

    def post(
        self,
        channel: int,
        kind: Kind,
        content: str,
        *,
        now: float,
        reply_to: int | None = None,
        counts: Mapping[str, int] | None = None,
        meta: tuple[str, str] | None = None,
        marker: str | None = None,
        attach: str = "",
        files: str = "",
    ) -> int:
        """Queue a new message; committed when this returns (or, on a full disk, later).

        Args:
            channel: the Discord channel id.
            kind: what it carries; ``output`` rows past :attr:`max_pending_output`
                pending in the channel are summarised, oldest first; a plain
                ``state`` row right after another not yet tried joins it while
                both fit one message (a crash loop through an outage).
            content: the text (cut to :data:`MAX_CONTENT_CHARS`, saying so).
            now: wall-clock time (display and the summary's span).
            reply_to: a Discord message id to reply to.
            counts: for output, the lines it holds per process (for summaries).
            meta: a ``(key, value)`` for :meth:`meta` stored in the same
                transaction (the audit cursor moves with the message it made).
            marker: a key stored in the same transaction, its value the row id
                (``meta(marker)``): says that this message was queued (a task's
                answer), and is pruned with the row.
            attach: embeds, files and buttons to send along (see :class:`OutboxRow`).
            files: a folder :meth:`OutboxFiles.keep` wrote, whose files the message
                sends; the row owns it from now on.

        Returns:
            The row id (give it to :meth:`edit` to change the message later); a
            state row's that it joined.
        """
        settings = [meta] if meta is not None else []
        is_plain = not (reply_to or meta or marker or attach or files)

        def record(conn: sqlite3.Connection, row_id: int) -> int:
            if kind == "state" and is_plain:
                joined = self._join_state(conn, channel, fit(content), counts, now)
                if joined is not None:
                    return joined
            conn.execute(
                "INSERT INTO outbox (id, channel, kind, content, reply_to, counts, created_at, "
                "until_at, attach, files) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row_id,
                    channel,
                    kind,
                    fit(content),
                    reply_to,
                    _dump(counts),
                    now,
                    now,
                    attach,
                    files,
                ),
            )
            if kind == "output":
                self._bound_output(conn, channel)
            for key, value in settings:
                _set_meta(conn, key, value, None)
            if marker is not None:
                _set_meta(conn, marker, str(row_id), row_id)
            return row_id

        dropped: list[bool] = []
        row_id, written = self._ledger.record_new(
            "outbox", f"message for Discord ({kind})", record, on_drop=lambda: dropped.append(True)
        )
        if marker is not None:
            settings.append((marker, str(row_id)))
        self._remember(written is None and not dropped, settings)
        self._written()
        return row_id if written is None else written

    def _join_state(
        self,
        conn: sqlite3.Connection,
        channel: int,
        content: str,
        counts: Mapping[str, int] | None,
        now: float,
    ) -> int | None:
        """Append ``content`` to the channel's newest pending row when that is a plain
        state row not yet tried and both fit one message; the row joined, or None.

        State changes are never dropped, but while a channel is away a crash loop
        would add a row per message the relay writes: joined, they take a row per
        full message, in the order written.
        """
        last = conn.execute(
            "SELECT id, kind, content, counts, attempts, target, reply_to, attach, files "
            "FROM outbox WHERE channel = ? AND status = 'pending' ORDER BY id DESC LIMIT 1",
            (channel,),
        ).fetchone()
        if (
            last is None
            or last["kind"] != "state"
            or last["attempts"]
            or last["target"] is not None
            or last["reply_to"] is not None
            or last["attach"]
            or last["files"]
        ):
            return None
        joined = f"{last['content']}\n{content}"
        if len(joined) > MAX_CONTENT_CHARS:
            return None
        total = Counter(_load(last["counts"]))
        total.update(counts or {})
        conn.execute(
            "UPDATE outbox SET content = ?, counts = ?, until_at = ? WHERE id = ?",
            (joined, _dump(total), now, last["id"]),
        )
        return int(last["id"])

    def edit(
        self,
        target: int,
        content: str,
        *,
        now: float,
        drop_view: bool = False,
        attach: str | None = None,
        marker: str | None = None,
        meta: tuple[str, str] | None = None,
    ) -> int:
        """Queue an edit of the message of row ``target``; collapse with pending ones.

        An edit of a create not yet attempted changes that row itself; otherwise an
        edit of the same message not yet attempted takes the new content (edits are
        idempotent: only the newest content matters). An edit attempted (its request
        may be in flight, and its confirmation marks the row sent) is never changed:
        the new content goes in a row after it. A target abandoned turns the edit
        into a new message in the same channel.

        Args:
            target: the row whose message is edited.
            content: the new text.
            now: wall-clock time.
            drop_view: the message loses its buttons (a create not yet attempted,
                its ``attach``).
            attach: the buttons the message shows from now on (JSON, see
                :class:`OutboxRow`), instead of ``drop_view``.
            marker: as :meth:`post`'s, for the row carrying the edit.
            meta: as :meth:`post`'s.

        Returns:
            The id of the row that will carry ``content`` (``target`` while the
            disk refuses writes: an edit of ``target`` again collapses with it).

        Raises:
            LookupError: ``target`` was pruned (or never written).
        """
        content = fit(content)
        if not self._exists(target):
            raise LookupError(f"outbox row {target} is gone")
        on_edit = attach if attach is not None else (DROP_VIEW if drop_view else "")
        on_create = attach if attach is not None else ("" if drop_view else None)
        is_late = False  # written after this returned (it waited for the disk)

        def record(conn: sqlite3.Connection, new_id: int) -> int:
            carrier = self._edit_in(conn, target, content, now, on_edit, on_create, new_id)
            if carrier is None and not is_late:
                # Pruned since the check above (the sender prunes in its thread):
                # said to the caller, who posts anew, instead of lost.
                raise LookupError(f"outbox row {target} is gone")
            if marker is not None and carrier is not None:
                _set_meta(conn, marker, str(carrier), carrier)
            if meta is not None:
                _set_meta(conn, *meta, None)
            return target if carrier is None else carrier

        dropped: list[bool] = []
        _, written = self._ledger.record_new(
            "outbox", "edit for Discord", record, on_drop=lambda: dropped.append(True)
        )
        is_late = True
        settings = [(marker, str(target))] if marker is not None else []
        if meta is not None:
            settings.append(meta)
        self._remember(written is None and not dropped, settings)
        self._written()
        return target if written is None else written

    def _edit_in(
        self,
        conn: sqlite3.Connection,
        target: int,
        content: str,
        now: float,
        on_edit: str,
        on_create: str | None,
        new_id: int,
    ) -> int | None:
        """Do :meth:`edit` in ``conn``; the row carrying it (None: the target is gone)."""
        found = conn.execute(
            "SELECT channel, kind, status, attempts FROM outbox WHERE id = ?", (target,)
        ).fetchone()
        if found is None:  # pruned meanwhile, or its write was lost (said by the ledger)
            return None
        if found["status"] == "pending" and found["attempts"] == 0:
            conn.execute(
                "UPDATE outbox SET content = ?, until_at = ?, attach = coalesce(?, attach) "
                "WHERE id = ?",
                (content, now, on_create, target),
            )
            return target
        pending = conn.execute(
            "SELECT id FROM outbox WHERE target = ? AND status = 'pending' AND attempts = 0 "
            "ORDER BY id LIMIT 1",
            (target,),
        ).fetchone()
        if pending is not None:
            conn.execute(  # buttons set by an earlier edit stay unless these replace them
                "UPDATE outbox SET content = ?, until_at = ?, "
                "attach = CASE WHEN ? = '' THEN attach ELSE ? END WHERE id = ?",
                (content, now, on_edit, on_edit, pending["id"]),
            )
            return int(pending["id"])
        conn.execute(
            "INSERT INTO outbox (id, channel, kind, content, target, created_at, until_at, "
            "attach) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (new_id, found["channel"], found["kind"], content, target, now, now, on_edit),
        )
        return new_id

    def _exists(self, row_id: int) -> bool:
        """True when row ``row_id`` is in the table, or its write waits for the disk."""
        if self._ledger.read("SELECT 1 FROM outbox WHERE id = ?", (row_id,)):
            return True
        if not self._ledger.unrecorded:
            return False
        (top,) = self._ledger.read("SELECT coalesce(max(id), 0) FROM outbox")
        return int(top[0]) < row_id <= self._ledger.reserved("outbox")

    def _remember(self, is_waiting: bool, settings: list[tuple[str, str]]) -> None:
        """Answer :meth:`meta` from memory for ``settings`` while their write waits.

        A write the ledger dropped (too many waiting) is not remembered: a marker
        and the row it marks are lost together, so :meth:`meta` never says that a
        message was queued when it was not.
        """
        with self._lock:
            if is_waiting:
                self._waiting_meta.update(settings)
            elif not self._ledger.unrecorded:
                self._waiting_meta.clear()

    def reply_row(self, channel: int, reply_to: int) -> int | None:
        """The row of the first message queued in ``channel`` replying to ``reply_to``."""
        rows = self._ledger.read(
            "SELECT id FROM outbox WHERE channel = ? AND reply_to = ? AND target IS NULL "
            "ORDER BY id LIMIT 1",
            (channel, reply_to),
        )
        return int(rows[0][0]) if rows else None

    def _bound_output(self, conn: sqlite3.Connection, channel: int) -> None:
        """Fold the oldest untried output rows of ``channel`` into one summary row."""
        rows = conn.execute(
            "SELECT id, counts, created_at, until_at FROM outbox WHERE channel = ? "
            "AND status = 'pending' AND kind = 'output' AND attempts = 0 ORDER BY id",
            (channel,),
        ).fetchall()
        excess = len(rows) - self.max_pending_output
        if excess <= 0:
            return
        folded = rows[: excess + 1]
        counts: Counter[str] = Counter()
        for row in folded:
            counts.update(_load(row["counts"]))
        since = min(row["created_at"] for row in folded)
        until = max(row["until_at"] for row in folded)
        keep = folded[0]["id"]
        conn.execute(
            "UPDATE outbox SET content = ?, counts = ?, created_at = ?, until_at = ? WHERE id = ?",
            (summary_text(counts, until - since), _dump(counts), since, until, keep),
        )
        conn.executemany("DELETE FROM outbox WHERE id = ?", [(r["id"],) for r in folded[1:]])
        logger.info("outbox: channel %d: %d output messages folded into a summary", channel, excess)

    # -- sending ---------------------------------------------------------------

    def due(self, *, now: float, skip: frozenset[int] = frozenset()) -> list[OutboxRow]:
        """The head row of each channel's queue, when its retry time has come.

        Only the oldest pending row of a channel is ever returned, so a channel's
        messages go out in the order they were written.

        Args:
            now: wall-clock time, compared with each row's retry time.
            skip: channels left out (busy, paced or paused).
        """
        return [self._row(row) for row in self._heads(self._ledger.read(_HEADS), now, skip)]

    def claim(self, *, now: float, skip: frozenset[int] = frozenset()) -> Claim:
        """Like :meth:`due`, and record in the same transaction that sending them begins.

        A restart then knows these rows may have gone out. Each row returned
        carries its ``attempts`` and ``first_try_at`` from before this attempt.
        Nothing is claimed while writes wait for the disk (written first, when it
        takes them): a row is sent only once it, and its attempt, are recorded.
        """
        writes = self.writes
        if self._ledger.unrecorded and not self._ledger.retry_deferred():
            self._hold("earlier writes wait for the disk")
            return Claim(rows=[], waiting={}, writes=writes)
        try:
            with self._ledger.transaction() as conn:
                heads = conn.execute(_HEADS).fetchall()
                rows = self._heads(heads, now, skip)
                conn.executemany(
                    "UPDATE outbox SET attempts = attempts + 1, "
                    "first_try_at = coalesce(first_try_at, ?) WHERE id = ?",
                    [(now, row["id"]) for row in rows],
                )
        except sqlite3.OperationalError as exc:
            if not is_no_room(exc):
                raise
            self._hold(str(exc))
            return Claim(rows=[], waiting={}, writes=writes)
        if self._is_held:
            self._is_held = False
            logger.warning("outbox: the ledger takes writes again; sending to Discord resumes")
        taken = {row["id"] for row in rows}
        return Claim(
            rows=[self._row(row) for row in rows],
            waiting={
                h["channel"]: 0.0 if h["id"] in taken else h["next_try_at"]
                for h in heads
                if h["id"] not in taken or h["n"] > 1
            },
            writes=writes,
            pending={h["channel"]: h["n"] for h in heads},
        )

    def _hold(self, why: str) -> None:
        if not self._is_held:
            self._is_held = True
            logger.error(
                "outbox: nothing is sent to Discord until the ledger can record it (%s)", why
            )

    @staticmethod
    def _heads(rows: list[sqlite3.Row], now: float, skip: frozenset[int]) -> list[sqlite3.Row]:
        return [r for r in rows if r["next_try_at"] <= now and r["channel"] not in skip]

    def get(self, row_id: int) -> OutboxRow | None:
        """One row by id, whatever its status (None once pruned)."""
        rows = self._ledger.read(
            f"SELECT {_COLUMNS} FROM outbox o LEFT JOIN outbox t ON t.id = o.target WHERE o.id = ?",
            (row_id,),
        )
        return self._row(rows[0]) if rows else None

    def mark_sent(self, row_id: int, message_id: int, *, now: float) -> int | None:
        """Discord confirmed the row as ``message_id``; old sent rows and markers are pruned.

        The table keeps the newest :attr:`keep_sent` rows (pending ones, and the
        targets of pending edits, always); a marker goes with the row it marks.

        Returns:
            The rows still pending in the row's channel (None while the disk
            refuses writes).
        """
        horizon = row_id - self.keep_sent

        def record(conn: sqlite3.Connection) -> int:
            conn.execute(
                "UPDATE outbox SET status = 'sent', message_id = ?, sent_at = ?, last_error = '' "
                "WHERE id = ?",
                (message_id, now, row_id),
            )
            self._drop_files(conn, row_id)
            conn.execute(
                "DELETE FROM outbox WHERE status != 'pending' AND id <= ? AND id NOT IN "
                "(SELECT target FROM outbox WHERE status = 'pending' AND target IS NOT NULL)",
                (horizon,),
            )
            conn.execute(
                "DELETE FROM outbox_meta WHERE row_id <= ? AND row_id NOT IN "
                "(SELECT id FROM outbox WHERE id <= ?)",
                (horizon, horizon),
            )
            (left,) = conn.execute(
                "SELECT count(*) FROM outbox WHERE status = 'pending' "
                "AND channel = (SELECT channel FROM outbox WHERE id = ?)",
                (row_id,),
            ).fetchone()
            return int(left)

        return self._ledger.record("message sent to Discord", record)

    def mark_failed(self, row_id: int, error: str, *, retry_at: float) -> None:
        """Sending failed for a reason that may pass: try again at ``retry_at``."""
        self._ledger.record(
            "message not sent yet",
            _statement(
                "UPDATE outbox SET last_error = ?, next_try_at = ? WHERE id = ?",
                (error[:500], retry_at, row_id),
            ),
        )

    def mark_abandoned(self, row_id: int, error: str) -> None:
        """Discord refused the row for good (a 400): it no longer holds up its channel."""

        def record(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE outbox SET status = 'abandoned', last_error = ? WHERE id = ?",
                (error[:500], row_id),
            )
            self._drop_files(conn, row_id)

        self._ledger.record("message abandoned", record)
        logger.warning("outbox: message %d abandoned: %s", row_id, error[:200])

    def _drop_files(self, conn: sqlite3.Connection, row_id: int) -> None:
        """Remove the files of row ``row_id``, settled in ``conn``'s transaction.

        Removed before the commit: a commit the disk refuses is written again
        later (the removal with it), and a row left pending without its files
        after a crash was sent already, so its nonce or marker finds its message.
        """
        found = conn.execute("SELECT files FROM outbox WHERE id = ?", (row_id,)).fetchone()
        if found is not None and found["files"]:
            conn.execute("UPDATE outbox SET files = '' WHERE id = ?", (row_id,))
            self.files.remove(found["files"])

    def sweep_files(self) -> int:
        """Remove the folders of files no pending row names (left by a crash).

        Call it at start-up, before anything is queued: a folder written for a
        row not yet recorded would go too. Returns how many were removed.
        """
        rows = self._ledger.read(
            "SELECT files FROM outbox WHERE status = 'pending' AND files != ''"
        )
        removed = self.files.sweep(row["files"] for row in rows)
        if removed:
            logger.info("outbox: %d folders of files left by an earlier dsup removed", removed)
        return removed

    def defer_channel(self, channel: int, *, retry_at: float) -> None:
        """Hold every pending row of ``channel`` until ``retry_at`` (a paused channel)."""
        self._ledger.record(
            "paused channel",
            _statement(
                "UPDATE outbox SET next_try_at = max(next_try_at, ?) "
                "WHERE channel = ? AND status = 'pending'",
                (retry_at, channel),
            ),
        )

    # -- reading -------------------------------------------------------------

    def stats(self) -> OutboxStats:
        """Pending rows per channel (from the index of pending rows)."""
        rows = self._ledger.read(
            "SELECT channel, count(*) AS n FROM outbox WHERE status = 'pending' GROUP BY channel"
        )
        return OutboxStats(pending={row["channel"]: row["n"] for row in rows})

    def pending(self, channel: int) -> int:
        """Rows pending in ``channel``: a look at the index of pending rows, not the table
        (which keeps :attr:`keep_sent` sent rows)."""
        ((count,),) = self._ledger.read(
            "SELECT count(*) FROM outbox WHERE status = 'pending' AND channel = ?", (channel,)
        )
        return int(count)

    def meta(self, key: str) -> str | None:
        """A value the relay keeps across restarts (the audit cursor), or a marker, or None."""
        with self._lock:
            if not self._ledger.unrecorded:  # written, or lost: the table says which
                self._waiting_meta.clear()
            waiting = self._waiting_meta.get(key)
        if waiting is not None:
            return waiting
        rows = self._ledger.read("SELECT value FROM outbox_meta WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        """Store a value :meth:`meta` returns."""

        def record(conn: sqlite3.Connection) -> bool:
            _set_meta(conn, key, value, None)
            return True

        dropped: list[bool] = []
        written = self._ledger.record(
            "setting of the relay", record, on_drop=lambda: dropped.append(True)
        )
        self._remember(written is None and not dropped, [(key, value)])

    def claim_marker(self, key: str) -> bool:
        """Store marker ``key`` unless it is there already; True when this call stored it.

        For what must happen once though it may be asked twice (a command by a
        message the gateway delivers again): claimed before it runs, a second ask
        finds the marker even while the first is still at work, and across a
        restart. A row :meth:`post` marks with ``key`` takes the marker over; until
        then it is pruned with the newest row written before it.
        """

        def record(conn: sqlite3.Connection) -> bool:
            conn.execute(
                "INSERT INTO outbox_meta (key, value, row_id) VALUES "
                "(?, '', (SELECT coalesce(max(id), 0) FROM outbox)) ON CONFLICT (key) DO NOTHING",
                (key,),
            )
            return True

        with self._claiming:  # nobody stores the key between this look and the write
            if self.meta(key) is not None:
                return False
            dropped: list[bool] = []
            written = self._ledger.record(
                "claim of a command", record, on_drop=lambda: dropped.append(True)
            )
            self._remember(written is None and not dropped, [(key, "")])
        return True

    def nonce(self, row_id: int) -> str:
        """The stable nonce of a row: this ledger's salt and the row id (<= 25 chars)."""
        return f"{self._salt}{row_id:x}"

    def _row(self, row: sqlite3.Row) -> OutboxRow:
        nonce = self.nonce(row["id"] if row["target"] is None else row["target"])
        return OutboxRow(
            id=row["id"],
            channel=row["channel"],
            kind=row["kind"],
            content=row["content"],
            target=row["target"],
            target_message_id=row["target_message_id"],
            target_status=row["target_status"],
            reply_to=row["reply_to"],
            attempts=row["attempts"],
            first_try_at=row["first_try_at"],
            created_at=row["created_at"],
            nonce=nonce,
            marker=encode_marker(nonce),
            attach=row["attach"],
            files=row["files"],
        )


def _statement(sql: str, args: tuple[object, ...]) -> Callable[[sqlite3.Connection], None]:
    def record(conn: sqlite3.Connection) -> None:
        conn.execute(sql, args)

    return record


def summary_text(counts: Mapping[str, int], span: float) -> str:
    """What stands for output rows dropped during an outage, one line per process."""
    during = f" during a {duration(span)} outage" if span >= 1 else ""
    lines = [
        f"{n:,} lines of relay from {process} dropped{during} (see /logs {_program(process)})"
        for process, n in sorted(counts.items())
    ]
    return "\n".join(lines) or f"relayed output dropped{during}"


def _set_meta(conn: sqlite3.Connection, key: str, value: str, row_id: int | None) -> None:
    conn.execute(
        "INSERT INTO outbox_meta (key, value, row_id) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, row_id = excluded.row_id",
        (key, value, row_id),
    )


def _program(process: str) -> str:
    """``scraper`` for ``scraper:0``."""
    return process.rpartition(":")[0] or process


def _dump(counts: Mapping[str, int] | None) -> str:
    return json.dumps(dict(counts), sort_keys=True) if counts else ""


def _load(text: str) -> dict[str, int]:
    loaded = json.loads(text) if text else {}
    return {str(k): int(v) for k, v in loaded.items()}

"""Storing attendance events: this node's own (with the next number of its sequence) and
those a child node sends up (exactly once, by their origin id).

Every event is committed before anything depends on it: the caller awaits ``record`` and
only then answers or broadcasts. Listeners (the live meetings' rosters, the outbox up to the
parent) hear of each stored event after its commit, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.roster import KINDS, NODE_DOWN, NODE_UP, Happening
from server.atomic import is_contention
from server.errors import MAX_ROW_ID
from server.models import AttendanceEvent, Meeting, NodeMark
from server.state import NodeContext
from server.text import Line
from server.units import valid_code

log = logging.getLogger(__name__)
T = TypeVar("T")

SEQUENCE = "attendance"
MAX_HEAD_COUNT = 100_000
MAX_BATCH = 500
# A wrong clock below is shown in reports beyond this (server/attendance/report.py).
OFFSET_FLAG_MS = 2000
RETRIES = 8


class EventIn(BaseModel):
    """One event as a child sends it up the ``/node`` link (docs/protocol.md §10)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    origin_node: Line = Field(min_length=1, max_length=64)
    origin_seq: int = Field(ge=1, le=MAX_ROW_ID)
    meeting_id: int = Field(ge=1, le=MAX_ROW_ID)  # the receiving node's id of the meeting
    unit_code: Line = Field("", max_length=64)
    kind: Literal[
        "join", "reconnect", "leave", "drop", "head_count", "roll_answer", "node_down", "node_up"
    ]
    at: float = Field(ge=0, le=253_402_300_799)  # seconds since 1970 on the origin's clock
    offset_ms: int = Field(0, ge=-(10**12), le=10**12)
    reason: Line = Field("", max_length=32)
    node: Line = Field("", max_length=64)
    head_count: int | None = Field(None, ge=0, le=MAX_HEAD_COUNT)
    roll_call: Line | None = Field(None, max_length=36)
    detail: Line = Field("", max_length=20_000)  # JSON text: no raw newline in it

    @model_validator(mode="after")
    def _detail(self) -> EventIn:
        """``detail`` is a JSON object; a node's event names the units it serves (at least
        one: only the node's own restart, on that node, stands for every site)."""
        if not self.detail and self.kind not in (NODE_DOWN, NODE_UP):
            return self
        try:
            detail = json.loads(self.detail)
        except ValueError:
            raise ValueError("detail must be a JSON object") from None
        if not isinstance(detail, dict):
            raise ValueError("detail must be a JSON object")
        if self.kind in (NODE_DOWN, NODE_UP):
            units = detail.get("units")
            if (
                not self.node
                or not isinstance(units, list)
                or not 1 <= len(units) <= 1000
                or not all(isinstance(u, str) and valid_code(u) for u in units)
            ):
                raise ValueError("a node's event needs node and detail.units: its unit codes")
        return self

    def node_units(self) -> list[str]:
        """The units a node's event names (checked by the model)."""
        return list(json.loads(self.detail)["units"]) if self.kind in (NODE_DOWN, NODE_UP) else []


@dataclass(frozen=True)
class Stored:
    """An event stored on this node, as listeners get it."""

    meeting_id: int
    origin_node: str
    origin_seq: int
    unit_code: str
    kind: str
    at: datetime
    offset_ms: int
    reason: str
    node: str
    head_count: int | None
    roll_call: str | None
    detail: str

    def happening(self) -> Happening:
        units: tuple[str, ...] = ()
        if self.kind in (NODE_DOWN, NODE_UP) and self.detail:
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                units = tuple(str(u) for u in json.loads(self.detail).get("units", []))
        return Happening(
            origin=self.origin_node,
            seq=self.origin_seq,
            unit=self.unit_code,
            kind=self.kind,
            at=self.at.timestamp() + self.offset_ms / 1000,
            node=self.node,
            head_count=self.head_count,
            roll_call=self.roll_call,
            units=units,
        )

    def wire(self, parent_meeting_id: int, link_offset_ms: int) -> dict[str, Any]:
        """As sent up: the parent's meeting id, and the offset to the parent's clock."""
        return {
            "origin_node": self.origin_node,
            "origin_seq": self.origin_seq,
            "meeting_id": parent_meeting_id,
            "unit_code": self.unit_code,
            "kind": self.kind,
            "at": self.at.timestamp(),
            "offset_ms": self.offset_ms + link_offset_ms,
            "reason": self.reason,
            "node": self.node,
            "head_count": self.head_count,
            "roll_call": self.roll_call,
            "detail": self.detail,
        }


def stored(row: AttendanceEvent) -> Stored:
    return Stored(
        meeting_id=row.meeting_id,
        origin_node=row.origin_node,
        origin_seq=row.origin_seq,
        unit_code=row.unit_code,
        kind=row.kind,
        at=row.at,
        offset_ms=row.offset_ms,
        reason=row.reason,
        node=row.node,
        head_count=row.head_count,
        roll_call=row.roll_call,
        detail=row.detail,
    )


def _insert(db: AsyncSession) -> Any:
    return pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert


class AttendanceStore:
    def __init__(self, node: NodeContext, code: str) -> None:
        self.node = node
        self.code = code  # this node's code: the origin of the events it makes
        self.listeners: list[Callable[[Sequence[Stored]], None]] = []
        # Meeting id -> whether its events go up to a parent (a mirrored meeting on a child).
        self._upward: dict[int, bool] = {}
        # Events handed to ``record`` and not yet written, with who waits for each.
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[Stored]]] = []
        self._writer: asyncio.Task[None] | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.node.clock(), UTC)

    async def _goes_up(self, db: AsyncSession, meeting_id: int) -> bool:
        if meeting_id not in self._upward:
            origin = (
                await db.execute(select(Meeting.origin).where(Meeting.id == meeting_id))
            ).scalar_one_or_none()
            self._upward[meeting_id] = bool(origin) and self.node.settings.is_child
        return self._upward[meeting_id]

    async def _take_seqs(self, db: AsyncSession, count: int) -> range:
        """The next ``count`` numbers of this node's sequence: an upsert that locks the
        counter row, in the events' own transaction, so numbers are never given twice nor
        skipped."""
        insert = _insert(db)
        statement = (
            insert(NodeMark)
            .values(name=SEQUENCE, value=count, at=self.now())
            .on_conflict_do_update(
                index_elements=[NodeMark.name], set_={"value": NodeMark.value + count}
            )
            .returning(NodeMark.value)
        )
        last = int((await db.execute(statement)).scalar_one())
        return range(last - count + 1, last + 1)

    async def record(
        self,
        meeting_id: int,
        unit_code: str,
        kind: str,
        *,
        at: datetime | None = None,
        reason: str = "",
        node: str = "",
        head_count: int | None = None,
        roll_call: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> Stored:
        """Store one event seen on this node; returns it once committed.

        Events are written by one writer per process, as many as are waiting in each
        transaction: under a burst (hundreds of sites joining at once) that is a few
        transactions instead of hundreds competing for the database's connections. An
        event whose caller stops waiting (its socket closed) is stored all the same.
        """
        assert kind in KINDS, kind
        row = {
            "meeting_id": meeting_id,
            "unit_code": unit_code,
            "kind": kind,
            "at": at or self.now(),
            "reason": reason,
            "node": node,
            "head_count": head_count,
            "roll_call": roll_call,
            "detail": json.dumps(detail, ensure_ascii=False) if detail else "",
        }
        done: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return await asyncio.shield(done)

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            try:
                events = await self._commit([row for row, _ in batch])
            except BaseException as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, done), event in zip(batch, events, strict=True):
                if not done.done():
                    done.set_result(event)
            self._tell(events)

    async def _in_transaction(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """``work`` in one transaction, run again (a few times, after a short wait) when the
        database refused it for contention (SQLite's lock, a PostgreSQL serialization)."""
        for attempt in range(RETRIES):
            try:
                async with self.node.sessionmaker() as db, db.begin():
                    return await work(db)
            except DBAPIError as exc:
                if not is_contention(exc) or attempt == RETRIES - 1:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _commit(self, rows: list[dict[str, Any]]) -> list[Stored]:
        async def work(db: AsyncSession) -> list[Stored]:
            seqs = await self._take_seqs(db, len(rows))
            objects = [
                AttendanceEvent(
                    origin_node=self.code,
                    origin_seq=seq,
                    offset_ms=0,
                    up_pending=await self._goes_up(db, row["meeting_id"]),
                    stored_at=self.now(),
                    **row,
                )
                for seq, row in zip(seqs, rows, strict=True)
            ]
            db.add_all(objects)
            await db.flush()
            return [stored(o) for o in objects]

        return await self._in_transaction(work)

    async def drain(self) -> None:
        """Wait until every event handed to ``record`` is written (at a stop)."""
        while self._writer is not None and not self._writer.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)

    async def store_from_below(
        self, events: Sequence[EventIn], link_offset_ms: int
    ) -> tuple[list[Stored], int]:
        """Store events a child sent up, each at most once (an insert that skips an id
        already stored); returns the new ones and how many were there already."""
        if not events:
            return [], 0

        async def work(db: AsyncSession) -> list[Stored]:
            rows = [
                {
                    "origin_node": e.origin_node,
                    "origin_seq": e.origin_seq,
                    "meeting_id": e.meeting_id,
                    "unit_code": e.unit_code,
                    "kind": e.kind,
                    "at": datetime.fromtimestamp(e.at, UTC),
                    "offset_ms": e.offset_ms + link_offset_ms,
                    "reason": e.reason,
                    "node": e.node,
                    "head_count": e.head_count,
                    "roll_call": e.roll_call,
                    "detail": e.detail,
                    "up_pending": await self._goes_up(db, e.meeting_id),
                    "stored_at": self.now(),
                }
                for e in events
            ]
            statement = (
                _insert(db)(AttendanceEvent)
                .values(rows)
                .on_conflict_do_nothing(
                    index_elements=[AttendanceEvent.origin_node, AttendanceEvent.origin_seq]
                )
                .returning(AttendanceEvent)
            )
            result = await db.execute(statement)
            return [stored(row) for row in result.scalars().all()]

        new = await self._in_transaction(work)
        self._tell(new)
        return new, len(events) - len(new)

    def _tell(self, events: Sequence[Stored]) -> None:
        if not events:
            return
        for listener in self.listeners:
            try:
                listener(events)
            except Exception:  # a listener's failure must not lose the event (it is stored)
                log.exception("attendance listener failed")

    async def meeting_events(self, meeting_id: int) -> list[Stored]:
        async with self.node.sessionmaker() as db:
            rows = await db.execute(
                select(AttendanceEvent)
                .where(AttendanceEvent.meeting_id == meeting_id)
                .order_by(AttendanceEvent.id)
            )
            return [stored(r) for r in rows.scalars().all()]

"""The schema comes from Alembic migrations, on SQLite and PostgreSQL, and matches the models."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import delete, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from server.app import HEAD_REVISION
from server.db import (
    alembic_config,
    create_engine,
    current_revision,
    downgrade,
    make_sessionmaker,
    migrate,
)
from server.models import Base, Meeting, Role, Unit, User

APP_TABLES = {
    "units",
    "users",
    "sessions",
    "login_failures",
    "login_accounts",
    "meetings",
    "attendance_events",
    "roll_calls",
    "node_marks",
    "meeting_units",
    "nodes",
    "node_units",
}


@pytest.fixture
async def engine(any_db_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on an empty database, on each backend in turn."""
    eng = create_engine(any_db_url)
    yield eng
    await eng.dispose()


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


def test_node_requires_the_newest_migration() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_heads() == [HEAD_REVISION]


async def test_migrate_creates_every_table_and_records_head_revision(engine: AsyncEngine) -> None:
    assert await table_names(engine) == set()
    assert await current_revision(engine) is None

    await migrate(engine)

    assert await table_names(engine) == APP_TABLES | {"alembic_version"}
    assert await current_revision(engine) == HEAD_REVISION


async def test_downgrade_to_base_removes_tables_and_upgrade_again_works(
    engine: AsyncEngine,
) -> None:
    await migrate(engine)

    await downgrade(engine, "base")
    # Alembic keeps its (now empty) version table; every table of the node is gone.
    assert await table_names(engine) == {"alembic_version"}
    assert await current_revision(engine) is None

    await migrate(engine)
    assert await table_names(engine) == APP_TABLES | {"alembic_version"}
    assert await current_revision(engine) == HEAD_REVISION
    async with make_sessionmaker(engine)() as db, db.begin():
        db.add(Unit(code="CM", name="Tỉnh Cà Mau", level="province"))
    async with engine.connect() as conn:
        names = (await conn.execute(text("SELECT name FROM units"))).scalars().all()
    assert names == ["Tỉnh Cà Mau"]


def _schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    # No filtering: neither UTCDateTime (compared through its DateTime(timezone=True) impl)
    # nor the non-native enums (VARCHAR(16), no CHECK constraint) give false differences.
    return compare_metadata(context, Base.metadata)


async def test_migrated_schema_matches_the_models(engine: AsyncEngine) -> None:
    await migrate(engine)

    async with engine.connect() as conn:
        differences = await conn.run_sync(_schema_differences)

    assert differences == []


async def test_sqlite_database_is_in_wal_mode(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            foreign_keys = (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one()
    finally:
        await engine.dispose()
    assert mode == "wal"
    assert foreign_keys == 1

    # WAL is a property of the database file: a plain connection sees it too.
    path = make_url(sqlite_url).database
    assert path is not None
    with sqlite3.connect(Path(path)) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    plain.close()


async def test_user_of_a_missing_unit_is_refused(engine: AsyncEngine) -> None:
    await migrate(engine)
    sessionmaker = make_sessionmaker(engine)

    with pytest.raises(IntegrityError):
        async with sessionmaker() as db, db.begin():
            db.add(
                User(
                    username="kt.khong-co",
                    full_name="Kỹ thuật điểm cầu không tồn tại",
                    password_hash="x",
                    role=Role.OPERATOR,
                    unit_id=9999,
                    active=True,
                )
            )

    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM users"))).scalar_one() == 0


async def test_district_with_communes_cannot_be_deleted(engine: AsyncEngine) -> None:
    await migrate(engine)
    sessionmaker = make_sessionmaker(engine)
    async with sessionmaker() as db, db.begin():
        district = Unit(code="CM-NC", name="Huyện Năm Căn", level="district")
        db.add(district)
        await db.flush()
        db.add(Unit(code="CM-NC-HR", name="Xã Hàm Rồng", level="commune", parent_id=district.id))

    with pytest.raises(IntegrityError):
        async with sessionmaker() as db, db.begin():
            await db.execute(delete(Unit).where(Unit.code == "CM-NC"))

    async with engine.connect() as conn:
        codes = (await conn.execute(text("SELECT code FROM units ORDER BY code"))).scalars().all()
    assert codes == ["CM-NC", "CM-NC-HR"]


async def test_upgrade_to_0002_and_back_keeps_meetings_and_their_invitations(
    engine: AsyncEngine,
) -> None:
    # A table rebuild of ``meetings`` on SQLite would cascade-delete ``meeting_units``.
    await migrate(engine, "0001")
    async with engine.begin() as conn:
        for sql in (
            "INSERT INTO units (id, code, name, level, created_at) "
            "VALUES (1, 'CM', 'Tỉnh Cà Mau', 'province', CURRENT_TIMESTAMP)",
            "INSERT INTO meetings (id, title, description, host_unit_id, starts_at, "
            "duration_minutes, status, created_at, updated_at) VALUES (1, 'Giao ban', '', 1, "
            "CURRENT_TIMESTAMP, 120, 'scheduled', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            "INSERT INTO meeting_units (meeting_id, unit_id, whole_subtree) VALUES (1, 1, true)",
        ):
            await conn.execute(text(sql))

    async def rows() -> list[tuple[Any, ...]]:
        async with engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT m.title, mu.unit_id FROM meetings m "
                    "JOIN meeting_units mu ON mu.meeting_id = m.id"
                )
            )
            return [tuple(r) for r in result]

    await migrate(engine)
    assert await rows() == [("Giao ban", 1)]
    async with engine.connect() as conn:
        origin = (await conn.execute(text("SELECT origin, origin_meeting_id FROM meetings"))).one()
    assert tuple(origin) == (None, None)

    await downgrade(engine, "0001")
    assert await rows() == [("Giao ban", 1)]
    assert await table_names(engine) == APP_TABLES - {
        "nodes",
        "node_units",
        "login_accounts",
        "attendance_events",
        "roll_calls",
        "node_marks",
    } | {"alembic_version"}


async def test_upgrade_to_0003_and_back_keeps_meetings_and_gives_them_version_0(
    engine: AsyncEngine,
) -> None:
    await migrate(engine, "0002")
    async with engine.begin() as conn:
        for sql in (
            "INSERT INTO units (id, code, name, level, created_at) "
            "VALUES (1, 'CM', 'Tỉnh Cà Mau', 'province', CURRENT_TIMESTAMP)",
            "INSERT INTO meetings (id, title, description, host_unit_id, starts_at, "
            "duration_minutes, status, created_at, updated_at) VALUES (1, 'Giao ban', '', 1, "
            "CURRENT_TIMESTAMP, 120, 'scheduled', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            "INSERT INTO meeting_units (meeting_id, unit_id, whole_subtree) VALUES (1, 1, true)",
        ):
            await conn.execute(text(sql))

    async def rows() -> list[tuple[Any, ...]]:
        async with engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT m.title, mu.unit_id FROM meetings m "
                    "JOIN meeting_units mu ON mu.meeting_id = m.id"
                )
            )
            return [tuple(r) for r in result]

    await migrate(engine)
    assert await rows() == [("Giao ban", 1)]
    async with engine.connect() as conn:
        version = (await conn.execute(text("SELECT version FROM meetings"))).scalar_one()
    assert version == 0

    await downgrade(engine, "0002")
    assert await rows() == [("Giao ban", 1)]
    assert "login_accounts" not in await table_names(engine)
    async with engine.connect() as conn:
        columns = await conn.run_sync(
            lambda c: {col["name"] for col in inspect(c).get_columns("meetings")}
        )
    assert "version" not in columns

    await migrate(engine)
    assert await current_revision(engine) == HEAD_REVISION


async def test_a_mirrored_meeting_is_stored_once_per_origin(engine: AsyncEngine) -> None:
    await migrate(engine)
    sessionmaker = make_sessionmaker(engine)
    async with sessionmaker() as db, db.begin():
        unit = Unit(code="CM-NC", name="Huyện Năm Căn", level="district")
        db.add(unit)
        await db.flush()
        unit_id = unit.id

    def meeting(origin: str | None, origin_id: int | None) -> Meeting:
        return Meeting(
            title="Giao ban",
            host_unit_id=unit_id,
            starts_at=datetime.now(UTC),
            origin=origin,
            origin_meeting_id=origin_id,
        )

    async with sessionmaker() as db, db.begin():
        # Local meetings (no origin) and the same parent id from two parents are fine.
        db.add_all(
            [
                meeting(None, None),
                meeting(None, None),
                meeting("https://camau.vn", 7),
                meeting("https://baclieu.vn", 7),
            ]
        )
    with pytest.raises(IntegrityError):
        async with sessionmaker() as db, db.begin():
            db.add(meeting("https://camau.vn", 7))

    async with engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM meetings"))).scalar_one()
    assert count == 4

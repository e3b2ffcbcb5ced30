"""The administrative tree: an in-memory index of units, and loading units from a file.

A province has at most a few thousand units, so the whole tree is held in memory and
rebuilt from the database after every change; subtree checks are then dictionary walks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.models import Unit
from server.text import Line

CODE_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
LEVEL_RE = r"^[a-z][a-z_-]{0,31}$"


class UnitFileError(Exception):
    """A unit file was refused; the message names the offending entry. Nothing was written."""


@dataclass(frozen=True, slots=True)
class UnitInfo:
    id: int
    code: str
    name: str
    level: str
    parent_id: int | None


@dataclass
class UnitTree:
    """Read-only index over all units of this node's database."""

    by_id: dict[int, UnitInfo] = field(default_factory=dict)
    by_code: dict[str, UnitInfo] = field(default_factory=dict)
    children: dict[int | None, list[int]] = field(default_factory=dict)

    @classmethod
    def build(cls, units: Iterable[UnitInfo]) -> UnitTree:
        tree = cls()
        for u in units:
            tree.by_id[u.id] = u
            tree.by_code[u.code] = u
        for u in sorted(tree.by_id.values(), key=lambda x: (x.level, x.name, x.code)):
            tree.children.setdefault(u.parent_id, []).append(u.id)
        return tree

    @classmethod
    async def load(cls, db: AsyncSession) -> UnitTree:
        rows = (await db.execute(select(Unit))).scalars().all()
        return cls.build(UnitInfo(r.id, r.code, r.name, r.level, r.parent_id) for r in rows)

    def get(self, unit_id: int) -> UnitInfo:
        return self.by_id[unit_id]

    def roots(self) -> list[UnitInfo]:
        return [self.by_id[i] for i in self.children.get(None, [])]

    def child_units(self, unit_id: int) -> list[UnitInfo]:
        return [self.by_id[i] for i in self.children.get(unit_id, [])]

    def ancestors(self, unit_id: int) -> list[UnitInfo]:
        """Parent first, root last (the unit itself is not included)."""
        out: list[UnitInfo] = []
        parent = self.by_id[unit_id].parent_id
        while parent is not None:
            out.append(self.by_id[parent])
            parent = self.by_id[parent].parent_id
        return out

    def path(self, unit_id: int) -> list[UnitInfo]:
        """Root first, the unit itself last."""
        return [*reversed(self.ancestors(unit_id)), self.by_id[unit_id]]

    def subtree_ids(self, unit_id: int) -> set[int]:
        out: set[int] = set()
        stack = [unit_id]
        while stack:
            current = stack.pop()
            out.add(current)
            stack.extend(self.children.get(current, []))
        return out

    def walk(self, unit_id: int, depth: int = 0) -> Iterator[tuple[UnitInfo, int]]:
        """Depth-first over a subtree with each unit's depth below ``unit_id``."""
        yield self.by_id[unit_id], depth
        for child in self.children.get(unit_id, []):
            yield from self.walk(child, depth + 1)

    def in_subtree(self, unit_id: int, root_id: int) -> bool:
        current: int | None = unit_id
        while current is not None:
            if current == root_id:
                return True
            current = self.by_id[current].parent_id
        return False


# -- loading a unit file ---------------------------------------------------------------------


class UnitEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    code: Line = Field(pattern=CODE_RE)
    # PostgreSQL refuses NUL in text, and no unit name has tabs, newlines or other controls.
    name: Line = Field(min_length=1, max_length=200)
    level: Line = Field(pattern=LEVEL_RE)
    parent: Line | None = None


def _describe(index: int, raw: Any) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("code"), str):
        return f"entry {index} (code {raw['code']!r})"
    return f"entry {index}"


def parse_unit_file(path: Path) -> list[UnitEntry]:
    """Parse and validate a YAML or JSON unit file; refuse with a message naming the entry."""
    try:
        # utf-8-sig: Windows editors save UTF-8 with a byte-order mark, which JSON refuses.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise UnitFileError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise UnitFileError(f"{path}: not UTF-8 text") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise UnitFileError(f"{path}: cannot be parsed: {exc}") from exc
    if isinstance(data, dict):
        data = data.get("units")
    if not isinstance(data, list) or not data:
        raise UnitFileError(f"{path}: expected a non-empty list of units (or a 'units' list)")

    entries: list[UnitEntry] = []
    for index, raw in enumerate(data, start=1):
        if not isinstance(raw, dict):
            raise UnitFileError(f"{path}: entry {index}: expected a mapping with code, name, level")
        try:
            entries.append(UnitEntry.model_validate(raw))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"]) or "entry"
            raise UnitFileError(f"{path}: {_describe(index, raw)}: {loc}: {err['msg']}") from exc
    return entries


def check_entries(entries: list[UnitEntry], existing: dict[str, str | None]) -> None:
    """Refuse duplicates, unknown parents and cycles in the tree the file would produce.

    ``existing`` maps each code already stored to its parent's code; file entries with the
    same code replace them (a reload updates names and parents).
    """
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries, start=1):
        if entry.code in seen:
            raise UnitFileError(
                f"entry {index} (code {entry.code!r}): duplicate code, first at entry "
                f"{seen[entry.code]}"
            )
        seen[entry.code] = index
    parents = dict(existing)
    parents.update({e.code: e.parent for e in entries})
    for index, entry in enumerate(entries, start=1):
        if entry.parent is not None and entry.parent not in parents:
            raise UnitFileError(
                f"entry {index} (code {entry.code!r}): parent {entry.parent!r} is not a known unit"
            )
    for index, entry in enumerate(entries, start=1):
        trail = [entry.code]
        current = entry.parent
        while current is not None:
            if current in trail:
                # Name an entry on the loop itself (this entry may only hang below it).
                loop = trail[trail.index(current) :]
                on_loop = [code for code in loop if code in seen]
                if not on_loop:
                    cycle = " -> ".join([*trail, current])
                    raise UnitFileError(f"entry {index} (code {entry.code!r}): cycle {cycle}")
                culprit = min(on_loop, key=seen.__getitem__)
                k = loop.index(culprit)
                cycle = " -> ".join([*loop[k:], *loop[:k], culprit])
                raise UnitFileError(f"entry {seen[culprit]} (code {culprit!r}): cycle {cycle}")
            trail.append(current)
            current = parents.get(current)


async def load_units(db: AsyncSession, entries: list[UnitEntry]) -> tuple[int, int]:
    """Insert or update units in the caller's transaction. Returns (added, updated)."""
    rows = {u.code: u for u in (await db.execute(select(Unit))).scalars().all()}
    by_id = {u.id: u for u in rows.values()}
    existing = {
        code: (by_id[u.parent_id].code if u.parent_id is not None else None)
        for code, u in rows.items()
    }
    check_entries(entries, existing)
    added = updated = 0
    # Insert parents before children: order entries by depth in the final tree.
    final_parent = {**existing, **{e.code: e.parent for e in entries}}

    def depth(code: str) -> int:
        d, current = 0, final_parent.get(code)
        while current is not None:
            d, current = d + 1, final_parent.get(current)
        return d

    for entry in sorted(entries, key=lambda e: depth(e.code)):
        parent_id = rows[entry.parent].id if entry.parent is not None else None
        unit = rows.get(entry.code)
        if unit is None:
            unit = Unit(code=entry.code, name=entry.name, level=entry.level, parent_id=parent_id)
            db.add(unit)
            await db.flush()
            rows[entry.code] = unit
            added += 1
        elif (unit.name, unit.level, unit.parent_id) != (entry.name, entry.level, parent_id):
            unit.name, unit.level, unit.parent_id = entry.name, entry.level, parent_id
            updated += 1
    await db.flush()
    return added, updated


def valid_code(code: str) -> bool:
    return re.fullmatch(CODE_RE, code) is not None

"""Loading unit files into the administrative tree, on SQLite and PostgreSQL, and the tree index.

A unit file is all or nothing: either every entry is stored, or the file is refused with a
message naming the offending entry and the units table is exactly as it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db import create_engine, make_sessionmaker, migrate
from server.demo.tree import DEMO_UNITS
from server.models import Unit
from server.units import (
    UnitEntry,
    UnitFileError,
    UnitInfo,
    UnitTree,
    check_entries,
    load_units,
    parse_unit_file,
)

# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
async def engine(any_db_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated, empty database on each backend in turn."""
    eng = create_engine(any_db_url)
    await migrate(eng)
    yield eng
    await eng.dispose()


def write(directory: Path, name: str, content: str | bytes) -> Path:
    path = directory / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def write_json(directory: Path, name: str, data: Any) -> Path:
    # ensure_ascii=False: the file holds the raw UTF-8 bytes of the Vietnamese letters.
    return write(directory, name, json.dumps(data, ensure_ascii=False, indent=1))


async def load_file(engine: AsyncEngine, path: Path) -> tuple[int, int]:
    """What `hoinghi units load FILE` does: parse, then load in one transaction."""
    entries = parse_unit_file(path)
    async with make_sessionmaker(engine)() as db, db.begin():
        return await load_units(db, entries)


async def stored_units(engine: AsyncEngine) -> dict[str, tuple[int, str, str, str | None]]:
    """code -> (id, name, level, parent code), read back from the units table."""
    async with make_sessionmaker(engine)() as db:
        rows = (await db.execute(select(Unit))).scalars().all()
    codes = {u.id: u.code for u in rows}
    return {
        u.code: (u.id, u.name, u.level, codes[u.parent_id] if u.parent_id else None) for u in rows
    }


async def table_snapshot(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    """Every column of every row of the units table, in id order."""
    async with engine.connect() as conn:
        result = await conn.execute(
            select(
                Unit.id, Unit.code, Unit.name, Unit.level, Unit.parent_id, Unit.created_at
            ).order_by(Unit.id)
        )
        return [tuple(row) for row in result]


def unit(code: str, name: str, level: str, parent: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"code": code, "name": name, "level": level}
    if parent is not None:
        entry["parent"] = parent
    return entry


NGOC_HIEN_YAML = """\
# Huyện Ngọc Hiển, tỉnh Cà Mau (trước năm 2025). Xã được liệt kê trước huyện.
units:
  - code: CM-NH-DMU
    name: Xã Đất Mũi
    level: commune
    parent: CM-NH
  - code: CM-NH-RG
    name: Thị trấn Rạch Gốc
    level: commune
    parent: CM-NH
  - code: CM-NH
    name: Huyện Ngọc Hiển
    level: district
    parent: CM
  - code: CM
    name: Tỉnh Cà Mau
    level: province
    parent: null
"""

NGOC_HIEN_STORED = {
    "CM": ("Tỉnh Cà Mau", "province", None),
    "CM-NH": ("Huyện Ngọc Hiển", "district", "CM"),
    "CM-NH-DMU": ("Xã Đất Mũi", "commune", "CM-NH"),
    "CM-NH-RG": ("Thị trấn Rạch Gốc", "commune", "CM-NH"),
}


def assert_names_byte_identical(
    stored: dict[str, tuple[int, str, str, str | None]],
    expected: dict[str, tuple[str, str, str | None]],
) -> None:
    assert set(stored) == set(expected)
    for code, (name, level, parent) in expected.items():
        _, got_name, got_level, got_parent = stored[code]
        assert got_name.encode("utf-8") == name.encode("utf-8"), code
        assert (got_level, got_parent) == (level, parent), code


# -- good files ------------------------------------------------------------------------------


async def test_yaml_file_loads_with_vietnamese_names_intact(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    path = write(tmp_path, "ngoc-hien.yaml", NGOC_HIEN_YAML)

    assert await load_file(engine, path) == (4, 0)

    assert_names_byte_identical(await stored_units(engine), NGOC_HIEN_STORED)


async def test_json_file_loads_with_vietnamese_names_intact(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    data = [
        unit("CM-NH-DMU", "Xã Đất Mũi", "commune", "CM-NH"),
        unit("CM", "Tỉnh Cà Mau", "province"),
        unit("CM-NH", "Huyện Ngọc Hiển", "district", "CM"),
        unit("CM-NH-RG", "Thị trấn Rạch Gốc", "commune", "CM-NH"),
    ]
    path = write_json(tmp_path, "ngoc-hien.json", data)
    assert "Xã Đất Mũi".encode() in path.read_bytes()

    assert await load_file(engine, path) == (4, 0)

    assert_names_byte_identical(await stored_units(engine), NGOC_HIEN_STORED)


async def test_reload_with_changed_name_updates_the_unit_in_place(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await load_file(engine, write(tmp_path, "v1.yaml", NGOC_HIEN_YAML))
    before = await stored_units(engine)

    changed = NGOC_HIEN_YAML.replace(
        "name: Thị trấn Rạch Gốc", "name: Thị trấn Rạch Gốc (mở rộng)"
    ) + ("  - code: CM-NH-VAD\n    name: Xã Viên An Đông\n    level: commune\n    parent: CM-NH\n")
    assert await load_file(engine, write(tmp_path, "v2.yaml", changed)) == (1, 1)

    after = await stored_units(engine)
    assert after["CM-NH-RG"] == (
        before["CM-NH-RG"][0],
        "Thị trấn Rạch Gốc (mở rộng)",
        "commune",
        "CM-NH",
    )
    assert after["CM-NH-VAD"][1:] == ("Xã Viên An Đông", "commune", "CM-NH")
    for code in ("CM", "CM-NH", "CM-NH-DMU"):
        assert after[code] == before[code]

    # Loading the same file again changes nothing.
    assert await load_file(engine, write(tmp_path, "v3.yaml", changed)) == (0, 0)
    assert await stored_units(engine) == after


async def test_reload_moves_a_commune_to_another_district(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await load_file(engine, write(tmp_path, "v1.yaml", NGOC_HIEN_YAML))
    before = await stored_units(engine)

    moved = [
        unit("CM-NC", "Huyện Năm Căn", "district", "CM"),
        unit("CM-NH-DMU", "Xã Đất Mũi", "commune", "CM-NC"),
    ]
    assert await load_file(engine, write_json(tmp_path, "move.json", moved)) == (1, 1)

    after = await stored_units(engine)
    assert after["CM-NH-DMU"] == (before["CM-NH-DMU"][0], "Xã Đất Mũi", "commune", "CM-NC")
    async with make_sessionmaker(engine)() as db:
        tree = await UnitTree.load(db)
    assert [u.code for u in tree.child_units(after["CM-NH"][0])] == ["CM-NH-RG"]
    assert [u.code for u in tree.child_units(after["CM-NC"][0])] == ["CM-NH-DMU"]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_utf8_file_with_byte_order_mark_as_saved_by_windows_editors_loads(
    tmp_path: Path, suffix: str
) -> None:
    data = [unit("CM", "Tỉnh Cà Mau", "province"), unit("CM-NH-DMU", "Xã Đất Mũi", "commune", "CM")]
    text = json.dumps(data, ensure_ascii=False)  # JSON is also valid YAML
    path = write(tmp_path, f"units{suffix}", b"\xef\xbb\xbf" + text.encode("utf-8"))

    entries = parse_unit_file(path)

    assert [(e.code, e.name, e.parent) for e in entries] == [
        ("CM", "Tỉnh Cà Mau", None),
        ("CM-NH-DMU", "Xã Đất Mũi", "CM"),
    ]


async def test_demo_file_loads_three_districts_of_ca_mau_with_their_communes(
    engine: AsyncEngine,
) -> None:
    entries = parse_unit_file(DEMO_UNITS)
    assert await load_file(engine, DEMO_UNITS) == (len(entries), 0)

    async with make_sessionmaker(engine)() as db:
        tree = await UnitTree.load(db)
    [province] = tree.roots()
    assert province.name == "Tỉnh Cà Mau"
    districts = {d.name: d for d in tree.child_units(province.id)}
    assert set(districts) == {"Huyện Năm Căn", "Huyện Ngọc Hiển", "Huyện Trần Văn Thời"}
    for name, district in districts.items():
        communes = tree.child_units(district.id)
        assert len(communes) >= 3, name
        assert all(c.level == "commune" for c in communes), name
        assert all(tree.child_units(c.id) == [] for c in communes), name
    assert len(tree.by_id) == len(entries)


# -- refused files: the message names the file or the entry ---------------------------------


PARSE_REFUSALS = [
    pytest.param(
        "units.yaml",
        b"- code: CM\n  name: [T\xe1\xbb\x89nh C\xc3\xa0 Mau\n  level: province\n",
        ["cannot be parsed"],
        id="unparseable-yaml",
    ),
    pytest.param(
        "units.json",
        '[{"code": "CM", "name": "Tỉnh Cà Mau", "level": "province",}]',
        ["cannot be parsed", "line 1"],
        id="unparseable-json",
    ),
    pytest.param(
        "units.yaml",
        "Cà Mau".encode("cp1258"),
        ["not UTF-8"],
        id="not-utf8-windows-1258",
    ),
    pytest.param(
        "units.yaml",
        "code: CM\nname: Tỉnh Cà Mau\nlevel: province\n",
        ["expected a non-empty list"],
        id="top-level-mapping-without-units",
    ),
    pytest.param("units.yaml", "Tỉnh Cà Mau\n", ["expected a non-empty list"], id="top-level-text"),
    pytest.param("units.yaml", "", ["expected a non-empty list"], id="empty-file"),
    pytest.param("units.json", "[]", ["expected a non-empty list"], id="empty-list"),
    pytest.param("units.json", '{"units": []}', ["expected a non-empty list"], id="empty-units"),
    pytest.param(
        "units.yaml",
        "- {code: CM, name: Tỉnh Cà Mau, level: province}\n- Huyện Năm Căn\n",
        ["entry 2: expected a mapping"],
        id="entry-not-a-mapping",
    ),
    pytest.param(
        "units.json",
        [unit("CM", "Tỉnh Cà Mau", "province"), {"name": "Huyện Năm Căn", "level": "district"}],
        ["entry 2: code: Field required"],
        id="missing-code",
    ),
    pytest.param(
        "units.json",
        [unit("CM", "Tỉnh Cà Mau", "province"), {"code": "CM-NC", "level": "district"}],
        ["entry 2 (code 'CM-NC'): name: Field required"],
        id="missing-name",
    ),
    pytest.param(
        "units.json",
        [unit("CM", "Tỉnh Cà Mau", "province"), unit("CM-NC", "   ", "district", "CM")],
        ["entry 2 (code 'CM-NC'): name:", "at least 1 character"],
        id="empty-name",
    ),
    pytest.param(
        "units.json",
        [unit("CM", "Tỉnh Cà Mau", "province"), unit("CM NC", "Huyện Năm Căn", "district", "CM")],
        ["entry 2 (code 'CM NC'): code:", "pattern"],
        id="code-with-space",
    ),
    pytest.param(
        "units.json",
        [unit("CM", "Tỉnh Cà Mau", "province"), unit("CM-NĂMCĂN", "Huyện Năm Căn", "district")],
        ["entry 2 (code 'CM-NĂMCĂN'): code:", "pattern"],
        id="code-with-vietnamese-letters",
    ),
    pytest.param(
        "units.json",
        [unit("CM", "Tỉnh Cà Mau", "province"), unit("CM-NC", "Huyện Năm Căn", "Huyện", "CM")],
        ["entry 2 (code 'CM-NC'): level:", "pattern"],
        id="bad-level",
    ),
    pytest.param(
        "units.json",
        [
            unit("CM", "Tỉnh Cà Mau", "province"),
            {**unit("CM-NC", "Huyện Năm Căn", "district", "CM"), "ma_so": "964"},
        ],
        ["entry 2 (code 'CM-NC'): ma_so:", "Extra inputs are not permitted"],
        id="unknown-extra-key",
    ),
    pytest.param(
        "units.json",
        [unit("CM", "Tỉnh Cà Mau", "province"), unit("CM-NC", "Huyện\u0000Năm Căn", "district")],
        ["entry 2 (code 'CM-NC'): name:", "control characters"],
        id="nul-in-name",
    ),
    pytest.param(
        "units.yaml",
        "- code: CM\n  name: Tỉnh Cà Mau\n  level: province\n- code: 964\n  name: Huyện Năm Căn\n"
        "  level: district\n",
        ["entry 2: code:", "valid string"],
        id="unquoted-numeric-code-in-yaml",
    ),
]


@pytest.mark.parametrize(("filename", "content", "expected"), PARSE_REFUSALS)
def test_malformed_file_is_refused_naming_file_and_entry(
    tmp_path: Path, filename: str, content: Any, expected: list[str]
) -> None:
    if isinstance(content, list):
        path = write_json(tmp_path, filename, content)
    else:
        path = write(tmp_path, filename, content)

    with pytest.raises(UnitFileError) as refused:
        parse_unit_file(path)

    message = str(refused.value)
    assert message.startswith(f"{path}: "), message
    for part in expected:
        assert part in message, message


def test_missing_file_is_refused_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "khong-co.yaml"
    with pytest.raises(UnitFileError, match="file not found") as refused:
        parse_unit_file(path)
    assert str(path) in str(refused.value)


# Already in the database before each of these files is offered: Cà Mau > Năm Căn > Hàm Rồng.
BASE = [
    unit("CM", "Tỉnh Cà Mau", "province"),
    unit("CM-NC", "Huyện Năm Căn", "district", "CM"),
    unit("CM-NC-HR", "Xã Hàm Rồng", "commune", "CM-NC"),
]

LOAD_REFUSALS = [
    pytest.param(
        [
            unit("CM-TVT", "Huyện Trần Văn Thời", "district", "CM"),
            unit("CM-TVT-KB", "Xã Khánh Bình", "commune", "CM-TVT"),
            unit("CM-TVT", "Huyện Trần Văn Thời (trùng)", "district", "CM"),
        ],
        "entry 3 (code 'CM-TVT'): duplicate code, first at entry 1",
        id="duplicate-code",
    ),
    pytest.param(
        # A valid first half (new units and a renamed stored one), an unknown parent at the end.
        [
            unit("CM-TVT", "Huyện Trần Văn Thời", "district", "CM"),
            unit("CM-TVT-KB", "Xã Khánh Bình", "commune", "CM-TVT"),
            unit("CM-NC", "Huyện Năm Căn (đổi tên)", "district", "CM"),
            unit("CM-NH-DMU", "Xã Đất Mũi", "commune", "CM-NH"),
        ],
        "entry 4 (code 'CM-NH-DMU'): parent 'CM-NH' is not a known unit",
        id="unknown-parent-after-valid-half",
    ),
    pytest.param(
        [
            unit("CM-TVT", "Huyện Trần Văn Thời", "district", "CM-TVT-KB"),
            unit("CM-TVT-KB", "Xã Khánh Bình", "commune", "CM-TVT"),
        ],
        "entry 1 (code 'CM-TVT'): cycle CM-TVT -> CM-TVT-KB -> CM-TVT",
        id="cycle-of-two",
    ),
    pytest.param(
        [
            unit("A", "Tỉnh A", "province", "B"),
            unit("B", "Huyện B", "district", "C"),
            unit("C", "Xã C", "commune", "A"),
        ],
        "entry 1 (code 'A'): cycle A -> B -> C -> A",
        id="cycle-of-three",
    ),
    pytest.param(
        [unit("CM-TVT", "Huyện Trần Văn Thời", "district", "CM-TVT")],
        "entry 1 (code 'CM-TVT'): cycle CM-TVT -> CM-TVT",
        id="own-parent",
    ),
    pytest.param(
        # Putting the stored province under its own commune closes a loop through the database.
        [
            unit("CM-TVT", "Huyện Trần Văn Thời", "district", "CM"),
            unit("CM", "Tỉnh Cà Mau", "province", "CM-NC-HR"),
        ],
        "entry 2 (code 'CM'): cycle CM -> CM-NC-HR -> CM-NC -> CM",
        id="cycle-with-stored-units",
    ),
]


@pytest.mark.parametrize(("entries", "expected"), LOAD_REFUSALS)
async def test_refused_file_names_the_entry_and_leaves_units_table_unchanged(
    engine: AsyncEngine, tmp_path: Path, entries: list[dict[str, Any]], expected: str
) -> None:
    await load_file(engine, write_json(tmp_path, "base.json", BASE))
    before = await table_snapshot(engine)
    assert len(before) == len(BASE)

    with pytest.raises(UnitFileError) as refused:
        await load_file(engine, write_json(tmp_path, "refused.json", entries))

    assert str(refused.value) == expected
    assert await table_snapshot(engine) == before


async def test_refused_file_on_empty_database_leaves_it_empty(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    lines = NGOC_HIEN_YAML + "  - code: CM-TVT-KB\n    name: Xã Khánh Bình\n    level: commune\n"
    lines += "    parent: CM-TVT\n"
    path = write(tmp_path, "half.yaml", lines)

    with pytest.raises(UnitFileError, match=r"entry 5 \(code 'CM-TVT-KB'\): parent 'CM-TVT'"):
        await load_file(engine, path)

    assert await table_snapshot(engine) == []


# -- the tree index --------------------------------------------------------------------------


def chain_tree() -> UnitTree:
    """Province > district > commune > hamlet, given child first."""
    return UnitTree.build(
        [
            UnitInfo(4, "CM-NC-HR-CN", "Ấp Cái Nai", "hamlet", 3),
            UnitInfo(3, "CM-NC-HR", "Xã Hàm Rồng", "commune", 2),
            UnitInfo(2, "CM-NC", "Huyện Năm Căn", "district", 1),
            UnitInfo(1, "CM", "Tỉnh Cà Mau", "province", None),
        ]
    )


def test_chain_subtrees_ancestors_and_path() -> None:
    tree = chain_tree()

    assert tree.subtree_ids(1) == {1, 2, 3, 4}
    assert tree.subtree_ids(2) == {2, 3, 4}
    assert tree.subtree_ids(4) == {4}
    assert [u.id for u in tree.ancestors(4)] == [3, 2, 1]
    assert tree.ancestors(1) == []
    assert [u.name for u in tree.path(4)] == [
        "Tỉnh Cà Mau",
        "Huyện Năm Căn",
        "Xã Hàm Rồng",
        "Ấp Cái Nai",
    ]
    assert [u.id for u in tree.path(1)] == [1]
    assert [u.id for u in tree.roots()] == [1]


def test_chain_in_subtree_goes_down_only() -> None:
    tree = chain_tree()

    assert tree.in_subtree(4, 1)
    assert tree.in_subtree(4, 2)
    assert tree.in_subtree(3, 3)
    assert not tree.in_subtree(1, 4)
    assert not tree.in_subtree(2, 3)


def test_chain_walk_gives_depth_below_start() -> None:
    tree = chain_tree()

    assert [(u.id, d) for u, d in tree.walk(1)] == [(1, 0), (2, 1), (3, 2), (4, 3)]
    assert [(u.id, d) for u, d in tree.walk(3)] == [(3, 0), (4, 1)]


def province_commune_tree() -> UnitTree:
    """After the 2025 reform: a province directly over communes and wards."""
    return UnitTree.build(
        [
            UnitInfo(13, "CM-DM", "Xã Đất Mũi", "commune", 1),
            UnitInfo(10, "CM-P1", "Phường An Xuyên", "ward", 1),
            UnitInfo(12, "CM-CDV", "Xã Cái Đôi Vàm", "commune", 1),
            UnitInfo(1, "CM", "Tỉnh Cà Mau", "province", None),
            UnitInfo(11, "CM-AX", "Xã An Xuyên", "commune", 1),
        ]
    )


def test_province_over_communes_walks_communes_by_name_then_wards() -> None:
    tree = province_commune_tree()

    assert [(u.name, d) for u, d in tree.walk(1)] == [
        ("Tỉnh Cà Mau", 0),
        ("Xã An Xuyên", 1),
        ("Xã Cái Đôi Vàm", 1),
        ("Xã Đất Mũi", 1),
        ("Phường An Xuyên", 1),
    ]


def test_province_over_communes_subtrees_and_membership() -> None:
    tree = province_commune_tree()

    assert tree.subtree_ids(1) == {1, 10, 11, 12, 13}
    assert tree.subtree_ids(13) == {13}
    assert [u.id for u in tree.ancestors(13)] == [1]
    assert [u.code for u in tree.path(10)] == ["CM", "CM-P1"]
    assert tree.in_subtree(12, 1)
    assert not tree.in_subtree(12, 13)
    assert not tree.in_subtree(1, 12)
    assert tree.get(11).name == "Xã An Xuyên"


# -- any parent assignment is a tree or a refusal -------------------------------------------


@st.composite
def files_over_stored_trees(
    draw: st.DrawFn,
) -> tuple[dict[str, str | None], list[UnitEntry]]:
    """A stored tree (valid: parents come first) and a file that may override stored codes."""
    stored: dict[str, str | None] = {}
    for i in range(draw(st.integers(0, 4))):
        parent = draw(st.sampled_from([None, *stored]))
        stored[f"S{i}"] = parent
    codes = draw(
        st.lists(
            st.sampled_from([*stored, *(f"F{i}" for i in range(6))]),
            min_size=1,
            max_size=6,
            unique=True,
        )
    )
    known = sorted({*stored, *codes})
    entries = [
        UnitEntry(
            code=code,
            name=f"Đơn vị {code}",
            level="commune",
            parent=draw(st.sampled_from([None, "ZZ", *known])),
        )
        for code in codes
    ]
    return stored, entries


def forms_a_tree(stored: dict[str, str | None], entries: list[UnitEntry]) -> bool:
    parents = {**stored, **{e.code: e.parent for e in entries}}
    for code in parents:
        seen: set[str] = set()
        current: str | None = code
        while current is not None:
            if current in seen or current not in parents:
                return False
            seen.add(current)
            current = parents[current]
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files_over_stored_trees())
def test_random_parents_load_as_a_tree_or_are_refused_with_a_unit_file_error(
    case: tuple[dict[str, str | None], list[UnitEntry]],
) -> None:
    stored, entries = case
    if forms_a_tree(stored, entries):
        check_entries(entries, stored)
    else:
        # Any other exception type escapes pytest.raises and fails the test.
        with pytest.raises(UnitFileError) as refused:
            check_entries(entries, stored)
        named = re.match(r"^entry (\d+) \(code '([SF]\d)'\): (.*)$", str(refused.value))
        assert named is not None, str(refused.value)
        index, code, reason = int(named[1]), named[2], named[3]
        assert entries[index - 1].code == code
        if reason.startswith("cycle "):
            loop = reason.removeprefix("cycle ").split(" -> ")
            # The named entry is on the loop, not merely below it.
            assert loop[0] == loop[-1] == code, reason

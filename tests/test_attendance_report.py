"""The attendance report as a pure function of events, roll calls, invited sites and the
meeting's real span (server/attendance/report.py): presence, drops, node gaps, a restart's
drop and rejoin, clock correction and its flag, clipping to the span, head counts, roll-call
columns, group subtotals and level rates; and the report across meetings."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from rooms.roster import InvitedSite
from server.attendance.report import (
    HeldMeeting,
    RollCallColumn,
    SiteRow,
    Span,
    build_range_report,
    build_report,
    minutes_of,
)
from server.attendance.store import Stored

T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 08:00 in Hà Nội / Cà Mau
SEQ = itertools.count(1)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def ev(
    kind: str,
    unit: str = "",
    minute: float = 0.0,
    *,
    origin: str = "root",
    offset_ms: int = 0,
    node: str = "",
    head: int | None = None,
    roll: str | None = None,
    units: list[str] | None = None,
    reason: str = "",
) -> Stored:
    """An event as stored; ``minute`` is on the origin's clock (before the offset)."""
    return Stored(
        meeting_id=1,
        origin_node=origin,
        origin_seq=next(SEQ),
        unit_code=unit,
        kind=kind,
        at=at(minute),
        offset_ms=offset_ms,
        reason=reason,
        node=node,
        head_count=head,
        roll_call=roll,
        detail=json.dumps({"units": units}) if units is not None else "",
    )


def site(code: str, name: str, level: str, path: tuple[str, ...], group: str = "") -> InvitedSite:
    groups = {"CM-NC": "Huyện Năm Căn", "CM-NH": "Huyện Ngọc Hiển"}
    group = group or path[1]
    parents = {"CM": "Tỉnh Cà Mau", **groups}
    return InvitedSite(
        code, name, level, path, group, groups.get(group, name), parents.get(path[-2], path[-2])
    )


NC = site("CM-NC", "Huyện Năm Căn", "district", ("CM", "CM-NC"))
HR = site("CM-NC-HR", "Xã Hàm Rồng", "commune", ("CM", "CM-NC", "CM-NC-HR"))
TT = site("CM-NC-TT", "Thị trấn Năm Căn", "commune", ("CM", "CM-NC", "CM-NC-TT"))
NH = site("CM-NH", "Huyện Ngọc Hiển", "district", ("CM", "CM-NH"))
RG = site("CM-NH-RG", "Thị trấn Rạch Gốc", "commune", ("CM", "CM-NH", "CM-NH-RG"))
SITES = [NC, HR, TT, NH, RG]
ENDED = Span(at(0), at(60), at(90))  # a one-hour meeting, read half an hour after it ended


def report(events: list[Stored], span: Span = ENDED, **kw: Any) -> Any:
    return build_report(events, kw.pop("roll_calls", []), kw.pop("sites", SITES), span, **kw)


def row(rep: Any, code: str) -> SiteRow:
    found = [r for r in rep.rows if r.unit == code]
    assert len(found) == 1, [r.unit for r in rep.rows]
    return found[0]


# -- presence ----------------------------------------------------------------------------------


def test_presence_from_join_to_leave() -> None:
    rep = report([ev("join", "CM-NC-HR", 5), ev("leave", "CM-NC-HR", 35)])
    hr = row(rep, "CM-NC-HR")
    assert (hr.minutes, hr.drops, hr.state, hr.present) == (30, 0, "present", True)
    assert hr.first_join == at(5)
    assert hr.last_leave == at(35)
    assert hr.node == "root"


def test_a_site_that_never_came_is_absent_with_no_times() -> None:
    rep = report([ev("join", "CM-NC-HR", 5)])
    tt = row(rep, "CM-NC-TT")
    assert (tt.minutes, tt.drops, tt.state) == (0, 0, "absent")
    assert tt.first_join is None
    assert tt.last_leave is None
    assert tt.head_count_peak is None


def test_still_present_at_the_end_counts_until_the_end() -> None:
    rep = report([ev("join", "CM-NC-HR", 10)])
    hr = row(rep, "CM-NC-HR")
    assert hr.minutes == 50
    assert hr.last_leave == at(60)  # the meeting's end
    assert not hr.still_present


def test_while_the_meeting_runs_a_present_site_counts_until_now() -> None:
    running = Span(at(0), None, at(25))
    rep = report([ev("join", "CM-NC-HR", 10)], running)
    hr = row(rep, "CM-NC-HR")
    assert hr.minutes == 15
    assert hr.still_present
    assert hr.last_leave is None
    assert rep.meeting_minutes == 25


def test_a_second_join_while_present_changes_nothing() -> None:
    rep = report(
        [ev("join", "CM-NC-HR", 0), ev("reconnect", "CM-NC-HR", 10), ev("leave", "CM-NC-HR", 40)]
    )
    assert row(rep, "CM-NC-HR").minutes == 40


def test_ties_are_ordered_as_stored() -> None:
    # A drop and a rejoin at the same instant, stored in that order: continuous presence.
    rep = report(
        [ev("join", "CM-NC-HR", 0), ev("drop", "CM-NC-HR", 20), ev("join", "CM-NC-HR", 20)]
    )
    assert (row(rep, "CM-NC-HR").minutes, row(rep, "CM-NC-HR").drops) == (60, 1)
    # The rejoin stored first, then the drop: the drop ends the presence.
    rep = report(
        [ev("join", "CM-NC-HR", 0), ev("join", "CM-NC-HR", 20), ev("drop", "CM-NC-HR", 20)]
    )
    assert (row(rep, "CM-NC-HR").minutes, row(rep, "CM-NC-HR").drops) == (20, 1)


def test_minutes_round_half_up_and_a_site_is_present_from_half_a_minute() -> None:
    assert [minutes_of(s) for s in (0, 29, 30, 89, 90)] == [0, 0, 1, 1, 2]
    rep = report([ev("join", "CM-NC-HR", 10), ev("leave", "CM-NC-HR", 10.4)])
    assert row(rep, "CM-NC-HR").state == "absent"


# -- drops -------------------------------------------------------------------------------------


def test_each_drop_is_counted_and_the_time_away_is_not() -> None:
    rep = report(
        [
            ev("join", "CM-NC-HR", 0),
            ev("drop", "CM-NC-HR", 10, reason="media"),
            ev("reconnect", "CM-NC-HR", 12),
            ev("drop", "CM-NC-HR", 30, reason="socket"),
            ev("join", "CM-NC-HR", 31),
            ev("leave", "CM-NC-HR", 50),
        ]
    )
    hr = row(rep, "CM-NC-HR")
    assert (hr.minutes, hr.drops) == (10 + 18 + 19, 2)
    assert hr.first_join == at(0)
    assert hr.last_leave == at(50)


def test_a_drop_not_followed_by_a_return_ends_the_presence() -> None:
    rep = report([ev("join", "CM-NC-HR", 0), ev("drop", "CM-NC-HR", 45)])
    hr = row(rep, "CM-NC-HR")
    assert (hr.minutes, hr.drops, hr.last_leave) == (45, 1, at(45))


# -- node gaps ---------------------------------------------------------------------------------


def test_a_node_gap_cuts_the_sites_below_it_and_counts_one_drop() -> None:
    events = [
        ev("join", "CM-NC-HR", 0, origin="CM-NC"),
        ev("join", "CM-NH-RG", 0, origin="CM-NH"),
        ev("node_down", "", 20, node="CM-NC", units=["CM-NC"], reason="silent"),
        ev("node_up", "", 25, node="CM-NC", units=["CM-NC"]),
    ]
    rep = report(events)
    hr, rg = row(rep, "CM-NC-HR"), row(rep, "CM-NH-RG")
    assert (hr.minutes, hr.drops, hr.node) == (55, 1, "CM-NC")
    assert (rg.minutes, rg.drops) == (60, 0)


def test_a_node_gap_with_no_units_cuts_every_site() -> None:
    events = [
        ev("join", "CM-NC-HR", 0),
        ev("join", "CM-NH-RG", 0),
        ev("node_down", "", 30, node="root", units=[]),
        ev("node_up", "", 40, node="root", units=[]),
    ]
    rep = report(events)
    assert row(rep, "CM-NC-HR").minutes == row(rep, "CM-NH-RG").minutes == 50
    assert row(rep, "CM-NC-HR").drops == row(rep, "CM-NH-RG").drops == 1


def test_a_gap_still_open_at_the_end_lasts_until_the_end() -> None:
    events = [
        ev("join", "CM-NC-HR", 0),
        ev("node_down", "", 40, node="CM-NC", units=["CM-NC"]),
    ]
    hr = row(report(events), "CM-NC-HR")
    assert (hr.minutes, hr.drops, hr.last_leave) == (40, 1, at(40))


def test_a_gap_before_a_join_shortens_the_presence_without_a_drop() -> None:
    # The site joined its node while that node's link up was down: seen here from node_up.
    events = [
        ev("node_down", "", 5, node="CM-NC", units=["CM-NC"]),
        ev("join", "CM-NC-HR", 10, origin="CM-NC"),
        ev("node_up", "", 15, node="CM-NC", units=["CM-NC"]),
        ev("leave", "CM-NC-HR", 45, origin="CM-NC"),
    ]
    hr = row(report(events), "CM-NC-HR")
    assert (hr.minutes, hr.drops, hr.first_join) == (30, 0, at(15))


def test_a_site_dropping_during_a_gap_is_one_drop_not_two() -> None:
    events = [
        ev("join", "CM-NC-HR", 0, origin="CM-NC"),
        ev("node_down", "", 20, node="CM-NC", units=["CM-NC"]),
        ev("drop", "CM-NC-HR", 22, origin="CM-NC"),
        ev("node_up", "", 30, node="CM-NC", units=["CM-NC"]),
        ev("join", "CM-NC-HR", 31, origin="CM-NC"),
    ]
    hr = row(report(events), "CM-NC-HR")
    assert (hr.minutes, hr.drops) == (20 + 29, 1)


def test_a_restart_reads_as_one_drop_and_a_rejoin() -> None:
    # As server/attendance/service.py records it: the site's drop and the node's down at the
    # last time alive, the node's up at the restart, the site's join when it comes back.
    events = [
        ev("join", "CM-NC-HR", 0),
        ev("drop", "CM-NC-HR", 20, reason="node_restart"),
        ev("node_down", "", 20, node="root", units=[], reason="node_restart"),
        ev("node_up", "", 23, node="root", units=[], reason="node_restart"),
        ev("join", "CM-NC-HR", 24),
    ]
    hr = row(report(events), "CM-NC-HR")
    assert (hr.minutes, hr.drops) == (20 + 36, 1)
    assert hr.last_leave == at(60)


def test_node_events_are_not_rows() -> None:
    rep = report([ev("node_down", "", 5, node="CM-NC", units=["CM-NC"])])
    assert [r.unit for r in rep.rows] == [s.unit for s in sorted(SITES, key=lambda s: s.path)]


# -- clocks ------------------------------------------------------------------------------------


def test_times_are_corrected_by_the_offset_and_a_wrong_clock_is_flagged() -> None:
    # CM-NH's clock is 5 s behind: its events say 5 s earlier and carry +5000 ms.
    events = [
        ev("join", "CM-NH-RG", 10 - 5 / 60, origin="CM-NH", offset_ms=5000),
        ev("leave", "CM-NH-RG", 40 - 5 / 60, origin="CM-NH", offset_ms=5000),
        # CM-NC's is 1.5 s ahead: corrected, but not worth a note.
        ev("join", "CM-NC-HR", 10 + 1.5 / 60, origin="CM-NC", offset_ms=-1500),
    ]
    rep = report(events)
    rg = row(rep, "CM-NH-RG")
    assert rg.first_join == at(10)
    assert rg.last_leave == at(40)
    assert row(rep, "CM-NC-HR").first_join == at(10)
    assert [(n.node, n.offset_ms) for n in rep.clock_notes] == [("CM-NH", 5000)]


def test_order_is_by_corrected_time() -> None:
    # The leave from a fast clock says 10:30 but really happened after the 10:29 join.
    events = [
        ev("join", "CM-NC-HR", 0),
        ev("leave", "CM-NC-HR", 30, origin="CM-NC", offset_ms=-3 * 60_000),
        ev("join", "CM-NC-HR", 29),
        ev("leave", "CM-NC-HR", 50),
    ]
    rep = report(events)
    # Presence 0..27 (the corrected leave), then 29..50.
    assert row(rep, "CM-NC-HR").minutes == 27 + 21
    assert rep.clock_notes[0].offset_ms == -180_000


# -- the span ----------------------------------------------------------------------------------


def test_presence_is_clipped_to_the_real_span_and_so_are_drops() -> None:
    events = [
        ev("join", "CM-NC-HR", -20),
        ev("drop", "CM-NC-HR", -15),
        ev("join", "CM-NC-HR", -10),
        ev("leave", "CM-NC-HR", 75),
    ]
    hr = row(report(events), "CM-NC-HR")
    assert (hr.minutes, hr.drops) == (60, 0)
    assert hr.first_join == at(-20)  # when it really came, before the start
    assert hr.last_leave == at(75)


def test_a_meeting_that_never_started_counts_nothing() -> None:
    never = Span(None, None, at(30))
    rep = report([ev("join", "CM-NC-HR", 0), ev("drop", "CM-NC-HR", 5)], never)
    hr = row(rep, "CM-NC-HR")
    assert (hr.minutes, hr.drops, hr.state) == (0, 0, "absent")
    assert rep.meeting_minutes == 0
    assert rep.total.time_rate is None


# -- head counts and roll calls ----------------------------------------------------------------


def test_head_count_peak_and_last_by_time() -> None:
    events = [
        ev("join", "CM-NC-HR", 0),
        ev("head_count", "CM-NC-HR", 1, head=10),
        ev("roll_answer", "CM-NC-HR", 20, head=30, roll="r1"),
        ev("head_count", "CM-NC-HR", 40, head=18),
        # Stored later, happened earlier: not the last.
        ev("head_count", "CM-NC-HR", 2, head=12, origin="CM-NC", offset_ms=0),
    ]
    hr = row(report(events), "CM-NC-HR")
    assert (hr.head_count_peak, hr.head_count_last) == (30, 18)


def test_one_column_per_roll_call_in_number_order() -> None:
    calls = [RollCallColumn("r1", 1), RollCallColumn("r2", 2), RollCallColumn("r3", 3)]
    events = [
        ev("join", "CM-NC-HR", 0),
        ev("join", "CM-NH-RG", 0),
        ev("roll_answer", "CM-NC-HR", 10, head=12, roll="r1"),
        ev("roll_answer", "CM-NC-HR", 30, head=11, roll="r2"),
        ev("roll_answer", "CM-NC-HR", 31, head=14, roll="r2"),  # answered again: the last
        ev("roll_answer", "CM-NH-RG", 30, roll="r2"),  # no count given
        ev("roll_answer", "CM-NH-RG", 40, head=5, roll="unknown"),  # not a roll call here
    ]
    rep = report(events, roll_calls=calls)
    assert [c.number for c in rep.roll_calls] == [1, 2, 3]
    assert row(rep, "CM-NC-HR").answers == (12, 14, None)
    assert row(rep, "CM-NH-RG").answers == (None, 0, None)
    assert row(rep, "CM-NC-TT").answers == (None, None, None)


# -- groups and levels -------------------------------------------------------------------------


def test_groups_subtotal_and_levels_rate() -> None:
    events = [
        ev("join", "CM-NC", 0),  # the district hall, the whole hour
        ev("join", "CM-NC-HR", 0),
        ev("leave", "CM-NC-HR", 30),
        ev("head_count", "CM-NC-HR", 1, head=20),
        ev("head_count", "CM-NC", 1, head=40),
        ev("join", "CM-NH-RG", 15),
        ev("leave", "CM-NH-RG", 60),
        ev("head_count", "CM-NH-RG", 16, head=9),
    ]
    rep = report(events, level_names={"district": "huyện", "commune": "xã"}.__getitem__)
    assert [g.total.key for g in rep.groups] == ["CM-NC", "CM-NH"]
    nc = rep.groups[0]
    assert [r.unit for r in nc.rows] == ["CM-NC", "CM-NC-HR", "CM-NC-TT"]
    assert (nc.total.name, nc.total.present, nc.total.invited) == ("Huyện Năm Căn", 2, 3)
    assert (nc.total.minutes, nc.total.possible_minutes) == (90, 180)
    assert nc.total.site_rate == 66.7
    assert nc.total.time_rate == 50.0
    assert nc.total.head_count == 60
    nh = rep.groups[1]
    assert (nh.total.present, nh.total.invited, nh.total.minutes) == (1, 2, 45)
    assert (nh.total.site_rate, nh.total.time_rate) == (50.0, 37.5)
    levels = {s.key: s for s in rep.levels}
    assert [s.key for s in rep.levels] == ["district", "commune"]  # from the top down
    assert levels["district"].name == "huyện"
    assert (levels["district"].present, levels["district"].invited) == (1, 2)
    assert (levels["district"].site_rate, levels["district"].time_rate) == (50.0, 50.0)
    assert (levels["commune"].present, levels["commune"].invited) == (2, 3)
    assert levels["commune"].site_rate == 66.7
    assert levels["commune"].time_rate == round(100 * 75 / 180, 1)
    assert (rep.total.present, rep.total.invited, rep.total.minutes) == (3, 5, 135)
    assert rep.total.time_rate == 45.0


def test_a_site_that_joined_uninvited_is_listed_but_not_counted() -> None:
    extra = site("CM-NC-LA", "Xã Lâm Hải", "commune", ("CM", "CM-NC", "CM-NC-LA"))
    events = [ev("join", "CM-NC-LA", 0), ev("leave", "CM-NC-LA", 30)]
    rep = report(events, describe={"CM-NC-LA": extra}.get)
    la = row(rep, "CM-NC-LA")
    assert (la.invited, la.minutes, la.name, la.group) == (False, 30, "Xã Lâm Hải", "CM-NC")
    assert rep.groups[0].total.invited == 3
    assert rep.total.present == 0
    # Without a description its code stands for its name.
    rep = report(events)
    assert row(rep, "CM-NC-LA").name == "CM-NC-LA"


def test_include_keeps_only_the_readers_rows_and_the_subtotals_follow() -> None:
    events = [ev("join", "CM-NC-HR", 0), ev("join", "CM-NH-RG", 0)]
    rep = report(events, include=lambda code: code.startswith("CM-NH"))
    assert [r.unit for r in rep.rows] == ["CM-NH", "CM-NH-RG"]
    assert [g.total.key for g in rep.groups] == ["CM-NH"]
    assert (rep.total.present, rep.total.invited) == (1, 2)


def test_three_hundred_sites_and_thousands_of_events() -> None:
    sites = [
        site(f"CM-D{d}-C{c}", f"Xã {d}-{c}", "commune", ("CM", f"CM-D{d}", f"CM-D{d}-C{c}"))
        for d in range(10)
        for c in range(30)
    ]
    events = []
    for n, s in enumerate(sites):
        events += [ev("join", s.unit, n % 7), ev("head_count", s.unit, 1 + n % 7, head=n % 50)]
        events += [ev("drop", s.unit, 20), ev("reconnect", s.unit, 21)]
        events += [ev("head_count", s.unit, 30, head=n % 40), ev("leave", s.unit, 55)]
    rep = report(events, sites=sites)
    assert len(rep.rows) == 300
    assert len(rep.groups) == 10
    assert rep.total.present == 300
    assert all(r.drops == 1 for r in rep.rows)
    assert sum(r.minutes for r in rep.rows) == sum(55 - n % 7 - 1 for n in range(300))


# -- across meetings ---------------------------------------------------------------------------


def test_across_meetings_per_unit_invited_attended_minutes_rate() -> None:
    first = HeldMeeting(1, "Họp 1", "Tỉnh Cà Mau", Span(at(0), at(60), at(500)), [HR, RG], [])
    first_events = [ev("join", "CM-NC-HR", 0), ev("leave", "CM-NC-HR", 45)]
    first = HeldMeeting(1, "Họp 1", "Tỉnh Cà Mau", first.span, [HR, RG], first_events)
    second_events = [ev("join", "CM-NC-HR", 200), ev("join", "CM-NC-TT", 200)]
    second = HeldMeeting(
        2, "Họp 2", "Huyện Năm Căn", Span(at(180), at(210), at(500)), [HR], second_events
    )
    rep = build_range_report(date(2026, 12, 1), date(2026, 12, 31), [first, second])
    units = {r.unit: r for r in rep.rows}
    assert set(units) == {"CM-NC-HR", "CM-NH-RG"}  # TT was never invited
    hr = units["CM-NC-HR"]
    assert (hr.invited, hr.attended, hr.minutes, hr.possible_minutes) == (2, 2, 55, 90)
    assert hr.rate == round(100 * 55 / 90, 1)
    rg = units["CM-NH-RG"]
    assert (rg.invited, rg.attended, rg.minutes, rg.rate) == (1, 0, 0, 0.0)
    assert (rep.total.units, rep.total.invited, rep.total.attended) == (2, 3, 2)
    assert rep.total.attend_rate == 66.7
    scoped = build_range_report(
        date(2026, 12, 1), date(2026, 12, 31), [first, second], include="CM-NH-RG".__eq__
    )
    assert [r.unit for r in scoped.rows] == ["CM-NH-RG"]

"""The live meeting pages: the chair's console and a site's page (web/static/live/).

The page itself only decides the role and hands the browser client what it needs: the
meeting id and title, and the translated strings (a JSON block, which CSP allows since it
is never executed). Joining, media and the controls go over the ``/meeting`` socket.
"""

from __future__ import annotations

from aiohttp import web

from rooms.meeting import CHAIR, SITE
from server import auth, meetings
from server.cascade.doors import served_elsewhere
from server.errors import AppError, path_id
from server.http.rendering import render
from server.i18n import request_lang, translator
from server.models import Meeting, Role
from server.state import ctx
from server.units import UnitTree

routes = web.RouteTableDef()

# Strings the browser client shows, by key; each English text has a Vietnamese entry in
# server/i18n.py (tests/test_live_pages.py checks). "{name}" marks are filled in by the client.
LIVE_STRINGS: dict[str, str] = {
    "connecting": "Connecting…",
    "reconnecting": "Connection lost — reconnecting…",
    "connected": "Connected",
    "media": "Connecting sound and picture…",
    "lost_title": "Lost the connection to the server — reconnecting…",
    "login_again": "Your login has expired. Please log in again.",
    "log_in": "Log in",
    # session_ended (docs/protocol.md section 7): why this page stopped, one text per reason.
    "session_ended_title": "Your login session has ended",
    "session_logged_out": "You logged out in another window.",
    "session_expired": "Your login session has expired.",
    "session_disabled": "Your account has been locked by an administrator.",
    "session_password_changed": "Your password has been changed.",
    "session_role_changed": "The role or unit of your account has changed.",
    "session_unit_changed": "The role or unit of your account has changed.",
    "waiting": "Waiting for the chair to start the meeting",
    "waiting_chair": "Not started yet — press “Start the meeting” when ready",
    "live": "The meeting is in session",
    "chair_absent": "The chair is not connected yet",
    "ended_title": "The meeting has ended",
    "ended_text": "Thank you for attending. You may close this page.",
    "not_open": "This meeting is not open: it has ended or was cancelled.",
    "replaced_title": "This site was opened in another window",
    "replaced_text": (
        "Another window or device joined the meeting for this site, so this one stopped."
    ),
    "use_here": "Use this window",
    "join_failed": "Could not join the meeting",
    "no_webrtc": (
        "This browser cannot join online meetings. Use a recent Chrome, Edge, Firefox or Safari."
    ),
    "no_devices": "No camera or microphone found: others cannot see or hear this site.",
    "no_camera": "No camera found: others cannot see this site.",
    "no_microphone": "No microphone found: others cannot hear this site.",
    "devices_blocked": (
        "The camera and microphone are blocked. Allow them in the browser, then reload the page."
    ),
    "sound_blocked": "The browser blocked the sound. Press “Turn on sound”.",
    "floor": "Speaking: {name}",
    "you_have_floor": "You have the floor — please speak",
    "you_muted": "The chair has muted your site",
    "hand_raised_note": "Hand raised — waiting for the chair",
    # What a site receives (rooms/tiers.py) and how its line is judged (rooms/linkrate.py).
    "rx_now": "Receiving: {tier} · Line: {quality}",
    "tier_high": "high quality",
    "tier_low": "low quality",
    "tier_lowest": "lowest quality",
    "tier_audio": "sound only",
    "tier_none": "nothing (paused)",
    "q_good": "good",
    "q_fair": "fair",
    "q_poor": "poor",
    "q_unknown": "measuring…",
    "raise_hand": "Raise hand to speak",
    "lower_hand": "Lower hand",
    "mic_off": "Turn microphone off",
    "mic_on": "Turn microphone on",
    "cam_off": "Turn camera off",
    "cam_on": "Turn camera on",
    "sites_title": "Connected sites ({count})",
    "no_sites": "No site has connected yet.",
    "queue_title": "Raised hands ({count})",
    "queue_empty": "No raised hands.",
    "watch": "Watch",
    "unwatch": "Stop watching",
    "give_floor": "Give the floor",
    "take_floor": "Take back the floor",
    "mute": "Mute",
    "unmute": "Unmute",
    "nobody_floor": "Nobody has the floor",
    "wall_empty": "Empty — press “Watch” next to a site",
    "flag_hand": "hand raised",
    "flag_muted": "muted",
    "flag_mic_off": "mic off",
    "flag_cam_off": "camera off",
    "flag_no_media": "no picture yet",
    "flag_floor": "speaking",
    "end_confirm": "End the meeting for every site?",
    "action_failed": "Could not do that: {message}",
    "err_wall_full": "Four sites are already watched; stop watching one first.",
    "err_unknown_site": "That site is no longer connected.",
    "err_timeout": "The node did not answer in time.",
    "err_disconnected": "Not connected to the node.",
    # The cascade: the level above (on a child node) and the nodes below (for the chair).
    "upper_connected": "Level above: connected",
    "upper_unreachable": "Level above: connection lost",
    "upper_lost_title": "Lost the connection to the level above ({host})",
    "upper_lost_text": (
        "The meeting here goes on. The system is reconnecting by itself: keep this page open,"
        " the chair's picture and sound will come back on their own."
    ),
    "upper_connecting": "Level above: connecting",
    "upper_refused": "Level above: link refused",
    "upper_refused_title": "The level above ({host}) refused this node's link",
    "upper_refused_text": (
        "The meeting here goes on, without the chair's picture and sound. The node's"
        " administrator must check its node credential and units; please tell them."
    ),
    "upper_back_title": "Connected to the level above again",
    "upper_back_text": "The chair's picture and sound are coming back.",
    "upper_waiting": "Waiting for the picture from the level above…",
    "site_online": "Online",
    "site_connecting": "Connecting",
    "site_reconnecting": "Reconnecting",
    "site_offline": "Offline",
    "sites_offline": "{count} offline",
    "direct_sites": "Sites connected directly",
    "node_kind": "Node of the level below",
    "node_link_ok": "Link OK",
    "node_link_lost": "Link lost",
    "node_lost_note": (
        "Sites through {name} are cut off for now; they come back by themselves when the link"
        " returns."
    ),
    "node_sites": "{online} of {total} sites online",
    "node_no_sites": "No site has connected through this node yet.",
    "wall_offline": "{name} — offline",
    # Attendance on a site's page: its head count and the chair's roll calls.
    "hc_line": "Attendees: {count}",
    "hc_none": "Attendees: not entered yet",
    "hc_edit": "Edit",
    "hc_enter": "Enter",
    "hc_required": "Enter the number of people (0 or more).",
    "hc_range": "The number of people must be a whole number from 0 to 100,000.",
    "hc_name_missing": "Row {row}: enter the person's name, or clear the row.",
    "hc_too_many": "The list can hold at most {max} people.",
    "attendee_name": "Full name",
    "attendee_position": "Position",
    "attendee_remove": "Remove",
    "rc_prompt": "Roll call {number} — the chair asks you to confirm you are present",
    "rc_done": "Roll call answered at {time}",
    "rc_done_no_time": "Roll call answered",
    # Attendance on the chair's console: every invited site, and the roll call's tally.
    "state_never": "Not joined yet",
    "state_online": "Online",
    "state_lost": "Connection lost",
    "state_left": "Left",
    "level_province": "Province level",
    "level_district": "District level",
    "level_commune": "Commune level",
    "roster_tab": "Invited sites ({present}/{expected})",
    "roster_present": "Present: {present}/{expected} sites",
    "roster_heads": "Attendees in total: {count}",
    "roster_empty": "No site is invited to this meeting.",
    "present_of": "{present} of {expected} sites present",
    "people": "{count} people",
    "call": "Call",
    "rc_none": "No roll call yet in this meeting.",
    "rc_not_live": "A roll call can start once the meeting is in session.",
    "rc_open": "Roll call {number} in progress — started at {time}",
    "rc_closed": "Result of roll call {number} — ended at {time}",
    "rc_answered": "Answered",
    "rc_waiting": "Waiting",
    "rc_not_answered": "Did not answer",
    "rc_offline": "Not connected",
    "rc_heads": "People",
    "rc_unit": "Unit",
    "rc_total": "In all",
    "rc_level_answered": "{answered} of {expected} answered",
    "rc_waiting_list": "Online, not answered yet ({count})",
    "rc_not_answered_list": "Online but did not answer ({count})",
    "rc_all_answered": "Every connected site has answered.",
    "rc_offline_list": "Not connected ({count})",
    "rc_end": "End the roll call",
    "rc_end_title": "End roll call {number}?",
    "rc_end_text": (
        "{answered} of {expected} sites have answered; {waiting} online sites have not"
        " answered yet."
    ),
    "rc_keep_open": "Keep the roll call open",
    "err_not_live": "The meeting has not started yet.",
    "err_roll_call_open": "A roll call is already open.",
    "err_no_roll_call": "No roll call is open.",
    "err_roll_call_closed": "This roll call has already ended.",
    "err_no_site_to_call": "There is no other connected site to call.",
    "err_bad_request": "The node refused what was sent as not valid.",
    "err_not_joined": "Not in the meeting yet; please wait a moment.",
    "err_forbidden": "You may not do this in this meeting.",
    # monitoring wall: the chair's "Giám sát đường truyền" (web/static/live/monitor.js)
    "mon_tier_high": "High",
    "mon_tier_low": "Low",
    "mon_tier_lowest": "Lowest",
    "mon_audio_only": "Audio only",
    "mon_paused": "Paused",
    "mon_auto": "{tier} (automatic)",
    "mon_q_good": "Good",
    "mon_q_fair": "Fair",
    "mon_q_poor": "Poor",
    "mon_q_unknown": "Measuring…",
    "mon_offline": "Offline",
    "mon_why_offline": "Connection lost",
    "mon_why_poor": "Poor line",
    "mon_why_audio": "Sound breaking up ({pct}% played)",
    "mon_why_freezes": "Picture froze",
    "mon_trouble": "Problem: {reasons}",
    "mon_trouble_count": "{count} site(s) in trouble",
    "mon_all_ok": "Every site's line is fine",
    "mon_updated": "Updated at {time}",
    "mon_col_site": "Site",
    "mon_col_receive": "Receiving",
    "mon_col_kbit": "Received (kbit/s)",
    "mon_col_loss": "Packet loss",
    "mon_col_fps": "Frames/s",
    "mon_col_freezes": "Picture freezes",
    "mon_col_line": "Line",
    "mon_rtt": "round trip {ms} ms",
}


LOST = LIVE_STRINGS["lost_title"]
# Shown with the English under the Vietnamese (the overlay when the login session ended).
SECOND_LINE = tuple(key for key in LIVE_STRINGS if key.startswith("session_"))


def live_role(user: auth.CurrentUser, tree: UnitTree, meeting: Meeting) -> str | None:
    """The user's part in the live meeting, as server/sockets/signaling.py ``_join`` decides it."""
    if user.role is Role.CHAIR and user.unit_id == meeting.host_unit_id:
        return CHAIR
    if user.role in (Role.OPERATOR, Role.CHAIR) and user.unit_id in meetings.site_ids(
        meeting, tree
    ):
        return SITE
    return None


@routes.get("/meetings/{meeting_id:\\d+}/live", name="meeting_live")
async def meeting_live(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request)
    node = ctx(request)
    mid = path_id(request, "meeting_id", "meeting")
    async with node.sessionmaker() as db:
        meeting = await meetings.get_visible(db, user, node.units, mid)
    role = live_role(user, node.units, meeting)
    if role is None:
        raise AppError(403, "not_invited", "Your unit is not invited to this meeting.")
    if role == SITE or meeting.origin is not None:
        # The socket would refuse the join (a site served elsewhere, or the chair of a meeting
        # mirrored from the parent, which is chaired there): show the right door instead.
        door = await served_elsewhere(node, user.role, user.unit_id)
        if door is not None:
            return render(request, "served_elsewhere.html", door=door)
    _ = translator(request_lang(request))
    unit = node.units.get(user.unit_id)
    return render(
        request,
        f"live_{role}.html",
        role=role,
        meeting_id=meeting.id,
        title=meeting.title,
        meeting_status=meeting.status.value,
        host=node.units.get(meeting.host_unit_id),
        unit=unit,
        unit_path=" › ".join(u.name for u in node.units.path(unit.id)[1:]) or unit.name,
        strings={key: _(text) for key, text in LIVE_STRINGS.items()},
        # The words over a frozen picture carry an English second line on a Vietnamese page.
        lost_second="" if _(LOST) == LOST else LOST,
        second_strings={key: text for key in SECOND_LINE if _(text := LIVE_STRINGS[key]) != text},
    )

// The chair's console: own camera, the floor holder, a wall of up to four watched sites,
// the sites (by the node below they come through) with their buttons, the raise-hand queue,
// every invited site's attendance and the roll call (attendance.js), the monitoring wall of
// every site's line (monitor.js), start and end.

import { AttendancePanel } from "./attendance.js";
import { LiveConnection, exposeForTests } from "./connection.js";
import { wireDeviceButtons, wireLeaveButton, wireSoundButton, showSelf } from "./controls.js";
import { busy, byId, h } from "./dom.js";
import { errorText, t } from "./i18n.js";
import { LocalMedia } from "./media.js";
import { MonitorPanel } from "./monitor.js";
import { commonUi, isLost, notice, overlay, showUpperLevel, status } from "./screen.js";
import { Roster, queueRow, siteList } from "./sites.js";

const CHAIR_BITRATE = 700_000; // the high tier (link.js)
const WALL = 4;
const root = byId("live");
const meetingId = Number(root.dataset.meetingId);
let connection = null;
let attendance = null;
const roster = new Roster();
const monitor = new MonitorPanel();

async function act(button, event, payload) {
  const ack = await busy(button, () => connection.request(event, payload));
  if (!ack.ok) notice(t("action_failed", { message: errorText(ack) }), { transient: true });
  return ack;
}

/** What the chair can honestly say while its own node is out of reach: nobody is known to
 * be online. */
function unknown(state) {
  const roster = state.roster;
  return {
    ...state,
    sites: (state.sites || []).map((site) => ({ ...site, online: false })),
    nodes: (state.nodes || []).map((node) => ({ ...node, online: false })),
    roster: roster && {
      ...roster,
      sites: roster.sites.map((site) => (site.state === "online" ? { ...site, state: "lost" } : site)),
      levels: roster.levels.map((level) => ({ ...level, present: 0 })),
      groups: roster.groups.map((group) => ({ ...group, present: 0 })),
      present: 0,
      head_count: 0,
    },
  };
}

function showState(state) {
  const live = state.status === "live";
  const queue = state.queue || [];
  if (isLost()) state = unknown(state);
  const view = roster.update(state);
  status(live ? t("live") : t("waiting_chair"), live ? "good" : "");
  showUpperLevel(state);
  byId("btn-start").disabled = state.status !== "waiting";
  byId("btn-start").hidden = live;
  byId("btn-end").disabled = state.status === "ended";

  const floor = state.floor;
  byId("floor-tile").dataset.empty = live && floor ? "0" : "1";
  byId("floor-caption").textContent = floor ? t("floor", { name: floor.name }) : t("nobody_floor");
  byId("btn-take-floor").hidden = !floor;

  for (let i = 0; i < WALL; i++) {
    const code = (state.watched || [])[i];
    const site = code ? view.byUnit.get(code) : null;
    const offline = site && site.status === "offline";
    byId(`wall-${i}`).dataset.empty = live && site && site.media && !offline ? "0" : "1";
    byId(`wall-name-${i}`).textContent = !site
      ? code || ""
      : offline
        ? t("wall_offline", { name: site.name })
        : site.name;
    byId(`wall-${i}`).querySelector(".wall-unwatch").hidden = !code;
  }

  byId("queue-title").textContent = t("queue_title", { count: queue.length });
  byId("queue").replaceChildren(
    ...(queue.length
      ? queue.map((entry, i) => queueRow(entry, i, act))
      : [h("li", { class: "empty-row" }, t("queue_empty"))]),
  );
  const offline = view.offline ? ` · ${t("sites_offline", { count: view.offline })}` : "";
  byId("sites-title").textContent = t("sites_title", { count: view.online }) + offline;
  byId("sites").replaceChildren(...siteList(view, state, act));
  attendance.show(state);
  monitor.show(state, view);
}

function wireChairButtons() {
  byId("btn-start").addEventListener("click", (e) => act(e.currentTarget, "start", {}));
  byId("btn-end").addEventListener("click", (e) => {
    if (window.confirm(t("end_confirm"))) act(e.currentTarget, "end", {});
  });
  byId("btn-take-floor").addEventListener("click", (e) => act(e.currentTarget, "take_floor", {}));
  for (const button of document.querySelectorAll(".wall-unwatch")) {
    button.addEventListener("click", () => {
      const code = (connection.state?.watched || [])[Number(button.dataset.slot)];
      if (code) act(button, "watch", { unit: code, watch: false });
    });
  }
}

async function main() {
  if (!window.RTCPeerConnection) {
    overlay(t("join_failed"), t("no_webrtc"));
    return;
  }
  const local = await new LocalMedia().open();
  showSelf(local);
  const elements = {
    "floor.video": byId("floor-video"),
    "floor.audio": byId("floor-audio"),
  };
  for (let i = 0; i < WALL; i++) elements[`wall.${i}`] = byId(`wall-video-${i}`);
  const common = commonUi(() => connection);
  connection = new LiveConnection({
    meetingId,
    local,
    maxBitrate: CHAIR_BITRATE,
    elements,
    ui: {
      ...common,
      joined() {},
      state: showState,
      lost(on) {
        common.lost(on);
        if (on && connection.state) showState(connection.state);
      },
    },
  });
  wireDeviceButtons(connection, local);
  wireSoundButton();
  wireLeaveButton(connection);
  wireChairButtons();
  attendance = new AttendancePanel(act, () => connection.state);

  // For tests and troubleshooting in the browser console.
  exposeForTests(connection);
  connection.start();
}

main();

// What every live page shows around the media: the connection banner, a status line,
// a notice for problems, and the full-page overlay (ended, replaced, cannot join).

import { byId } from "./dom.js";
import { errorText, second, t } from "./i18n.js";

// The reasons of `session_ended` (docs/protocol.md section 7), each with its "session_<reason>" text.
const SESSION_REASONS = new Set([
  "logged_out",
  "expired",
  "disabled",
  "password_changed",
  "role_changed",
  "unit_changed",
]);

const BANNER_TEXT = {
  connecting: "connecting",
  media: "media",
  connected: "connected",
  reconnecting: "reconnecting",
};

export function banner(kind) {
  const el = byId("conn");
  el.textContent = t(BANNER_TEXT[kind] || kind);
  el.className = `conn conn-${kind}`;
  document.body.dataset.connection = kind;
}

/** Whether the page is showing that the node is out of reach (see lost()). */
export const isLost = () => document.body.dataset.lost === "1";

/** The status line under the title; tone: "", "good", "warn". While the node is out of
 * reach it says so, whatever the last state from the node said. */
export function status(text, tone = "") {
  if (isLost()) [text, tone] = [t("lost_title"), "bad"];
  const el = byId("live-status");
  el.textContent = text;
  el.className = `live-status${tone ? ` live-status-${tone}` : ""}`;
}

let noticeTimer = null;

/** A problem to show; transient ones disappear after a while. */
export function notice(text, { transient = false } = {}) {
  const el = byId("notice");
  clearTimeout(noticeTimer);
  el.textContent = text || "";
  el.hidden = !text;
  if (text && transient) noticeTimer = setTimeout(() => (el.hidden = true), 8000);
}

/** The full-page card; `second`: the text again in English, under it (Vietnamese pages). */
export function overlay(title, text, options = {}) {
  const { action = null, onAction = null, login = false, second = "" } = options;
  byId("overlay-title").textContent = title;
  byId("overlay-text").textContent = text;
  const english = byId("overlay-second");
  english.textContent = second;
  english.hidden = !second;
  const button = byId("overlay-action");
  button.hidden = !action;
  if (action) {
    button.textContent = action;
    button.onclick = () => {
      byId("overlay").hidden = true;
      onAction();
    };
  }
  byId("overlay-login").hidden = !login;
  byId("overlay").hidden = false;
  (action ? button : byId("overlay-title")).focus?.();
}

/** Cover the picture (frozen, or gone) with words while the node is out of reach. */
export function lost(on) {
  document.body.dataset.lost = on ? "1" : "0";
  byId("lost").hidden = !on;
  if (on) status("");
}

/** The ui callbacks of LiveConnection shared by both pages. */
export function commonUi(getConnection) {
  return {
    banner,
    lost,
    ended(ack) {
      banner("ended");
      byId("conn").textContent = t("ended_title");
      const text = ack && ack.error === "meeting_not_open" ? t("not_open") : t("ended_text");
      status(t("ended_title"));
      overlay(t("ended_title"), text);
    },
    replaced() {
      banner("stopped");
      byId("conn").textContent = t("replaced_title");
      overlay(t("replaced_title"), t("replaced_text"), {
        action: t("use_here"),
        onAction: () => getConnection().resume(),
      });
    },
    sessionEnded(reason) {
      banner("stopped");
      byId("conn").textContent = t("session_ended_title");
      const key = SESSION_REASONS.has(reason) ? `session_${reason}` : "login_again";
      status(t("session_ended_title"), "bad");
      overlay(t("session_ended_title"), t(key), { login: true, second: second(key) });
      document.body.dataset.sessionEnded = reason || "unknown";
    },
    fatal(ack, { login }) {
      banner("stopped");
      byId("conn").textContent = t("join_failed");
      overlay(t("join_failed"), login ? t("login_again") : errorText(ack), { login });
    },
  };
}

// The level above (on a child node: the province, for a district's sites). While it is
// unreachable a large banner stays up, because the meeting here goes on without the chair's
// picture and people must not close the page; when it returns, the banner says so briefly.
const UPPER_BACK_MS = 6000;
let upperShown = null;
let upperTimer = null;

function upperBanner(kind) {
  const el = byId("upper-banner");
  const host = byId("live").dataset.hostName || "";
  clearTimeout(upperTimer);
  el.dataset.kind = kind || "";
  el.hidden = !kind;
  if (!kind) return;
  const lost = kind !== "back";
  el.className = `upper-banner upper-banner-${lost ? "lost" : "back"}`;
  const [title, text] = {
    lost: ["upper_lost_title", "upper_lost_text"],
    refused: ["upper_refused_title", "upper_refused_text"],
    back: ["upper_back_title", "upper_back_text"],
  }[kind];
  byId("upper-banner-title").textContent = t(title, { host });
  byId("upper-banner-text").textContent = t(text);
  if (!lost) upperTimer = setTimeout(() => upperBanner(null), UPPER_BACK_MS);
}

/** state.upper_level: null on the node hosting the meeting, else "connecting", "connected",
 * "unreachable" or "refused" (the level above turned this node's link down). */
export function showUpperLevel(state) {
  const upper = state.status === "ended" ? null : state.upper_level || null;
  const pill = byId("upper");
  pill.hidden = !upper;
  document.body.dataset.upperLevel = upper || "none";
  const lost = upper === "unreachable" || upper === "refused";
  if (upper) {
    const text = { unreachable: "upper_unreachable", refused: "upper_refused", connecting: "upper_connecting" };
    pill.textContent = t(text[upper] || "upper_connected");
    pill.className = `conn upper ${lost ? "conn-reconnecting" : upper === "connected" ? "conn-connected" : ""}`;
  }
  if (upper === upperShown) return;
  const wasLost = upperShown === "unreachable" || upperShown === "refused";
  if (upper === "unreachable") upperBanner("lost");
  else if (upper === "refused") upperBanner("refused");
  else if (wasLost && upper === "connected") upperBanner("back");
  else upperBanner(null);
  upperShown = upper;
}

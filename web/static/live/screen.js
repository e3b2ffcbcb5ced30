// What every live page shows around the media: the connection banner, a status line,
// a notice for problems, and the full-page overlay (ended, replaced, cannot join).

import { byId } from "./dom.js";
import { errorText, t } from "./i18n.js";

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

/** The status line under the title; tone: "", "good", "warn". */
export function status(text, tone = "") {
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

export function overlay(title, text, { action = null, onAction = null, login = false } = {}) {
  byId("overlay-title").textContent = title;
  byId("overlay-text").textContent = text;
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

/** The ui callbacks of LiveConnection shared by both pages. */
export function commonUi(getConnection) {
  return {
    banner,
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
    fatal(ack, { login }) {
      banner("stopped");
      byId("conn").textContent = t("join_failed");
      overlay(t("join_failed"), login ? t("login_again") : errorText(ack), { login });
    },
  };
}

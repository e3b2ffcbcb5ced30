// The chair's lists: connected sites with their buttons, and the raise-hand queue.

import { h } from "./dom.js";
import { t } from "./i18n.js";

/** "Huyện Năm Căn › Xã Hàm Rồng": the unit path below the province. */
export function pathText(path, name) {
  const below = (path || []).slice(1);
  return below.length ? below.join(" › ") : name;
}

function flags(site, state) {
  const out = [];
  if (state.floor && state.floor.unit === site.unit) out.push(["floor", t("flag_floor")]);
  if (site.hand_raised) out.push(["hand", t("flag_hand")]);
  if (site.muted) out.push(["muted", t("flag_muted")]);
  if (!site.mic_on) out.push(["off", t("flag_mic_off")]);
  if (!site.camera_on) out.push(["off", t("flag_cam_off")]);
  if (!site.media) out.push(["off", t("flag_no_media")]);
  return out.map(([kind, text]) => h("span", { class: `flag flag-${kind}` }, text));
}

/** act(button, event, payload) sends a chair action. */
export function siteRow(site, state, act) {
  const watched = (state.watched || []).includes(site.unit);
  const hasFloor = Boolean(state.floor && state.floor.unit === site.unit);
  const button = (text, cls, event, payload) =>
    h("button", { type: "button", class: `btn ${cls}`, onclick: (e) => act(e.currentTarget, event, payload) }, text);
  return h(
    "li",
    { class: `site${hasFloor ? " has-floor" : ""}${site.hand_raised ? " hand" : ""}`, dataset: { unit: site.unit } },
    h("div", { class: "site-name" }, site.name, h("span", { class: "site-path" }, pathText(site.path.slice(0, -1), ""))),
    h("div", { class: "site-flags" }, flags(site, state)),
    h(
      "div",
      { class: "site-actions" },
      watched
        ? button(t("unwatch"), "btn-watch is-on", "watch", { unit: site.unit, watch: false })
        : button(t("watch"), "btn-watch", "watch", { unit: site.unit, watch: true }),
      hasFloor
        ? button(t("take_floor"), "btn-floor is-on", "take_floor", {})
        : button(t("give_floor"), "btn-floor", "give_floor", { unit: site.unit }),
      site.muted
        ? button(t("unmute"), "btn-mute is-on", "mute", { unit: site.unit, muted: false })
        : button(t("mute"), "btn-mute", "mute", { unit: site.unit, muted: true }),
    ),
  );
}

export function queueRow(entry, index, act) {
  return h(
    "li",
    { class: "queue-item", dataset: { unit: entry.unit } },
    h("span", { class: "queue-pos" }, String(index + 1)),
    h("div", { class: "site-name" }, entry.name, h("span", { class: "site-path" }, pathText(entry.path.slice(0, -1), ""))),
    h(
      "button",
      { type: "button", class: "btn btn-primary", onclick: (e) => act(e.currentTarget, "give_floor", { unit: entry.unit }) },
      t("give_floor"),
    ),
  );
}

// The chair's lists: the sites with their state and buttons, grouped by the node below they
// come through (a district node relaying the meeting), and the raise-hand queue.

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

/**
 * The sites and child nodes seen in this meeting. One that drops out of the state (it left,
 * or the link of its node was down long enough for the node to be dropped) stays listed as
 * offline: the chair sees who is missing, not just a shorter list.
 */
export class Roster {
  constructor() {
    this.sites = new Map(); // unit -> {site, hadMedia}
    this.nodes = new Map(); // node code -> {node, name, online}
  }

  /** Merge a state; returns {groups: [{node, sites}], byUnit, online, offline}. */
  update(state) {
    const present = new Set();
    for (const site of state.sites || []) {
      const known = this.sites.get(site.unit);
      this.sites.set(site.unit, { site, hadMedia: Boolean(site.media || known?.hadMedia) });
      present.add(site.unit);
    }
    const linked = new Map((state.nodes || []).map((node) => [node.node, node]));
    for (const node of linked.values()) this.nodes.set(node.node, node);
    const views = [...this.sites.values()].map(({ site, hadMedia }) => {
      const here = present.has(site.unit);
      const node = site.via ? linked.get(site.via) : null;
      let status = "online";
      if (!here || site.online === false || (site.via && node && !node.online)) status = "offline";
      // link: the site's media link as its node sees it (a node of an older version: media).
      else if (site.link ? site.link !== "connected" : !site.media) {
        status = hadMedia ? "reconnecting" : "connecting";
      }
      return { ...site, present: here, status };
    });
    views.sort((a, b) => a.path.join(" › ").localeCompare(b.path.join(" › "), "vi"));
    const groups = new Map();
    const local = views.filter((v) => !v.via);
    if (local.length || views.length === local.length) groups.set("", { node: null, sites: local });
    for (const node of this.nodes.values()) {
      const online = linked.has(node.node) && linked.get(node.node).online;
      groups.set(node.node, { node: { ...node, online }, sites: [] });
    }
    for (const view of views.filter((v) => v.via)) {
      if (!groups.has(view.via)) {
        groups.set(view.via, { node: { node: view.via, name: view.via, online: view.status !== "offline" }, sites: [] });
      }
      groups.get(view.via).sites.push(view);
    }
    const offline = views.filter((v) => v.status === "offline").length;
    return {
      groups: [...groups.values()],
      byUnit: new Map(views.map((v) => [v.unit, v])),
      online: views.length - offline,
      offline,
    };
  }
}

const STATUS_TEXT = {
  online: "site_online",
  connecting: "site_connecting",
  reconnecting: "site_reconnecting",
  offline: "site_offline",
};

/** The chair's site list: flat on a node without nodes below, else one group per node. */
export function siteList(view, state, act) {
  if (view.groups.length === 1 && !view.groups[0].node) {
    const sites = view.groups[0].sites;
    return sites.length ? sites.map((site) => siteRow(site, state, act)) : [h("li", { class: "empty-row" }, t("no_sites"))];
  }
  return view.groups.map((group) => nodeGroup(group, state, act));
}

function nodeGroup({ node, sites }, state, act) {
  const rows = sites.length
    ? sites.map((site) => siteRow(site, state, act))
    : [h("li", { class: "empty-row" }, node ? t("node_no_sites") : t("no_sites"))];
  if (!node) {
    return h(
      "li",
      { class: "node-group node-group-local", dataset: { local: "1" } },
      h("div", { class: "node-head" }, h("strong", { class: "node-name" }, t("direct_sites"))),
      h("ul", { class: "sites" }, rows),
    );
  }
  const link = node.online ? "online" : "offline";
  const online = sites.filter((s) => s.status !== "offline").length;
  return h(
    "li",
    { class: `node-group node-group-${link}`, dataset: { node: node.node, link } },
    h(
      "div",
      { class: "node-head" },
      h("div", { class: "node-title" }, h("span", { class: "node-kind" }, t("node_kind")), h("strong", { class: "node-name" }, node.name)),
      h("span", { class: `state-pill state-${link}` }, node.online ? t("node_link_ok") : t("node_link_lost")),
    ),
    h("p", { class: "node-count" }, t("node_sites", { online, total: sites.length })),
    node.online ? null : h("p", { class: "node-note", role: "alert" }, t("node_lost_note", { name: node.name })),
    h("ul", { class: "sites" }, rows),
  );
}

/** act(button, event, payload) sends a chair action; site.status is a Roster status. */
export function siteRow(site, state, act) {
  const watched = (state.watched || []).includes(site.unit);
  const hasFloor = Boolean(state.floor && state.floor.unit === site.unit);
  const offline = site.status === "offline";
  const button = (text, cls, event, payload) =>
    h("button", { type: "button", class: `btn ${cls}`, onclick: (e) => act(e.currentTarget, event, payload) }, text);
  const classes = ["site", `site-${site.status}`];
  if (hasFloor) classes.push("has-floor");
  if (site.hand_raised && !offline) classes.push("hand");
  const dataset = { unit: site.unit, state: site.status };
  if (site.via) dataset.via = site.via;
  // An offline site keeps only the buttons that undo something (its wall slot, its floor).
  const actions = offline
    ? [
        watched && button(t("unwatch"), "btn-watch is-on", "watch", { unit: site.unit, watch: false }),
        hasFloor && button(t("take_floor"), "btn-floor is-on", "take_floor", {}),
      ]
    : [
        watched
          ? button(t("unwatch"), "btn-watch is-on", "watch", { unit: site.unit, watch: false })
          : button(t("watch"), "btn-watch", "watch", { unit: site.unit, watch: true }),
        hasFloor
          ? button(t("take_floor"), "btn-floor is-on", "take_floor", {})
          : button(t("give_floor"), "btn-floor", "give_floor", { unit: site.unit }),
        site.muted
          ? button(t("unmute"), "btn-mute is-on", "mute", { unit: site.unit, muted: false })
          : button(t("mute"), "btn-mute", "mute", { unit: site.unit, muted: true }),
      ];
  return h(
    "li",
    { class: classes.join(" "), dataset },
    h(
      "div",
      { class: "site-head" },
      h("div", { class: "site-name" }, site.name, h("span", { class: "site-path" }, pathText(site.path.slice(0, -1), ""))),
      h("span", { class: `state-pill state-${site.status}` }, t(STATUS_TEXT[site.status])),
    ),
    h("div", { class: "site-flags" }, offline ? [] : flags(site, state)),
    h("div", { class: "site-actions" }, actions),
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

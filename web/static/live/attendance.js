// The chair's attendance: every invited site with its state in words and its head count,
// grouped by district with present/expected, the call buttons (a site by name, the next,
// the previous), and the roll call with its live tally by level and group.

import { byId, h, hhmm } from "./dom.js";
import { t } from "./i18n.js";
import { confirmModal } from "./modal.js";

const STATE_TEXT = { never: "state_never", online: "state_online", lost: "state_lost", left: "state_left" };
const LEVEL_RANK = { province: 0, district: 1, commune: 2 };
const TAB_KEY = "hoinghi.chair.tab";

/** "Cấp xã": a level's name in words (an unknown level by its code). */
export function levelName(level) {
  const key = `level_${level}`;
  const text = t(key);
  return text === key ? level : text;
}

const byLevel = (a, b) => (LEVEL_RANK[a] ?? 9) - (LEVEL_RANK[b] ?? 9) || a.localeCompare(b);

function stateWord(state) {
  return t(STATE_TEXT[state] || "state_never");
}

/** The two tabs of the sites panel: the connected sites and every invited site. */
function wireTabs() {
  const tabs = [byId("tab-sites"), byId("tab-roster")];
  const select = (tab, focus = false) => {
    for (const other of tabs) {
      const on = other === tab;
      other.setAttribute("aria-selected", String(on));
      other.tabIndex = on ? 0 : -1;
      byId(other.getAttribute("aria-controls")).hidden = !on;
    }
    if (focus) tab.focus();
    try {
      window.localStorage.setItem(TAB_KEY, tab.id);
    } catch {
      // storage refused (private window): the tab is simply not remembered
    }
  };
  for (const [i, tab] of tabs.entries()) {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      event.preventDefault();
      select(tabs[(i + step + tabs.length) % tabs.length], true);
    });
  }
  let saved = null;
  try {
    saved = window.localStorage.getItem(TAB_KEY);
  } catch {
    saved = null;
  }
  select(tabs.find((tab) => tab.id === saved) || tabs[0]);
}

export class AttendancePanel {
  /** act(button, event, payload): a chair action with its acknowledgement (chair.js). */
  constructor(act, getState) {
    this.act = act;
    this.getState = getState;
    this.lastEnd = null; // the acknowledgement of the last roll_call_end, until a state has it
    wireTabs();
    byId("btn-call-next").addEventListener("click", (e) => act(e.currentTarget, "call_site", { step: "next" }));
    byId("btn-call-prev").addEventListener("click", (e) => act(e.currentTarget, "call_site", { step: "previous" }));
    byId("btn-call-take").addEventListener("click", (e) => act(e.currentTarget, "take_floor", {}));
    byId("btn-rc-start").addEventListener("click", (e) => act(e.currentTarget, "roll_call_start", {}));
    byId("btn-rc-end").addEventListener("click", (e) => this.endRollCall(e.currentTarget));
  }

  async endRollCall(button) {
    const state = this.getState() || {};
    const call = state.roll_call;
    if (!call || !call.open) return;
    const tally = call.tally || { answered: 0, waiting: 0, offline: 0 };
    const expected = tally.answered + tally.waiting + tally.offline;
    const sure = await confirmModal({
      id: "rc-end-modal",
      title: t("rc_end_title", { number: call.number }),
      text: t("rc_end_text", { answered: tally.answered, expected, waiting: tally.waiting }),
      confirm: t("rc_end"),
      cancel: t("rc_keep_open"),
      danger: true,
    });
    if (!sure) return;
    const ack = await this.act(button, "roll_call_end", {});
    if (ack.ok) this.lastEnd = { ...ack.roll_call, tally: ack.tally };
    if (this.getState()) this.show(this.getState());
  }

  show(state) {
    const roster = state.roster || { sites: [], levels: [], groups: [], present: 0, expected: 0, head_count: 0 };
    byId("roster-title").textContent = t("roster_tab", { present: roster.present, expected: roster.expected });
    const floor = state.floor ? state.floor.unit : null;
    byId("btn-call-take").hidden = !floor;
    byId("roster-summary").replaceChildren(...rosterSummary(roster));
    byId("roster").replaceChildren(...rosterGroups(roster, floor, this.act));
    this.showRollCall(state, roster);
  }

  showRollCall(state, roster) {
    let call = state.roll_call;
    // The acknowledgement of the close can come before the state that says so.
    if (call && this.lastEnd && call.id === this.lastEnd.id && call.open) call = this.lastEnd;
    else this.lastEnd = null;
    const open = Boolean(call && call.open);
    const start = byId("btn-rc-start");
    start.hidden = open;
    start.disabled = state.status !== "live";
    byId("btn-rc-end").hidden = !open;
    const panel = byId("rollcall-panel");
    panel.dataset.rollCall = !call ? "none" : open ? "open" : "closed";
    byId("rc-status").textContent = !call
      ? state.status === "live"
        ? t("rc_none")
        : t("rc_not_live")
      : open
        ? t("rc_open", { number: call.number, time: hhmm(call.started_at) })
        : t("rc_closed", { number: call.number, time: hhmm(call.ended_at || call.started_at) });
    byId("rc-tally").replaceChildren(...(call && call.tally ? tallyView(call, roster, this.act) : []));
  }
}

function rosterSummary(roster) {
  const levels = [...roster.levels].sort((a, b) => byLevel(a.level, b.level));
  return [
    h(
      "p",
      { class: "roster-total" },
      h("strong", { id: "roster-present" }, t("roster_present", { present: roster.present, expected: roster.expected })),
      h("span", { id: "roster-heads" }, t("roster_heads", { count: roster.head_count })),
    ),
    h(
      "ul",
      { class: "level-chips" },
      levels.map((level) =>
        h(
          "li",
          { class: `level-chip${level.present === level.expected ? " is-full" : ""}`, dataset: { level: level.level } },
          h("span", {}, levelName(level.level)),
          h("strong", {}, `${level.present}/${level.expected}`),
        ),
      ),
    ),
  ];
}

function rosterGroups(roster, floor, act) {
  if (!roster.sites.length) return [h("li", { class: "empty-row" }, t("roster_empty"))];
  const sitesOf = new Map(roster.groups.map((group) => [group.group, []]));
  for (const site of roster.sites) {
    if (!sitesOf.has(site.group)) sitesOf.set(site.group, []);
    sitesOf.get(site.group).push(site);
  }
  const named = new Map(roster.groups.map((group) => [group.group, group]));
  return [...sitesOf.entries()].map(([code, sites]) => {
    const group = named.get(code) || { group: code, name: code, present: 0, expected: sites.length };
    const heads = sites.reduce((sum, s) => sum + (s.state === "online" && s.head_count ? s.head_count : 0), 0);
    return h(
      "li",
      { class: "roster-group", dataset: { group: code } },
      h(
        "div",
        { class: "roster-group-head" },
        h("strong", { class: "roster-group-name" }, group.name),
        h(
          "span",
          { class: `count-pill${group.present === group.expected ? " is-full" : ""}`, title: t("present_of", { present: group.present, expected: group.expected }) },
          `${group.present}/${group.expected}`,
        ),
        h("span", { class: "roster-group-heads" }, t("people", { count: heads })),
      ),
      h("ul", { class: "roster-sites" }, sites.map((site) => rosterSite(site, floor, act))),
    );
  });
}

function rosterSite(site, floor, act) {
  const online = site.state === "online";
  const speaking = floor === site.unit;
  return h(
    "li",
    { class: `roster-site roster-${site.state}${speaking ? " has-floor" : ""}`, dataset: { unit: site.unit, state: site.state } },
    h("span", { class: "roster-site-name" }, site.name, speaking ? h("span", { class: "flag flag-floor" }, t("flag_floor")) : null),
    h("span", { class: `state-pill roster-pill roster-pill-${site.state}` }, stateWord(site.state)),
    h("span", { class: "roster-heads" }, site.head_count === null || site.head_count === undefined ? "—" : t("people", { count: site.head_count })),
    online && !speaking
      ? h(
          "button",
          { type: "button", class: "btn btn-call", onclick: (e) => act(e.currentTarget, "call_site", { unit: site.unit }) },
          t("call"),
        )
      : h("span", { class: "btn-call-gap" }),
  );
}

/** The tally of a roll call: totals, then a table per level with a row per group, then the
 * sites that have not answered (online, then not connected). */
function tallyView(call, roster, act) {
  const tally = call.tally;
  const waitingWord = call.open ? t("rc_waiting") : t("rc_not_answered");
  const stat = (key, label, value) =>
    h("div", { class: `rc-stat rc-stat-${key}`, dataset: { stat: key } }, h("span", { class: "rc-stat-value" }, String(value)), h("span", { class: "rc-stat-label" }, label));
  const out = [
    h(
      "div",
      { class: "rc-stats" },
      stat("answered", t("rc_answered"), tally.answered),
      stat("waiting", waitingWord, tally.waiting),
      stat("offline", t("rc_offline"), tally.offline),
      stat("heads", t("rc_heads"), tally.head_count),
    ),
  ];
  const levels = [...new Set(tally.groups.map((g) => g.level))].sort(byLevel);
  for (const level of levels) {
    const groups = tally.groups.filter((g) => g.level === level);
    const row = (g, total = false) =>
      h(
        "tr",
        { class: total ? "rc-total-row" : "", dataset: total ? { total: level } : { group: g.group } },
        h("th", { scope: "row" }, total ? t("rc_total") : g.name),
        h("td", {}, String(g.answered)),
        h("td", {}, String(g.waiting)),
        h("td", {}, String(g.offline)),
        h("td", {}, String(g.head_count)),
      );
    const sum = (key) => groups.reduce((n, g) => n + g[key], 0);
    const total = { answered: sum("answered"), waiting: sum("waiting"), offline: sum("offline"), head_count: sum("head_count") };
    out.push(
      h(
        "table",
        { class: "rc-table", dataset: { level } },
        h("caption", {}, levelName(level), " — ", t("rc_level_answered", { answered: total.answered, expected: total.answered + total.waiting + total.offline })),
        h(
          "thead",
          {},
          h("tr", {}, h("th", { scope: "col" }, t("rc_unit")), h("th", { scope: "col" }, t("rc_answered")), h("th", { scope: "col" }, waitingWord), h("th", { scope: "col" }, t("rc_offline")), h("th", { scope: "col" }, t("rc_heads"))),
        ),
        h("tbody", {}, groups.map((g) => row(g)), groups.length > 1 ? row(total, true) : null),
      ),
    );
  }
  const answers = tally.answers || {};
  const missing = roster.sites.filter((s) => !(s.unit in answers));
  const waiting = missing.filter((s) => s.state === "online");
  const offline = missing.filter((s) => s.state !== "online");
  if (!waiting.length) out.push(h("p", { class: "rc-all", id: "rc-all" }, t("rc_all_answered")));
  else {
    out.push(
      h("h3", { class: "rc-list-title" }, call.open ? t("rc_waiting_list", { count: waiting.length }) : t("rc_not_answered_list", { count: waiting.length })),
      h(
        "ul",
        { class: "rc-missing", id: "rc-waiting" },
        waiting.map((site) =>
          h(
            "li",
            { dataset: { unit: site.unit } },
            h("span", {}, site.name),
            call.open
              ? h("button", { type: "button", class: "btn btn-call", onclick: (e) => act(e.currentTarget, "call_site", { unit: site.unit }) }, t("call"))
              : null,
          ),
        ),
      ),
    );
  }
  if (offline.length) {
    out.push(
      h(
        "details",
        { class: "rc-offline-list" },
        h("summary", {}, t("rc_offline_list", { count: offline.length })),
        h("ul", { class: "rc-missing", id: "rc-offline" }, offline.map((site) => h("li", { dataset: { unit: site.unit } }, site.name, " — ", stateWord(site.state)))),
      ),
    );
  }
  return out;
}

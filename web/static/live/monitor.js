// The chair's monitoring wall (giám sát đường truyền): for every site, here and below the
// child nodes, what it receives (its tier, or its mode) and how its line is judged, with the
// figures behind that (kbit/s, loss, frames/s, freezes), as each site's node measures them
// (state.sites[].receive, pushed every 2 s while they move; docs/protocol.md section 7).
// A site in trouble says so in words as well as colour, and comes first in its group; the
// count of sites in trouble stays at the top of the console even while the wall is folded.

import { byId, h } from "./dom.js";
import { t } from "./i18n.js";
import { pathText } from "./sites.js";

const OPEN_KEY = "hoinghi.chair.monitor";
// A freeze keeps its site marked this long: the next state (a raised hand, say) may come
// 0.2 s later with the same count, and a mark that blinks off at once would go unseen.
const FREEZE_MEMORY_MS = 10_000;
// Below this share of the audio played (the rest concealed), speech breaks up.
const AUDIO_OK_PCT = 99;

const TIER_TEXT = { high: "mon_tier_high", low: "mon_tier_low", lowest: "mon_tier_lowest" };
const QUALITY_TEXT = { good: "mon_q_good", fair: "mon_q_fair", poor: "mon_q_poor", unknown: "mon_q_unknown" };

/** "Cao (tự động)", "Thấp nhất", "Chỉ tiếng", "Tạm dừng": what a site receives, in words. */
export function receiveText(receive) {
  if (!receive) return "—";
  if (receive.mode === "audio") return t("mon_audio_only");
  if (receive.mode === "none") return t("mon_paused");
  const tier = receive.tier ? t(TIER_TEXT[receive.tier]) : "—";
  return receive.mode === "auto" ? t("mon_auto", { tier }) : tier;
}

function numbers(digits) {
  const lang = document.documentElement.lang || "vi";
  try {
    return new Intl.NumberFormat(lang, { maximumFractionDigits: digits });
  } catch {
    return new Intl.NumberFormat("vi", { maximumFractionDigits: digits });
  }
}

function clock(date) {
  const two = (n) => String(n).padStart(2, "0");
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}

export class MonitorPanel {
  constructor() {
    this.panel = byId("monitor-panel");
    this.freezes = new Map(); // unit -> {count, risenAt}
    this.timer = null;
    this.last = null; // [state, view] of the last show, to clear an expired freeze mark
    this.whole = numbers(0);
    this.tenth = numbers(1);
    let open = null;
    try {
      open = window.localStorage.getItem(OPEN_KEY);
    } catch {
      open = null; // storage refused (private window): open, as by default
    }
    if (open === "0") this.panel.open = false;
    this.panel.addEventListener("toggle", () => {
      try {
        window.localStorage.setItem(OPEN_KEY, this.panel.open ? "1" : "0");
      } catch {
        // not remembered
      }
    });
    byId("monitor-alert").addEventListener("click", () => {
      this.panel.open = true;
    });
  }

  /** Why a site is in trouble, in words (none: it is fine). */
  troubles(site, now) {
    if (site.status === "offline") return [t("mon_why_offline")];
    const rx = site.receive;
    if (!rx) return [];
    const why = [];
    if (rx.quality === "poor") why.push(t("mon_why_poor"));
    if (rx.audio_played_pct !== null && rx.audio_played_pct !== undefined && rx.audio_played_pct < AUDIO_OK_PCT) {
      why.push(t("mon_why_audio", { pct: this.tenth.format(rx.audio_played_pct) }));
    }
    const seen = this.freezes.get(site.unit);
    if (seen && seen.risenAt && now - seen.risenAt < FREEZE_MEMORY_MS) why.push(t("mon_why_freezes"));
    return why;
  }

  /** Remember each site's freezes, to tell a new one from those it already had. */
  countFreezes(sites, now) {
    for (const site of sites) {
      const count = site.present && site.receive ? site.receive.freezes : null;
      if (count === null || count === undefined) continue;
      const seen = this.freezes.get(site.unit);
      // Fewer than before: a new link (a rejoin counts from 0), not a thaw.
      const risen = seen && count > seen.count;
      this.freezes.set(site.unit, { count, risenAt: risen ? now : seen?.risenAt || 0 });
    }
  }

  /** state: the chair's state; view: Roster.update(state) (sites.js), grouped by node. */
  show(state, view) {
    this.last = [state, view];
    const now = Date.now();
    const all = view.groups.flatMap((group) => group.sites);
    this.countFreezes(all, now);
    const flagged = [];
    const groups = view.groups.map(({ node, sites }) => {
      const rows = sites.map((site) => ({ site, why: this.troubles(site, now) }));
      // Trouble first, then by unit path (the Roster's order).
      rows.sort((a, b) => Number(b.why.length > 0) - Number(a.why.length > 0));
      flagged.push(...rows.filter((r) => r.why.length));
      return { node, rows };
    });
    this.summary(flagged, all.length);
    const showNodes = groups.length > 1 || Boolean(groups[0] && groups[0].node);
    const bodies = groups.map((group) => this.group(group, showNodes));
    byId("monitor-table").replaceChildren(this.head(), ...bodies);
    byId("monitor-table").hidden = all.length === 0;
    byId("monitor-updated").textContent = t("mon_updated", { time: clock(new Date(now)) });
    this.expireLater(now);
  }

  /** A freeze mark ends by itself when no state comes in the meantime. */
  expireLater(now) {
    if (this.timer) window.clearTimeout(this.timer);
    this.timer = null;
    const ends = [...this.freezes.values()]
      .map((seen) => seen.risenAt + FREEZE_MEMORY_MS)
      .filter((at) => at > now);
    if (!ends.length) return;
    this.timer = window.setTimeout(() => {
      this.timer = null;
      if (this.last) this.show(...this.last);
    }, Math.min(...ends) - now + 50);
  }

  summary(flagged, total) {
    const count = flagged.length;
    const alert = byId("monitor-alert");
    alert.hidden = count === 0;
    alert.textContent = t("mon_trouble_count", { count });
    const badge = byId("monitor-badge");
    badge.className = `mon-badge ${count ? "mon-badge-bad" : "mon-badge-ok"}`;
    badge.textContent = count ? t("mon_trouble_count", { count }) : total ? t("mon_all_ok") : "";
    badge.hidden = !total;
    const box = byId("monitor-summary");
    box.dataset.trouble = String(count);
    if (!total) {
      box.replaceChildren(h("p", { class: "empty-row" }, t("no_sites")));
      return;
    }
    if (!count) {
      box.replaceChildren(h("p", { class: "mon-all-ok" }, t("mon_all_ok")));
      return;
    }
    box.replaceChildren(
      h("p", { class: "mon-trouble-title", role: "status" }, t("mon_trouble_count", { count })),
      h(
        "ul",
        { class: "mon-trouble-list" },
        flagged.map(({ site, why }) =>
          h("li", { dataset: { unit: site.unit } }, h("strong", {}, site.name), " — ", why.join(" · ")),
        ),
      ),
    );
  }

  head() {
    const th = (text, cls = "") => h("th", { scope: "col", class: cls }, text);
    return h(
      "thead",
      {},
      h(
        "tr",
        {},
        th(t("mon_col_site"), "mon-col-site"),
        th(t("mon_col_receive")),
        th(t("mon_col_kbit"), "mon-num"),
        th(t("mon_col_loss"), "mon-num"),
        th(t("mon_col_fps"), "mon-num"),
        th(t("mon_col_freezes"), "mon-num"),
        th(t("mon_col_line")),
      ),
    );
  }

  group({ node, rows }, showNodes) {
    const heading = !showNodes
      ? null
      : h(
          "tr",
          { class: `mon-group ${node && !node.online ? "mon-group-lost" : ""}`, dataset: { node: node ? node.node : "" } },
          h(
            "th",
            { colspan: "7", scope: "rowgroup" },
            node ? [h("span", { class: "node-kind" }, t("node_kind")), " ", node.name, " · ", node.online ? t("node_link_ok") : t("node_link_lost")] : t("direct_sites"),
          ),
        );
    const body = rows.length
      ? rows.map(({ site, why }) => this.row(site, why))
      : [h("tr", { class: "mon-empty" }, h("td", { colspan: "7" }, node ? t("node_no_sites") : t("no_sites")))];
    return h("tbody", { dataset: { node: node ? node.node : "" } }, heading, body);
  }

  row(site, why) {
    const offline = site.status === "offline";
    const rx = offline ? null : site.receive;
    const trouble = why.length > 0;
    const quality = offline ? "offline" : rx ? rx.quality : "unknown";
    const figure = (value, format, suffix = "") =>
      h("td", { class: "mon-num" }, rx && value !== null && value !== undefined ? format.format(value) + suffix : "—");
    const dataset = { unit: site.unit, trouble: trouble ? "1" : "0", quality };
    if (site.via) dataset.via = site.via;
    return h(
      "tr",
      { class: `mon-row ${trouble ? "mon-trouble" : "mon-fine"}${offline ? " mon-offline" : ""}`, dataset },
      h(
        "th",
        { scope: "row", class: "mon-site" },
        h("span", { class: "mon-name" }, site.name),
        h("span", { class: "site-path" }, pathText(site.path.slice(0, -1), "")),
        trouble ? h("span", { class: "mon-why" }, t("mon_trouble", { reasons: why.join(" · ") })) : null,
      ),
      h("td", { class: "mon-rx" }, rx ? receiveText(rx) : "—"),
      figure(rx && rx.kbit, this.whole),
      figure(rx && rx.loss_pct, this.tenth, " %"),
      figure(rx && rx.fps, this.tenth),
      figure(rx && rx.freezes, this.whole),
      h(
        "td",
        { class: "mon-line" },
        h("span", { class: `mon-q mon-q-${quality}` }, offline ? t("mon_offline") : t(QUALITY_TEXT[quality] || "mon_q_unknown")),
        rx && rx.rtt_ms !== null && rx.rtt_ms !== undefined
          ? h("span", { class: "mon-rtt" }, t("mon_rtt", { ms: this.whole.format(rx.rtt_ms) }))
          : null,
      ),
    );
  }
}

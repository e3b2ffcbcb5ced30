// Being in the meeting: join, negotiate the media link, and join again by itself when the
// socket or the link drops (backoff with jitter), until the meeting ends or this window is
// replaced by another one for the same site. While the node cannot be reached (the socket
// dropped, or the media link went silent: watch.js) the page says so over the picture.

import { MediaLink } from "./link.js";
import { Signaling } from "./signaling.js";
import { LinkReporter } from "./stats.js";
import { MediaWatch } from "./watch.js";

// The receive mode chosen on this browser (rooms/tiers.py): a commune on a poor line picks
// it once, and every meeting it joins from here starts with it.
const MODE_KEY = "hoinghi.receive_mode";
const MODES = new Set(["auto", "high", "low", "lowest", "audio", "none"]);

export function savedMode() {
  try {
    const mode = window.localStorage.getItem(MODE_KEY);
    return MODES.has(mode) ? mode : null;
  } catch {
    return null; // storage refused (private window): the node still keeps it per meeting
  }
}

function saveMode(mode) {
  try {
    window.localStorage.setItem(MODE_KEY, mode);
  } catch {
    /* see savedMode */
  }
}

const ENDED = new Set(["meeting_not_open", "meeting_ended"]);
const PERMANENT = new Set(["not_invited", "meeting_not_found", "forbidden", "bad_request"]);
const LINK_GRACE_MS = 4000; // "disconnected" this long: give up on the link and rejoin
const CONNECT_TIMEOUT_MS = 20000; // a new link must connect within this
const MAX_BACKOFF_MS = 30000;
const SILENT_REJOIN_MS = 1000; // a link silent this long after it was found lost: rejoin

function backoff(failures) {
  const base = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.max(0, failures - 1));
  return Math.round(base * (0.5 + Math.random())); // jitter: sites do not retry in step
}

export class LiveConnection {
  /**
   * ui: {banner(kind), joined(ack), state(state), lost(on), ended(), replaced(),
   * fatal(ack, {login}), sessionEnded(reason)}; banner kinds: "connecting", "media",
   * "connected", "reconnecting".
   * lost(true): the node is out of reach (say so over the picture); lost(false): back.
   */
  constructor({ meetingId, local, elements, maxBitrate, ui }) {
    this.meetingId = meetingId;
    this.local = local;
    this.elements = elements;
    this.maxBitrate = maxBitrate;
    this.ui = ui;
    this.link = null;
    this.state = null;
    this.stopped = false;
    this.everConnected = false;
    this.failures = 0;
    this.generation = 0;
    this.timer = null;
    this.linkTimer = null;
    this.watch = null;
    this.silentTimer = null;
    this.lostShown = false;
    this.devices = { mic_on: true, camera_on: true };
    this.reporter = null;
  }

  /** Receive another tier, audio only, or nothing; remembered on this browser. */
  async setReceiveMode(mode) {
    const ack = await this.sig.request("receive_mode", { mode });
    if (ack.ok) saveMode(mode);
    return ack;
  }

  start() {
    const sig = (this.sig = new Signaling());
    sig.on("connect", () => this.rejoin(0));
    sig.on("disconnect", (reason) => {
      this.closeLink();
      if (this.stopped) return;
      console.warn("socket lost:", reason);
      this.showLost(true);
      this.ui.banner("reconnecting");
      // The node closed the socket itself: socket.io does not reconnect on its own then.
      if (reason === "io server disconnect") setTimeout(() => sig.reconnect(), backoff(++this.failures));
    });
    sig.on("connect_error", (err) => {
      const refused = err && ((err.data && err.data.error) || err.message);
      if (refused === "not_authenticated") {
        if (this.sessionEnded) return; // the page already says why
        this.stop();
        this.ui.fatal(err.data || { error: refused }, { login: true });
      } else if (!this.stopped) {
        if (this.everConnected) this.showLost(true);
        this.ui.banner(this.everConnected ? "reconnecting" : "connecting");
      }
    });
    sig.on("state", (state) => this.onState(state));
    sig.on("ended", () => this.onEnded());
    sig.on("replaced", () => {
      this.stop();
      this.ui.replaced();
    });
    // The login this socket was opened with ended (logged out elsewhere, disabled, ...): the
    // node closes the socket next, and a reconnect with the old cookie would be refused.
    sig.on("session_ended", (data) => this.onSessionEnded((data && data.reason) || ""));
    this.ui.banner("connecting");
  }

  request(event, payload) {
    return this.sig.request(event, payload);
  }

  /** Join again after `delay` ms; cancels a pending try. */
  rejoin(delay) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.attempt(), delay);
  }

  /** After "replaced": take the site back in this window. */
  resume() {
    this.stopped = false;
    this.failures = 0;
    if (this.sig.connected) this.rejoin(0);
    else this.sig.reconnect();
  }

  async attempt() {
    const generation = ++this.generation;
    this.closeLink();
    if (this.stopped || !this.sig.connected) return;
    this.ui.banner(this.everConnected ? "reconnecting" : "connecting");
    try {
      const joined = await this.sig.request("join", { meeting_id: this.meetingId });
      if (generation !== this.generation || this.stopped) return;
      if (!joined.ok) return this.failed(joined);
      this.ui.joined(joined);
      this.onState(joined.state);
      console.info("joined as", joined.role, joined.unit);
      this.ui.banner("media");
      const link = (this.link = new MediaLink({
        layout: joined.layout,
        local: this.local,
        elements: this.elements,
        maxBitrate: this.maxBitrate,
        onState: (state, which) => this.onLinkState(state, which),
      }));
      const answer = await link.negotiate(this.sig);
      if (generation !== this.generation || this.stopped) return link.close();
      if (!answer.ok) return this.failed(answer);
      console.info("answer applied");
      this.sig.request("devices", this.devices);
      this.reporter = new LinkReporter(link, (report) => this.sig.request("link_stats", report));
      const saved = savedMode();
      const receive = joined.state && joined.state.you && joined.state.you.receive;
      if (saved && receive && receive.mode !== saved) this.sig.request("receive_mode", { mode: saved });
      link.applyPublish(this.state && this.state.you && this.state.you.publish);
      this.armLinkTimer(link, CONNECT_TIMEOUT_MS);
    } catch (err) {
      console.error("join failed", err);
      if (generation === this.generation) this.failed({ ok: false, error: "client_error", message: String(err) });
    }
  }

  failed(ack) {
    this.closeLink();
    if (ENDED.has(ack.error)) return this.onEnded(ack);
    if (PERMANENT.has(ack.error)) {
      this.stop();
      return this.ui.fatal(ack, { login: false });
    }
    console.warn("join attempt failed, retrying", ack);
    this.failures += 1;
    this.ui.banner("reconnecting");
    this.rejoin(backoff(this.failures));
  }

  onLinkState(state, link) {
    if (link !== this.link || this.stopped) return;
    console.info("link", state);
    if (state === "connected") {
      clearTimeout(this.linkTimer);
      this.linkTimer = null;
      this.failures = 0;
      this.everConnected = true;
      this.watchMedia(link);
      this.showLost(false);
      this.ui.banner("connected");
    } else if (state === "disconnected" || state === "failed") {
      this.ui.banner("reconnecting");
      this.armLinkTimer(link, state === "failed" ? 1000 : LINK_GRACE_MS);
    }
  }

  armLinkTimer(link, ms) {
    clearTimeout(this.linkTimer);
    this.linkTimer = setTimeout(() => {
      if (link !== this.link || this.stopped || link.pc.connectionState === "connected") return;
      console.warn("media link lost:", link.pc.connectionState);
      this.closeLink();
      this.failures += 1;
      this.rejoin(backoff(this.failures));
    }, ms);
  }

  /** Watch what arrives on a connected link; silent for 2 s: the node is out of reach. */
  watchMedia(link) {
    if (this.watch) this.watch.stop();
    this.watch = new MediaWatch(link.pc, (lost, silentMs) => {
      if (link !== this.link || this.stopped) return;
      clearTimeout(this.silentTimer);
      if (!lost) {
        console.info("media flows again");
        this.showLost(false);
        this.ui.banner("connected");
        return;
      }
      console.warn(`media link silent for ${silentMs} ms`);
      this.showLost(true);
      this.ui.banner("reconnecting");
      this.silentTimer = setTimeout(() => {
        if (link !== this.link || this.stopped || !this.watch || !this.watch.lost) return;
        this.closeLink();
        this.failures += 1;
        this.rejoin(backoff(this.failures));
      }, SILENT_REJOIN_MS);
    });
  }

  showLost(on) {
    if (on === this.lostShown) return;
    this.lostShown = on;
    this.ui.lost(on);
    if (!on && this.state) this.ui.state(this.state);
  }

  onState(state) {
    if (!state || this.stopped) return;
    this.state = state;
    if (this.link && state.you) this.link.applyPublish(state.you.publish);
    this.ui.state(state);
    if (state.status === "ended") this.onEnded();
  }

  onEnded(ack) {
    if (this.stopped && this.endedShown) return;
    this.stop();
    this.showLost(false);
    this.endedShown = true;
    this.local.stop();
    this.ui.ended(ack);
  }

  onSessionEnded(reason) {
    if (this.sessionEnded) return;
    this.sessionEnded = true;
    this.stop();
    this.local.stop();
    this.ui.sessionEnded(reason);
  }

  setDevices(micOn, cameraOn) {
    this.devices = { mic_on: micOn, camera_on: cameraOn };
    this.local.setEnabled("audio", micOn);
    this.local.setEnabled("video", cameraOn);
    if (this.link && !this.stopped) this.sig.request("devices", this.devices);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.generation += 1;
    this.closeLink();
    this.showLost(false);
  }

  async leave() {
    // Say so before the media link closes: a link that closes first is, at the node, a
    // drop (an attendance event) just before the leave.
    this.stopped = true;
    clearTimeout(this.timer);
    this.generation += 1;
    await this.sig.request("leave", {}, 3000);
    this.stop();
  }

  closeLink() {
    clearTimeout(this.linkTimer);
    this.linkTimer = null;
    clearTimeout(this.silentTimer);
    if (this.reporter) this.reporter.stop();
    this.reporter = null;
    if (this.watch) this.watch.stop();
    this.watch = null;
    if (this.link) this.link.close();
    this.link = null;
  }
}

// Tests (and people debugging a site) read the live link from window.hoinghi.
export function exposeForTests(connection) {
  window.hoinghi = {
    connection,
    get pc() {
      return connection.link ? connection.link.pc : null;
    },
    midOf: (slot) => (connection.link ? connection.link.midOf(slot) : undefined),
    get state() {
      return connection.state;
    },
    get lost() {
      return connection.lostShown;
    },
    get lastReport() {
      return connection.reporter ? connection.reporter.last : null;
    },
  };
}

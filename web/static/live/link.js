// One WebRTC link to the node: the transceivers in the join acknowledgement's layout order,
// one offer with every ICE candidate in it (the node does not trickle), one answer.
// What a receive slot shows is switched on the node, so there is never a renegotiation.

import { clear, showTrack } from "./media.js";

const ICE_GATHER_TIMEOUT_MS = 5000;
const OFFER_TIMEOUT_MS = 30000;
// The camera goes out in two tiers (docs/architecture.md, "Tiers"): "camera" about 640x360,
// "camera.low" about 320x180 at 15 fps with VP8 temporal layers, whose base layer alone is
// the node's "lowest" tier. Audio: Opus, in-band FEC and DTX (the node's answer asks for
// them), at most 24 kbit/s.
const HIGH_HEIGHT = 360;
const LOW = { height: 180, maxBitrate: 120_000, maxFramerate: 15, scalabilityMode: "L1T2" };
const AUDIO_BITRATE = 24_000;

function iceGatheringDone(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, timeoutMs); // then offer what has been gathered
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

export class MediaLink {
  /**
   * layout: [{slot, kind, direction}] from the join ack; elements: slot name -> <video>/<audio>;
   * maxBitrate: bits per second for the camera; onState(connectionState, link).
   */
  constructor({ layout, local, elements, maxBitrate, onState }) {
    this.layout = layout;
    this.elements = elements;
    this.maxBitrate = maxBitrate;
    this.closed = false;
    this.slotByMid = new Map();
    this.midBySlot = new Map();
    this.pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
    this.pc.addEventListener("connectionstatechange", () => {
      if (!this.closed) onState(this.pc.connectionState, this);
    });
    this.pc.addEventListener("track", (event) => this.onTrack(event));
    this.local = local;
    this.clones = [];
    this.publishing = {};
    this.transceivers = layout.map((slot) => this.addSlot(slot, local));
  }

  addSlot(slot, local) {
    if (slot.direction !== "sendonly") return this.pc.addTransceiver(slot.kind, { direction: "recvonly" });
    let track = local.track(slot.kind);
    if (!track) return this.pc.addTransceiver(slot.kind, { direction: "sendonly" }); // no device: silent
    const init = { direction: "sendonly", streams: [local.stream] };
    if (slot.kind === "audio") {
      init.sendEncodings = [{ maxBitrate: AUDIO_BITRATE }];
      return this.pc.addTransceiver(track, init);
    }
    const height = (track.getSettings && track.getSettings().height) || 720;
    if (slot.slot.endsWith(".low")) {
      track = local.clone("video"); // the same capture, its own sender
      this.clones.push(track);
      const low = {
        maxBitrate: LOW.maxBitrate,
        maxFramerate: LOW.maxFramerate,
        scaleResolutionDownBy: Math.max(1, height / LOW.height),
      };
      try {
        return this.pc.addTransceiver(track, { ...init, sendEncodings: [{ ...low, scalabilityMode: LOW.scalabilityMode }] });
      } catch (err) {
        console.warn("no temporal layers here:", err); // the node then has no lowest tier
        return this.pc.addTransceiver(track, { ...init, sendEncodings: [low] });
      }
    }
    const high = { scaleResolutionDownBy: Math.max(1, height / HIGH_HEIGHT) };
    if (this.maxBitrate) high.maxBitrate = this.maxBitrate;
    return this.pc.addTransceiver(track, { ...init, sendEncodings: [high] });
  }

  /** Send only the camera tiers the node needs now (state.you.publish): a commune's uplink
   * is as poor as its downlink. A tier turned on starts with a keyframe. */
  async applyPublish(publish) {
    if (!publish || this.closed) return;
    for (const [i, slot] of this.layout.entries()) {
      if (slot.direction !== "sendonly" || slot.kind !== "video") continue;
      const want = slot.slot.endsWith(".low") ? Boolean(publish.low) : Boolean(publish.high);
      if (this.publishing[slot.slot] === want) continue;
      this.publishing[slot.slot] = want;
      const sender = this.transceivers[i].sender;
      const params = sender.getParameters();
      if (!params.encodings || params.encodings.length === 0) continue;
      for (const encoding of params.encodings) encoding.active = want;
      try {
        await sender.setParameters(params);
      } catch (err) {
        console.warn("setParameters", slot.slot, err);
        delete this.publishing[slot.slot];
      }
    }
  }

  /** Offer, wait for the answer, apply it. Resolves to the offer's acknowledgement. */
  async negotiate(signaling) {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    this.layout.forEach((slot, i) => {
      const mid = this.transceivers[i].mid;
      this.slotByMid.set(mid, slot.slot);
      this.midBySlot.set(slot.slot, mid);
    });
    await iceGatheringDone(this.pc, ICE_GATHER_TIMEOUT_MS);
    if (this.closed) return { ok: false, error: "closed", message: "closed" };
    const ack = await signaling.request("offer", { sdp: this.pc.localDescription.sdp }, OFFER_TIMEOUT_MS);
    if (!ack.ok || this.closed) return ack;
    await this.pc.setRemoteDescription({ type: "answer", sdp: ack.sdp });
    return ack;
  }

  onTrack(event) {
    const slot = this.slotByMid.get(event.transceiver.mid);
    const el = slot && this.elements[slot];
    if (el) showTrack(el, event.track);
  }

  midOf(slot) {
    return this.midBySlot.get(slot);
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.pc.close();
    for (const track of this.clones) this.local.release(track);
    for (const el of Object.values(this.elements)) clear(el);
  }
}

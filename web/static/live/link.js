// One WebRTC link to the node: the transceivers in the join acknowledgement's layout order,
// one offer with every ICE candidate in it (the node does not trickle), one answer.
// What a receive slot shows is switched on the node, so there is never a renegotiation.

import { clear, showTrack } from "./media.js";

const ICE_GATHER_TIMEOUT_MS = 5000;
const OFFER_TIMEOUT_MS = 30000;

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
    this.transceivers = layout.map((slot) => this.addSlot(slot, local));
  }

  addSlot(slot, local) {
    if (slot.direction === "sendonly") {
      const track = local.track(slot.kind);
      if (track) {
        return this.pc.addTransceiver(track, { direction: "sendonly", streams: [local.stream] });
      }
      return this.pc.addTransceiver(slot.kind, { direction: "sendonly" }); // no device: silent
    }
    return this.pc.addTransceiver(slot.kind, { direction: "recvonly" });
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
    await this.limitBitrate();
    return ack;
  }

  onTrack(event) {
    const slot = this.slotByMid.get(event.transceiver.mid);
    const el = slot && this.elements[slot];
    if (el) showTrack(el, event.track);
  }

  async limitBitrate() {
    const index = this.layout.findIndex((s) => s.direction === "sendonly" && s.kind === "video");
    const sender = index >= 0 ? this.transceivers[index].sender : null;
    if (!sender || !sender.track || !this.maxBitrate) return;
    const params = sender.getParameters();
    if (!params.encodings || params.encodings.length === 0) params.encodings = [{}];
    params.encodings[0].maxBitrate = this.maxBitrate;
    try {
      await sender.setParameters(params);
    } catch (err) {
      console.warn("setParameters", err);
    }
  }

  midOf(slot) {
    return this.midBySlot.get(slot);
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.pc.close();
    for (const el of Object.values(this.elements)) clear(el);
  }
}

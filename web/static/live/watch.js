// Watching the media itself. A live node never leaves a link silent for long: it forwards
// the program on the receive slots, and every one of its senders sends an RTCP report at
// least every 1.5 s. So a link that received packets and then none for SILENCE_MS (no rise
// of packetsReceived on any inbound-rtp, nor of the transport's bytesReceived) is lost,
// whatever the socket still believes: a node killed or cut off says nothing, and the picture
// would freeze without a word until the socket's heartbeat gives up.

export const SILENCE_MS = 2000;
const TICK_MS = 500;

/** What the link received so far: packets on every receive slot plus transport bytes. */
async function received(pc) {
  let total = 0;
  const stats = await pc.getStats();
  stats.forEach((s) => {
    if (s.type === "inbound-rtp") total += s.packetsReceived || 0;
    else if (s.type === "transport") total += s.bytesReceived || 0;
  });
  return total;
}

export class MediaWatch {
  /** onChange(lost, silentMs) when the link falls silent, and again when packets return. */
  constructor(pc, onChange) {
    this.pc = pc;
    this.onChange = onChange;
    this.total = -1;
    this.flowed = false;
    this.lastAt = performance.now();
    this.lost = false;
    this.busy = false;
    this.timer = setInterval(() => this.sample(), TICK_MS);
  }

  async sample() {
    if (this.busy || !this.timer) return;
    this.busy = true;
    try {
      let total = this.total;
      if (this.pc.connectionState !== "closed") {
        try {
          total = await received(this.pc);
        } catch {
          // a closed or failing link: nothing new arrived
        }
      }
      if (!this.timer) return;
      const now = performance.now();
      if (total !== this.total) {
        if (this.total >= 0 && total > 0) this.flowed = true;
        this.total = total;
        if (this.flowed) this.lastAt = now;
      }
      const silentMs = now - this.lastAt;
      const lost = this.flowed && silentMs >= SILENCE_MS;
      if (lost !== this.lost) {
        this.lost = lost;
        this.onChange(lost, Math.round(silentMs));
      }
    } finally {
      this.busy = false;
    }
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }
}

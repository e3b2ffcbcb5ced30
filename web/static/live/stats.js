// What this page receives, told to the node every 2 s (docs/protocol.md, `link_stats`): the
// node judges the link from its own RTCP reports and from this, and moves a site in "auto"
// to the tier its link carries (rooms/linkrate.py). The figures are the browser's own
// (getStats), cumulative; the node takes the differences.

export const REPORT_MS = 2000;

function number(value) {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : 0;
}

/** The report for one getStats() result; slotByMid maps a transceiver's mid to its slot. */
export function linkReport(stats, slotByMid) {
  const slots = [];
  let bytes = 0;
  let rtt = null;
  stats.forEach((s) => {
    if (s.type === "inbound-rtp") {
      const slot = slotByMid.get(s.mid);
      if (!slot) return;
      const emitted = number(s.jitterBufferEmittedCount);
      slots.push({
        slot,
        frames_decoded: Math.round(number(s.framesDecoded)),
        frames_per_second: number(s.framesPerSecond),
        freeze_count: Math.round(number(s.freezeCount)),
        total_freezes_duration: number(s.totalFreezesDuration),
        jitter_buffer_ms: emitted ? (number(s.jitterBufferDelay) / emitted) * 1000 : 0,
        bytes_received: Math.round(number(s.bytesReceived)),
        concealed_samples: Math.round(number(s.concealedSamples)),
        total_samples_received: Math.round(number(s.totalSamplesReceived)),
      });
    } else if (s.type === "transport") {
      bytes += number(s.bytesReceived);
    } else if (s.type === "candidate-pair" && s.nominated && typeof s.currentRoundTripTime === "number") {
      rtt = s.currentRoundTripTime * 1000;
    }
  });
  return { slots: slots.slice(0, 16), bytes_received: Math.round(bytes), rtt_ms: rtt };
}

export class LinkReporter {
  /** send(report) is called every REPORT_MS while the link is open. */
  constructor(link, send) {
    this.link = link;
    this.send = send;
    this.last = null;
    this.timer = setInterval(() => this.report(), REPORT_MS);
  }

  async report() {
    const pc = this.link.pc;
    if (!this.timer || pc.connectionState !== "connected") return;
    try {
      this.last = linkReport(await pc.getStats(), this.link.slotByMid);
      await this.send(this.last);
    } catch (err) {
      console.warn("link_stats", err);
    }
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }
}

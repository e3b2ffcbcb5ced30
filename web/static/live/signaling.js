// The /meeting socket.io namespace. The session cookie goes along (same origin); every
// acknowledgement is {ok: true, ...} or {ok: false, error, message} (docs/protocol.md).

import { io } from "/vendor/socket.io/socket.io.esm.min.js";

export const ACK_TIMEOUT_MS = 15000;

export class Signaling {
  constructor() {
    this.socket = io("/meeting", {
      withCredentials: true,
      // socket.io's own reconnection: 0.5-1.5 s, then 1-2 s, then every 2 s, so a restarted
      // node is found within about 2 s. A try at a node that is down is one refused
      // connection: cheap even for hundreds of sites, and the jitter of the first tries
      // keeps them out of step when it comes back.
      reconnectionDelay: 1000,
      reconnectionDelayMax: 2000,
      randomizationFactor: 0.5,
    });
  }

  get connected() {
    return this.socket.connected;
  }

  on(event, handler) {
    this.socket.on(event, handler);
  }

  /** Emit and wait for the acknowledgement; never throws. */
  async request(event, payload = {}, timeoutMs = ACK_TIMEOUT_MS) {
    if (!this.socket.connected) {
      return { ok: false, error: "disconnected", message: "Not connected to the node." };
    }
    try {
      const ack = await this.socket.timeout(timeoutMs).emitWithAck(event, payload);
      if (ack && typeof ack === "object") return ack;
      return { ok: false, error: "bad_ack", message: `Unexpected answer to ${event}.` };
    } catch {
      return {
        ok: false,
        error: "timeout",
        message: `No answer to ${event} within ${timeoutMs / 1000} s.`,
      };
    }
  }

  /** Connect again after the node refused us (socket.io does not retry that by itself). */
  reconnect() {
    if (!this.socket.connected) this.socket.connect();
  }
}

// This site's camera and microphone, and playing what the node sends.

const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 25, max: 30 } };
const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

export class LocalMedia {
  constructor() {
    this.stream = new MediaStream();
    this.problem = null; // i18n key when a device is missing, else null
    this.clones = new Set(); // copies sent as a second tier (link.js): they follow on/off
  }

  /** Ask for camera and microphone; fall back to one of them, then to neither. */
  async open() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      this.problem = "no_devices";
      return this;
    }
    const tries = [
      [{ video: VIDEO, audio: AUDIO }, null],
      [{ audio: AUDIO }, "no_camera"],
      [{ video: VIDEO }, "no_microphone"],
    ];
    let refused = false;
    for (const [constraints, problem] of tries) {
      try {
        this.stream = await navigator.mediaDevices.getUserMedia(constraints);
        this.problem = problem;
        return this;
      } catch (err) {
        console.warn("getUserMedia", constraints, err);
        if (err && (err.name === "NotAllowedError" || err.name === "SecurityError")) refused = true;
      }
    }
    this.problem = refused ? "devices_blocked" : "no_devices";
    return this;
  }

  track(kind) {
    return this.stream.getTracks().find((track) => track.kind === kind) || null;
  }

  /** A copy of a device's track for a second sender; stopped with the link that sends it. */
  clone(kind) {
    const track = this.track(kind);
    if (!track) return null;
    const copy = track.clone();
    this.clones.add(copy);
    copy.addEventListener("ended", () => this.clones.delete(copy));
    return copy;
  }

  release(copy) {
    copy.stop();
    this.clones.delete(copy);
  }

  /** Mute or unmute a device without renegotiating (the track sends silence / black). */
  setEnabled(kind, on) {
    const track = this.track(kind);
    if (track) track.enabled = on;
    for (const copy of this.clones) if (copy.kind === kind) copy.enabled = on;
  }

  stop() {
    for (const track of this.stream.getTracks()) track.stop();
    for (const copy of this.clones) copy.stop();
    this.clones.clear();
  }
}

// Autoplay: video elements are muted so they always play; audio may be refused until the
// user touches the page, then the page shows a "Turn on sound" button (onSoundBlocked).
const blocked = new Set();
let onSoundBlocked = () => {};

export function whenSoundBlocked(handler) {
  onSoundBlocked = handler;
}

export function play(el) {
  const started = el.play();
  if (started && typeof started.catch === "function") {
    started.catch((err) => {
      if (err && err.name === "NotAllowedError") {
        blocked.add(el);
        onSoundBlocked(true);
      }
    });
  }
}

export function resumeSound() {
  for (const el of blocked) el.play().catch(() => {});
  blocked.clear();
  onSoundBlocked(false);
}

export function showTrack(el, track) {
  el.srcObject = new MediaStream([track]);
  play(el);
}

export function clear(el) {
  el.srcObject = null;
}

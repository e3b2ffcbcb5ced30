// A site's page (điểm cầu): the program large (the chair, and the site holding the floor),
// this site's camera small, raise hand, microphone and camera, the head count and the
// chair's roll calls.

import { LiveConnection, exposeForTests } from "./connection.js";
import { wireDeviceButtons, wireLeaveButton, wireSoundButton, showSelf } from "./controls.js";
import { busy, byId } from "./dom.js";
import { HeadCount } from "./headcount.js";
import { errorText, t } from "./i18n.js";
import { LocalMedia } from "./media.js";
import { RollCallPrompt } from "./rollcall.js";
import { commonUi, notice, overlay, showUpperLevel, status } from "./screen.js";

const SITE_BITRATE = 500_000;
const root = byId("live");
const meetingId = Number(root.dataset.meetingId);
let headCount = null;
let rollCall = null;

function showState(state) {
  const you = state.you || {};
  const live = state.status === "live";
  const chairOn = live && state.chair_present;
  // On a child node cut off from the level above, the program cannot arrive: say why.
  const upperLost = state.upper_level === "unreachable" || state.upper_level === "refused";
  showUpperLevel(state);
  byId("chair-tile").dataset.empty = chairOn ? "0" : "1";
  byId("chair-empty").textContent = upperLost
    ? t("upper_waiting")
    : live && !state.chair_present
      ? t("chair_absent")
      : t("waiting");

  const floor = state.floor && !you.has_floor ? state.floor : null;
  byId("floor-tile").hidden = !(live && floor);
  byId("floor-caption").textContent = floor ? t("floor", { name: floor.name }) : "";
  byId("program").classList.toggle("program-two", Boolean(live && floor));

  if (you.has_floor) status(t("you_have_floor"), "good");
  else if (you.muted) status(t("you_muted"), "warn");
  else if (you.hand_raised) status(t("hand_raised_note"), "warn");
  else if (!live) status(t("waiting"));
  else if (upperLost) status(t("live")); // the banner says the rest; the meeting here goes on
  else if (!state.chair_present) status(t("chair_absent"), "warn");
  else status(t("live"));

  const hand = byId("btn-hand");
  hand.disabled = Boolean(you.has_floor);
  hand.textContent = you.hand_raised ? t("lower_hand") : t("raise_hand");
  hand.classList.toggle("is-raised", Boolean(you.hand_raised));
  hand.dataset.raised = you.hand_raised ? "1" : "0";

  showReception(you.receive);
  headCount.show(state);
  rollCall.show(state);
}

/** The receive mode picker and, below it, what arrives and how the line is judged. */
function showReception(receive) {
  if (!receive) return;
  const picker = byId("rx-mode");
  if (document.activeElement !== picker && !picker.disabled) picker.value = receive.mode;
  const tier = receive.tier || (receive.mode === "none" ? "none" : "audio");
  const tierText = t(`tier_${tier}`);
  const qualityText = t(`q_${receive.quality || "unknown"}`);
  byId("rx-status").textContent = t("rx_now", { tier: tierText, quality: qualityText });
  byId("rx-line").dataset.quality = receive.quality || "unknown";
}

async function main() {
  if (!window.RTCPeerConnection) {
    overlay(t("join_failed"), t("no_webrtc"));
    return;
  }
  const local = await new LocalMedia().open();
  showSelf(local);
  let connection = null;
  headCount = new HeadCount(() => connection, { onSaved: () => rollCall.show(connection.state) });
  rollCall = new RollCallPrompt(() => connection, () => headCount.count);
  const common = commonUi(() => connection);
  // Whatever ends this page's part in the meeting takes the dialogs away with it.
  const closing = (name) => (...args) => {
    headCount.close();
    byId("rc-prompt").hidden = true;
    common[name](...args);
  };
  connection = new LiveConnection({
    meetingId,
    local,
    maxBitrate: SITE_BITRATE,
    elements: {
      "chair.video": byId("chair-video"),
      "chair.audio": byId("chair-audio"),
      "floor.video": byId("floor-video"),
      "floor.audio": byId("floor-audio"),
    },
    ui: {
      ...common,
      ended: closing("ended"),
      replaced: closing("replaced"),
      sessionEnded: closing("sessionEnded"),
      fatal: closing("fatal"),
      joined() {},
      state: showState,
    },
  });
  wireDeviceButtons(connection, local);
  wireSoundButton();
  wireLeaveButton(connection);

  const picker = byId("rx-mode");
  picker.addEventListener("change", async () => {
    const ack = await busy(picker, () => connection.setReceiveMode(picker.value));
    if (!ack.ok) notice(t("action_failed", { message: errorText(ack) }), { transient: true });
  });

  const hand = byId("btn-hand");
  hand.addEventListener("click", async () => {
    const raised = hand.dataset.raised !== "1";
    const ack = await busy(hand, () => connection.request("raise_hand", { raised }));
    if (!ack.ok) notice(t("action_failed", { message: errorText(ack) }), { transient: true });
  });

  // For tests and troubleshooting in the browser console.
  exposeForTests(connection);
  connection.start();
}

main();

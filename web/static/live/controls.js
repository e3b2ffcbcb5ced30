// Buttons both pages have: microphone, camera, "turn on sound", leave.

import { byId } from "./dom.js";
import { t } from "./i18n.js";
import { resumeSound, whenSoundBlocked } from "./media.js";
import { notice } from "./screen.js";

export function wireDeviceButtons(connection, local) {
  const mic = byId("btn-mic");
  const cam = byId("btn-cam");
  const devices = { mic: true, cam: true };
  const render = () => {
    mic.textContent = devices.mic ? t("mic_off") : t("mic_on");
    cam.textContent = devices.cam ? t("cam_off") : t("cam_on");
    mic.setAttribute("aria-pressed", String(!devices.mic));
    cam.setAttribute("aria-pressed", String(!devices.cam));
    mic.classList.toggle("is-off", !devices.mic);
    cam.classList.toggle("is-off", !devices.cam);
    mic.disabled = !local.track("audio");
    cam.disabled = !local.track("video");
  };
  mic.addEventListener("click", () => {
    devices.mic = !devices.mic;
    connection.setDevices(devices.mic, devices.cam);
    render();
  });
  cam.addEventListener("click", () => {
    devices.cam = !devices.cam;
    connection.setDevices(devices.mic, devices.cam);
    render();
  });
  render();
}

export function wireSoundButton() {
  const button = byId("btn-sound");
  whenSoundBlocked((isBlocked) => {
    button.hidden = !isBlocked;
    if (isBlocked) notice(t("sound_blocked"));
    else notice("");
  });
  button.addEventListener("click", () => resumeSound());
}

export function wireLeaveButton(connection) {
  const link = byId("btn-leave");
  link.addEventListener("click", async (event) => {
    event.preventDefault();
    await connection.leave();
    window.location.assign(link.href);
  });
}

/** Show this site's own camera, muted, and say which device is missing. */
export function showSelf(local) {
  const video = byId("self-video");
  video.srcObject = local.stream;
  video.play().catch(() => {});
  if (local.problem) notice(t(local.problem));
}

// A roll call on a site's page: while the chair's roll call is open and this site has not
// answered, a large prompt at the top asks to confirm presence with the head count; after
// the answer it says when; when the chair closes the roll call, the prompt goes away.

import { busy, byId, hhmm } from "./dom.js";
import { errorText, t } from "./i18n.js";
import { readCount } from "./headcount.js";

export class RollCallPrompt {
  /** lastCount(): this site's last head count, or null. */
  constructor(getConnection, lastCount) {
    this.getConnection = getConnection;
    this.lastCount = lastCount;
    this.current = null; // the id of the roll call shown
    this.edited = false; // the operator typed a number: keep it over the head count
    this.answeredAt = new Map(); // roll call id -> when this page's answer was acknowledged
    byId("rc-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.answer();
    });
    byId("rc-count").addEventListener("input", () => {
      this.edited = true;
      this.error("");
    });
  }

  show(state) {
    const call = state.roll_call;
    const open = Boolean(call && call.open && state.status === "live");
    const prompt = byId("rc-prompt");
    prompt.hidden = !open;
    document.body.dataset.rollCall = open ? "open" : "none";
    if (!open) {
      this.current = null;
      return;
    }
    const fresh = call.id !== this.current;
    if (fresh) {
      this.current = call.id;
      this.edited = false;
      this.error("");
    }
    // The node's time of the answer (kept across a reload), else when this page sent it.
    const at = call.answered_at ? new Date(call.answered_at * 1000) : this.answeredAt.get(call.id);
    const answered = Boolean(call.answered || at);
    document.body.dataset.rollCall = answered ? "answered" : "open";
    prompt.classList.toggle("rc-answered", answered);
    byId("rc-title").textContent = t("rc_prompt", { number: call.number });
    byId("rc-form").hidden = answered;
    const done = byId("rc-done");
    done.hidden = !answered;
    // Answered in another window, or before this page was loaded: the node does not say when.
    done.textContent = at ? t("rc_done", { time: hhmm(at) }) : t("rc_done_no_time");
    if (answered) return;
    const last = this.lastCount();
    if (!this.edited) byId("rc-count").value = last === null ? "" : String(last);
    if (fresh) {
      prompt.scrollIntoView({ block: "nearest" });
      // Only into an idle page: never out of a field the operator is typing in.
      if (document.activeElement === document.body) byId("rc-present").focus();
    }
  }

  error(text) {
    const el = byId("rc-error");
    el.textContent = text;
    el.hidden = !text;
  }

  async answer() {
    const connection = this.getConnection();
    const id = this.current;
    const field = byId("rc-count");
    const { count, error } = readCount(field);
    if (error) {
      this.error(error);
      return field.focus();
    }
    this.error("");
    const ack = await busy(byId("rc-present"), () =>
      connection.request("roll_call_answer", { roll_call: id, count }),
    );
    if (!ack.ok) return this.error(errorText(ack));
    this.answeredAt.set(id, new Date());
    if (connection.state) this.show(connection.state);
  }
}

// Dialogs over a live page in its own style (never the browser's confirm(), which blocks the
// page's socket handling and cannot be styled or translated): the focus stays inside while
// one is open, Escape cancels it, and the focus goes back where it was.

import { h } from "./dom.js";

const FOCUSABLE = "button:not([disabled]), input:not([disabled]), summary, a[href], [tabindex]";

export class Modal {
  /** root: a hidden `.live-modal` element holding one `.modal-card`; onCancel: Escape. */
  constructor(root, { onCancel = null } = {}) {
    this.root = root;
    this.onCancel = onCancel;
    this.returnTo = null;
    root.addEventListener("keydown", (event) => this.onKey(event));
  }

  get isOpen() {
    return !this.root.hidden;
  }

  open(focus = null) {
    if (!this.isOpen) this.returnTo = document.activeElement;
    this.root.hidden = false;
    document.body.dataset.modal = "1";
    (focus || this.focusables()[0])?.focus();
  }

  close() {
    if (!this.isOpen) return;
    this.root.hidden = true;
    if (!document.querySelector(".live-modal:not([hidden])")) delete document.body.dataset.modal;
    if (this.returnTo && this.returnTo.isConnected) this.returnTo.focus?.();
    this.returnTo = null;
  }

  focusables() {
    return [...this.root.querySelectorAll(FOCUSABLE)].filter((el) => el.offsetParent !== null);
  }

  onKey(event) {
    if (event.key === "Escape" && this.onCancel) {
      event.preventDefault();
      this.onCancel();
    } else if (event.key === "Tab") {
      // Keep Tab inside the dialog: from the last element to the first, and back.
      const items = this.focusables();
      if (!items.length) return;
      const [first, last] = [items[0], items[items.length - 1]];
      if (event.shiftKey && document.activeElement === first) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && document.activeElement === last) {
        event.preventDefault();
        first.focus();
      }
    }
  }
}

/**
 * Ask a yes/no question; resolves true when `confirm` is pressed, false on `cancel` or Escape.
 * The safe answer (cancel) has the focus, so an Enter pressed by habit changes nothing.
 */
export function confirmModal({ id, title, text, confirm, cancel, danger = false }) {
  return new Promise((resolve) => {
    const done = (answer) => {
      modal.close();
      root.remove();
      resolve(answer);
    };
    const no = h("button", { type: "button", class: "btn btn-big", dataset: { answer: "no" }, onclick: () => done(false) }, cancel);
    const yes = h(
      "button",
      { type: "button", class: `btn btn-big ${danger ? "btn-danger-solid" : "btn-primary"}`, dataset: { answer: "yes" }, onclick: () => done(true) },
      confirm,
    );
    const root = h(
      "div",
      { class: "live-modal", id, hidden: true },
      h(
        "div",
        { class: "modal-card", role: "alertdialog", "aria-modal": "true", "aria-labelledby": `${id}-title`, "aria-describedby": `${id}-text` },
        h("h2", { id: `${id}-title` }, title),
        h("p", { id: `${id}-text`, class: "modal-text" }, text),
        h("div", { class: "actions" }, yes, no),
      ),
    );
    document.getElementById("live").append(root);
    const modal = new Modal(root, { onCancel: () => done(false) });
    modal.open(no);
  });
}

// A site's head count (số người dự): asked once on joining while the node has none for this
// site, shown on a line whose button asks again; the list of names and positions is optional.
// The question sits at the top of the page rather than over it: the operator may need to go
// and count, and the meeting's picture and buttons stay usable meanwhile.

import { busy, byId, h } from "./dom.js";
import { errorText, t } from "./i18n.js";

export const MAX_HEAD_COUNT = 100_000; // server/sockets/protocol.py MAX_HEAD_COUNT
const MAX_NAMES = 500;
const MAX_TEXT = 200;

/** The whole number typed in `input`: {count} or {error: text}. */
export function readCount(input) {
  const text = input.value.trim();
  if (!text && !input.validity.badInput) return { error: t("hc_required") };
  if (!/^\d+$/.test(text) || Number(text) > MAX_HEAD_COUNT) return { error: t("hc_range") };
  return { count: Number(text) };
}

export class HeadCount {
  /** onSaved(count): told after the node stored a new count. */
  constructor(getConnection, { onSaved = () => {} } = {}) {
    this.getConnection = getConnection;
    this.onSaved = onSaved;
    this.count = null; // as the node last said
    this.asked = false;
    this.names = []; // the list last sent, to start from when asked again
    this.root = byId("hc-dialog");
    this.root.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.close();
    });
    byId("hc-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    byId("hc-later").addEventListener("click", () => this.close());
    byId("hc-edit").addEventListener("click", () => this.open());
    byId("hc-count").addEventListener("input", () => this.error(""));
    byId("hc-add-row").addEventListener("click", () => {
      const row = this.addRow();
      row.querySelector("input").focus();
    });
    byId("hc-names").addEventListener("toggle", (event) => {
      if (event.currentTarget.open && !byId("hc-rows").children.length) this.addRow();
    });
  }

  show(state) {
    const you = state.you || {};
    this.count = you.head_count ?? null;
    const known = this.count !== null;
    byId("hc-text").textContent = known ? t("hc_line", { count: this.count }) : t("hc_none");
    byId("hc-edit").textContent = known ? t("hc_edit") : t("hc_enter");
    document.body.dataset.headCount = known ? String(this.count) : "";
    if (state.status === "ended") return this.close();
    if (!this.asked && !known) {
      this.asked = true;
      this.open();
    }
  }

  open() {
    const field = byId("hc-count");
    field.value = this.count === null ? "" : String(this.count);
    this.error("");
    const rows = byId("hc-rows");
    rows.replaceChildren();
    for (const person of this.names) this.addRow(person);
    byId("hc-names").open = this.names.length > 0;
    this.root.hidden = false;
    document.body.dataset.headCountAsked = "1";
    this.root.scrollIntoView({ block: "nearest" });
    field.focus();
  }

  close() {
    this.root.hidden = true;
    delete document.body.dataset.headCountAsked;
  }

  addRow(person = { name: "", position: "" }) {
    const rows = byId("hc-rows");
    const number = rows.children.length + 1;
    const row = h(
      "li",
      { class: "hc-row" },
      h("input", {
        type: "text",
        class: "hc-name",
        maxlength: MAX_TEXT,
        autocomplete: "off",
        placeholder: t("attendee_name"),
        "aria-label": `${t("attendee_name")} ${number}`,
      }),
      h("input", {
        type: "text",
        class: "hc-position",
        maxlength: MAX_TEXT,
        autocomplete: "off",
        placeholder: t("attendee_position"),
        "aria-label": `${t("attendee_position")} ${number}`,
      }),
      h("button", { type: "button", class: "btn hc-remove", onclick: () => row.remove() }, t("attendee_remove")),
    );
    row.querySelector(".hc-name").value = person.name;
    row.querySelector(".hc-position").value = person.position || "";
    rows.append(row);
    byId("hc-add-row").disabled = rows.children.length >= MAX_NAMES;
    return row;
  }

  /** The rows typed: {names} or {error}; a row left empty is skipped. */
  readNames() {
    const names = [];
    const rows = [...byId("hc-rows").children];
    for (const [i, row] of rows.entries()) {
      const name = row.querySelector(".hc-name").value.trim();
      const position = row.querySelector(".hc-position").value.trim();
      if (!name && !position) continue;
      if (!name) return { error: t("hc_name_missing", { row: i + 1 }), focus: row.querySelector(".hc-name") };
      names.push({ name, position });
    }
    if (names.length > MAX_NAMES) return { error: t("hc_too_many", { max: MAX_NAMES }) };
    return { names };
  }

  error(text) {
    const el = byId("hc-error");
    el.textContent = text;
    el.hidden = !text;
  }

  async submit() {
    const field = byId("hc-count");
    const { count, error } = readCount(field);
    if (error) {
      this.error(error);
      return field.focus();
    }
    const list = this.readNames();
    if (list.error) {
      this.error(list.error);
      return list.focus?.focus();
    }
    this.error("");
    const connection = this.getConnection();
    const ack = await busy(byId("hc-confirm"), () =>
      connection.request("head_count", { count, names: list.names }),
    );
    if (!ack.ok) return this.error(errorText(ack));
    this.names = list.names;
    this.count = count;
    this.close();
    if (connection.state) this.show({ ...connection.state, you: { ...connection.state.you, head_count: count } });
    this.onSaved(count);
  }
}

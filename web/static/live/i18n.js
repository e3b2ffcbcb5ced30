// Translated strings for the live pages: the server renders them into <script id="i18n">
// (a JSON block, never executed) in the user's language; keys are in server/http/live_pages.py.

const node = document.getElementById("i18n");
const strings = node ? JSON.parse(node.textContent || "{}") : {};
// On a Vietnamese page, the English of the few texts shown with an English second line.
const englishNode = document.getElementById("i18n-second");
const english = englishNode ? JSON.parse(englishNode.textContent || "{}") : {};

/** The string for `key`, with "{name}" marks replaced from `values`. */
export function t(key, values = {}) {
  let text = strings[key] ?? key;
  for (const [name, value] of Object.entries(values)) {
    text = text.replaceAll(`{${name}}`, String(value));
  }
  return text;
}

/** A readable message for a failed acknowledgement {ok:false, error, message}. */
export function errorText(ack) {
  const code = ack && ack.error;
  if (code && strings[`err_${code}`]) return strings[`err_${code}`];
  return (ack && ack.message) || String(code || "error");
}

/** The English second line for `key` on a Vietnamese page; "" otherwise. */
export function second(key) {
  return english[key] ?? "";
}

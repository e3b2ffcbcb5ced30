// Tiny DOM helpers: pages are built with textContent only, never innerHTML.

export const byId = (id) => document.getElementById(id);

/** h("li", {class: "site", dataset: {unit: "X"}}, "text", child) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Run an async action from a button, keeping it disabled until the action settles. */
export async function busy(button, action) {
  if (button) button.disabled = true;
  try {
    return await action();
  } finally {
    if (button && button.isConnected) button.disabled = false;
  }
}

/** "09:05": a time of day on this computer's clock, from seconds or a Date. */
export function hhmm(when) {
  const date = when instanceof Date ? when : new Date(when * 1000);
  const two = (n) => String(n).padStart(2, "0");
  return `${two(date.getHours())}:${two(date.getMinutes())}`;
}

// Small DOM helpers for the dashboard. Text always goes in as text nodes, never as HTML.

import { formatWhen } from "./i18n.js";

/** h("div", {class: "x", "data-testid": "y"}, "text", child) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value == null) continue;
    if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child == null || child === false) continue;
    el.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return el;
}

/** A message's time in the dashboard's language: the time of day today, else the date. */
export function timeOf(ts) {
  return formatWhen(ts);
}

export function randomId(prefix = "a") {
  return crypto.randomUUID ? crypto.randomUUID() : prefix + Date.now().toString(36) + Math.random().toString(36).slice(2);
}

// The dashboard's strings, dates and numbers in the agent's language.
// The tables come from lang-<language>.json, put in by the server (static.py) where the
// placeholder below stands: one table per language, keys like "agent.accept".

const TABLES = /*@STRINGS@*/{};
export const LANGUAGES = Object.keys(TABLES);
const FALLBACK = "en";
let current = FALLBACK;

/** The known language closest to `wanted` ("zh", "zh-Hans-CN" → "zh-CN"), or null. */
export function matchLanguage(wanted) {
  if (!wanted) return null;
  const lower = String(wanted).toLowerCase();
  const exact = LANGUAGES.find((l) => l.toLowerCase() === lower);
  if (exact) return exact;
  const base = lower.split("-")[0];
  return LANGUAGES.find((l) => l.toLowerCase().split("-")[0] === base) || null;
}

export function setLanguage(lang) {
  current = matchLanguage(lang) || FALLBACK;
  document.documentElement.lang = current;
  return current;
}

export function language() { return current; }

/** A language's own name ("English", "中文"), for a language switch. */
export function languageName(lang) {
  return (TABLES[lang] || {})["agent.lang.name"] || lang;
}

/** The text for `key` in the current language (English when it has none), with
 * `{name}` fields filled from `vars`. */
export function t(key, vars) {
  const text = (TABLES[current] || {})[key] ?? (TABLES[FALLBACK] || {})[key] ?? key;
  if (!vars) return text;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

/** Hours and minutes; in `timeZone` (an IANA name) when given, else the agent's own. */
export function formatTime(date, timeZone) {
  const d = date instanceof Date ? date : new Date(date);
  if (isNaN(d)) return "";
  try {
    return d.toLocaleTimeString(current, { hour: "2-digit", minute: "2-digit", ...(timeZone ? { timeZone } : {}) });
  } catch { return ""; } // a zone this browser does not know
}

export function formatDate(date) {
  const d = date instanceof Date ? date : new Date(date);
  return isNaN(d) ? "" : d.toLocaleDateString(current, { year: "numeric", month: "short", day: "numeric" });
}

export function formatNumber(n) {
  return new Intl.NumberFormat(current).format(n);
}

export function formatDateTime(date) {
  const d = date instanceof Date ? date : new Date(date);
  return isNaN(d) ? "" : d.toLocaleString(current, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** A message's time: the time of day today, else the date (month and day). */
export function formatWhen(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  if (isNaN(d)) return "";
  return d.toDateString() === new Date().toDateString()
    ? formatTime(d)
    : d.toLocaleDateString(current, { month: "short", day: "numeric" });
}

/** The first of `wanted` (e.g. navigator.languages) that is a known language, or null. */
export function firstKnown(wanted) {
  for (const lang of wanted || []) {
    const found = matchLanguage(lang);
    if (found) return found;
  }
  return null;
}

/** Fill the static text of a page from the table: `data-i18n="key"` sets the text,
 * `data-i18n-placeholder`, `data-i18n-aria-label` and `data-i18n-title` set those
 * attributes (CSP allows no inline script, so agent.html and index.html carry keys). */
export function translatePage(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const attr of ["placeholder", "aria-label", "title"]) {
    for (const el of root.querySelectorAll(`[data-i18n-${attr}]`)) el.setAttribute(attr, t(el.getAttribute(`data-i18n-${attr}`)));
  }
}

// What the dashboard and the chat page take from GET /api/v1/widget before they show:
// [web] title, logo_url, accent_color, default_language, show_embed_help.
// (The widget, a classic script on other sites, reads the same endpoint itself.)

const DEADLINE_MS = 4000;
const DEFAULTS = { title: "", logo_url: "", accent_color: "", default_language: "en", show_embed_help: false };

/** The settings, or the defaults when the server does not answer within the deadline. */
export async function loadSettings() {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), DEADLINE_MS);
  try {
    const response = await fetch("/api/v1/widget", { signal: abort.signal });
    if (!response.ok) return { ...DEFAULTS };
    return { ...DEFAULTS, ...(await response.json()) };
  } catch {
    return { ...DEFAULTS };
  } finally {
    clearTimeout(timer);
  }
}

/** The accent colour as the CSS variable `name` on the page, when it is #rgb / #rrggbb
 * (the server checks it; a CSSOM property, which the CSP allows, unlike a style attribute). */
export function applyAccent(settings, name) {
  if (/^#(?:[0-9a-f]{3}|[0-9a-f]{6})$/i.test(settings.accent_color || "")) {
    document.documentElement.style.setProperty(name, settings.accent_color);
  }
}

/** The logo as an <img> (alt: the title) before `el`'s text, when one is configured. */
export function showLogo(settings, el, className) {
  const old = el.querySelector("img." + className);
  if (old) old.remove();
  if (!settings.logo_url) return;
  const img = document.createElement("img");
  img.className = className;
  img.setAttribute("data-testid", "brand-logo");
  img.alt = "";
  img.src = settings.logo_url;
  el.prepend(img);
}

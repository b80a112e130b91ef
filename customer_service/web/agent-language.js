// The dashboard's language and branding. The language: the agent's choice (the switch in
// the top bar, remembered in localStorage), else [web] default_language. Switching reloads
// the page (the session is in sessionStorage and survives it): every module then builds
// its elements in the new language. Branding: [web] title, logo_url and accent_color.

import { h } from "./dom.js";
import { t, setLanguage, language, LANGUAGES, languageName, translatePage } from "./i18n.js";
import { loadSettings, applyAccent, showLogo } from "./branding.js";

const LANGUAGE_KEY = "cs-agent-language";

function saved() {
  try { return localStorage.getItem(LANGUAGE_KEY); } catch { return null; }
}

/** Called once by agent.js before anything is built: the language, the page's static
 * texts, the title and colours, and the switch. Resolves to the settings. */
export async function setupLanguage() {
  const settings = await loadSettings();
  setLanguage(saved() || settings.default_language);
  translatePage();
  applyAccent(settings, "--accent");
  const title = settings.title || t("agent.brand");
  document.title = t("agent.topbar.document_title", { title });
  const brand = document.querySelector("[data-testid=brand]");
  brand.querySelector("[data-testid=brand-title]").textContent = title;
  showLogo(settings, brand, "brand-logo");

  // the switch: in the top bar, and on the sign-in form (before anyone is signed in)
  document.querySelector(".topbar [data-testid=logout]").before(languageSelect("language-select"));
  document.querySelector("#login .login-foot").append(" ", languageSelect("login-language-select"));
  return settings;
}

function languageSelect(testid) {
  const select = h("select", { class: "language", "data-testid": testid, "aria-label": t("agent.lang.label"), title: t("agent.lang.label") },
    ...LANGUAGES.map((lang) => h("option", { value: lang, lang }, languageName(lang))));
  select.value = language();
  select.addEventListener("change", () => {
    try { localStorage.setItem(LANGUAGE_KEY, select.value); } catch { /* private mode: this page only */ }
    location.reload();
  });
  return select;
}

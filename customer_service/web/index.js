// The standalone chat page: its texts in the visitor's language (the browser's, else
// [web] default_language: the inline widget decides the same way), the branding from
// GET /api/v1/widget, and the embed snippet only with [web] show_embed_help = true.
import { t, setLanguage, firstKnown, translatePage } from "./i18n.js";
import { loadSettings, applyAccent, showLogo } from "./branding.js";

const settings = await loadSettings();
setLanguage(firstKnown(navigator.languages || [navigator.language]) || settings.default_language);
translatePage();
applyAccent(settings, "--accent");
const title = settings.title || t("page.header.heading");
document.title = title;
const heading = document.querySelector("[data-testid=page-title]");
heading.querySelector(".page-title").textContent = title;
showLogo(settings, heading, "page-logo");

if (settings.show_embed_help) {
  document.querySelector("[data-testid=embed-help]").hidden = false;
  document.querySelector("[data-testid=dashboard-link]").hidden = false;
  const snippet = document.querySelector("[data-testid=embed-snippet]");
  snippet.textContent = `<script src="${location.origin}/widget.js" async></script>`;

  const copy = document.getElementById("copy-snippet");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(snippet.textContent);
      copy.textContent = t("page.embed.copied");
    } catch {
      getSelection().selectAllChildren(snippet); // clipboard refused: select it for Ctrl+C
      copy.textContent = t("page.embed.press_ctrl_c");
    }
    setTimeout(() => { copy.textContent = t("page.embed.copy"); }, 2000);
  });
}

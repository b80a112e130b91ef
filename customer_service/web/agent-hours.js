// Leave-a-message in the dashboard: the email address a visitor left when nobody could
// answer (the conversation's "left_email", docs/agents.md), on the conversation's list
// item and above the open conversation's messages, as a mailto: link to write back.
// agent.js calls setupHours() once and the render helpers from its own renderers.

import { h } from "./dom.js";
import { t } from "./i18n.js";

const els = {};

/** The mailto: link of an address (encoded: the address is the visitor's text). */
function mailLink(email, testid) {
  return h("a", { href: "mailto:" + encodeURIComponent(email), "data-testid": testid, class: "left-email-link" }, email);
}

export function setupHours() {
  els.bar = h("div", { class: "left-email-bar", "data-testid": "left-email", hidden: true });
  // above the open conversation's messages (not in the context panel, which is beside it)
  document.getElementById("messages").before(els.bar);
}

/** The list item's line for a left address (null when none was left). */
export function leftEmailLine(conv) {
  if (!conv.left_email) return null;
  return h("div", { class: "item-left-email", "data-testid": "item-left-email", title: t("agent.hours.left_email_hint") },
    t("agent.hours.left_email_item", { email: conv.left_email }));
}

/** The open conversation's bar: the address to write back to. */
export function renderLeftEmail(conv) {
  if (!els.bar) return;
  const email = conv?.left_email || "";
  els.bar.hidden = !email;
  if (!email) { els.bar.replaceChildren(); return; }
  els.bar.replaceChildren(
    h("span", { class: "left-email-label" }, t("agent.hours.left_email_label")), " ",
    mailLink(email, "left-email-link"),
    h("span", { class: "left-email-hint" }, " · " + t("agent.hours.left_email_hint")));
}

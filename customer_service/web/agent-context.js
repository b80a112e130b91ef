// Visitor context beside the open conversation: who and where the visitor is (name and
// email, current page and the pages of this visit, referrer, browser and OS, time zone and
// local time, IP address), the visitor's earlier conversations as links, and, for an
// identified visitor, the contact's attributes and tags (the #profile block, which this
// panel holds). REST: GET /api/v1/conversations/{id}/context; live: the "page" frame.
// agent.js calls setupContext() once, then show(conv) from refreshView and onPage(frame).

import { h } from "./dom.js";
import { t, formatDate, formatTime, formatNumber } from "./i18n.js";

const TICK_MS = 15000;      // the visitor's local time, kept current
const REFETCH_MS = 1000;    // after the visitor comes back: their hello is written by then

/**
 * @param {{api: (path: string) => Promise<any>, open: (id: number) => void,
 *          profile: (contact: object|null) => void, toast: (text: string) => void}} app
 */
export function setupContext(app) {
  const panel = document.querySelector("#visitor-context");
  const list = document.querySelector("#context-list");
  panel.setAttribute("aria-label", t("agent.context.title"));
  let current = null;   // {id, online, data, ticker, refetch}

  function hide() {
    if (current) { clearInterval(current.ticker); clearTimeout(current.refetch); }
    current = null;
    panel.hidden = true;
    list.replaceChildren();
  }

  async function load(id) {
    try {
      const data = await app.api(`/api/v1/conversations/${id}/context`);
      if (current?.id !== id) return;
      current.data = data;
      render();
    } catch (err) {
      if (current?.id === id && err.message !== "unauthorized") app.toast(t("agent.context.loadFailed", { error: err.message }));
    }
  }

  const row = (label, field, ...value) => [h("dt", {}, label), h("dd", { "data-field": field }, ...value)];
  // Only an http(s) URL becomes a link (the server sends no other; a javascript: one must never).
  const link = (url, text) => /^https?:\/\//i.test(url)
    ? h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, text || url)
    : h("span", {}, text || url);
  const named = (part) => (!part || part.name === "unknown" ? t("agent.context.unknown") : [part.name, part.version].filter(Boolean).join(" "));

  function localTime() {
    return formatTime(new Date(), current?.data?.timezone) || t("agent.context.unknown");
  }

  function render() {
    const data = current?.data;
    if (!data) { list.replaceChildren(); return; }
    const children = [];
    if (data.name) children.push(...row(t("agent.context.name"), "name", data.name));
    if (data.email) children.push(...row(t("agent.context.email"), "email", data.email));
    if (data.page) children.push(...row(t("agent.context.page"), "page", link(data.page, data.title ? `${data.title} — ${data.page}` : data.page)));
    if (data.pages?.length) {
      const pages = h("ol", { class: "context-pages", "data-testid": "context-pages" },
        ...data.pages.map((p) => h("li", { "data-testid": "context-page", "data-url": p.url },
          h("span", { class: "context-when" }, formatTime(p.at)), " ", link(p.url, p.title || p.url))));
      children.push(...row(t("agent.context.pages", { count: formatNumber(data.pages.length) }), "pages", pages));
    }
    if (data.referrer) children.push(...row(t("agent.context.referrer"), "referrer", link(data.referrer)));
    if (data.user_agent) {
      children.push(...row(t("agent.context.browser"), "browser", named(data.browser)));
      children.push(...row(t("agent.context.os"), "os", named(data.os)));
      if (data.device && data.device !== "unknown") children.push(...row(t("agent.context.device"), "device", data.device));
    }
    if (data.timezone) {
      children.push(...row(t("agent.context.timezone"), "timezone", data.timezone));
      children.push(...row(t("agent.context.localTime"), "local-time", localTime()));
    }
    if (data.ip) children.push(...row(t("agent.context.ip"), "ip", data.ip));
    const earlier = h("ul", { class: "context-earlier", "data-testid": "context-earlier" },
      ...data.earlier.map((c) => {
        const open = h("button", { type: "button", class: "link-button", "data-testid": "earlier-conversation", "data-conversation-id": String(c.id) },
          t("agent.context.earlierItem", { id: c.id, status: statusText(c.status), date: formatDate(c.last_message_at || c.created_at) }));
        open.addEventListener("click", () => app.open(c.id));
        return h("li", {}, open);
      }));
    if (data.earlier_total > data.earlier.length) {
      earlier.append(h("li", { class: "context-more" }, t("agent.context.more", { count: formatNumber(data.earlier_total - data.earlier.length) })));
    }
    children.push(...row(t("agent.context.earlier", { count: formatNumber(data.earlier_total) }), "earlier",
      data.earlier.length ? earlier : t("agent.context.none")));
    list.replaceChildren(...children);
    clearInterval(current.ticker);
    if (data.timezone) {
      current.ticker = setInterval(() => {
        const el = list.querySelector('[data-field="local-time"]');
        if (el) el.textContent = localTime();
      }, TICK_MS);
    }
    // an anonymous conversation of a visitor who signed in later: the contact is the visitor's
    if (data.contact && !current.conv?.contact) app.profile(data.contact);
  }

  /** The open conversation changed, or changed state (null: none open). */
  function show(conv) {
    const id = conv?.conversation_id ?? null;
    if (id == null) { hide(); return; }
    panel.hidden = false;
    const online = Boolean(conv.visitor?.online);
    if (current?.id !== id) {
      hide();
      panel.hidden = false;
      current = { id, online, conv, data: null, ticker: null, refetch: null };
      load(id);
      return;
    }
    current.conv = conv;
    if (online && !current.online) { // came back: a new visit's facts, written in a moment
      clearTimeout(current.refetch);
      current.refetch = setTimeout(() => { if (current?.id === id) load(id); }, REFETCH_MS);
    }
    current.online = online;
    if (current.data && current.data.contact && !conv.contact) app.profile(current.data.contact);
  }

  /** A "page" frame: the visitor navigated (in any conversation this socket sees). */
  function onPage(frame) {
    const data = current?.id === frame.conversation_id ? current.data : null;
    if (!data) return;
    data.page = frame.url;
    data.title = frame.title || "";
    const pages = data.pages || (data.pages = []);
    if (pages[pages.length - 1]?.url === frame.url) pages[pages.length - 1].title = frame.title || pages[pages.length - 1].title;
    else pages.push({ url: frame.url, title: frame.title || "", at: frame.at });
    if (pages.length > 50) pages.splice(0, pages.length - 50);
    render();
  }

  return { show, onPage };
}

/** A conversation status in the agent's language. */
function statusText(status) {
  return t(`agent.context.status.${status}`);
}

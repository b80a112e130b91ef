// Full-text search in the dashboard: a box above the conversation list. Typing (debounced)
// asks GET /api/v1/search and shows the hits in place of the list, newest first, with the
// matched words marked; "More" fetches the next page. Clicking a hit opens its conversation
// and, when the message is among those loaded, scrolls to it. Escape (or ×) clears the
// search and brings the list back. Private notes are never searched (the server's rule).
// agent.js calls setupSearch() once.

import { h } from "./dom.js";
import { t, formatDate, formatTime } from "./i18n.js";

const DEBOUNCE_MS = 250;
const PAGE = 20;
const MAX_CHARS = 200;       // core/search.py MAX_QUERY_CHARS
const FIND_MESSAGE_MS = 5000; // how long a click waits for the message to be loaded

let app = null;   // {api, openConversation, state}
const els = {};
let timer = null;
let asked = 0;    // the number of the newest request: older answers are dropped
let shown = { query: "", next: null };
let composing = false; // an input method is composing (pinyin): wait for what it commits

/** The snippet as text nodes and <mark>s (ranges count code points, as Python does). */
function snippetNodes(snippet, highlights) {
  const chars = Array.from(snippet);
  const nodes = [];
  let at = 0;
  for (const [start, end] of highlights) {
    if (start < at || end <= start) continue;
    if (start > at) nodes.push(chars.slice(at, start).join(""));
    nodes.push(h("mark", {}, chars.slice(start, end).join("")));
    at = end;
  }
  if (at < chars.length) nodes.push(chars.slice(at).join(""));
  return nodes;
}

function whoOf(hit) {
  const visitor = hit.visitor_name || t("agent.search.unnamed", { id: hit.conversation_id });
  if (hit.kind === "visitor") return t("agent.search.visitorHit", { name: visitor });
  const sender = hit.sender_name || t(`agent.search.role.${hit.role}`);
  return hit.role === "visitor" ? sender : t("agent.search.inConversation", { sender, visitor });
}

function hitEl(hit) {
  const when = new Date(hit.created_at);
  const item = h("li", {
    class: "search-hit", "data-testid": "search-hit", tabindex: "0", role: "button",
    "data-conversation-id": String(hit.conversation_id), "data-kind": hit.kind,
  },
  h("div", { class: "search-hit-head" },
    h("span", { class: "search-hit-who" }, whoOf(hit)),
    h("time", { class: "search-hit-when", datetime: hit.created_at, title: when.toISOString() },
      `${formatDate(when)} ${formatTime(when)}`)),
  h("div", { class: "search-hit-snippet", "data-testid": "search-hit-snippet" },
    ...snippetNodes(hit.snippet, hit.highlights)));
  if (hit.seq) item.dataset.seq = String(hit.seq);
  const open = () => openHit(hit, item);
  item.addEventListener("click", open);
  item.addEventListener("keydown", (event) => { if (event.key === "Enter") { event.preventDefault(); open(); } });
  return item;
}

/** Open the hit's conversation; scroll to the message once it is on the page (when it
 * is older than the pages the view loads, the conversation opens and the agent scrolls). */
function openHit(hit, item) {
  for (const other of els.results.children) other.classList.toggle("active", other === item);
  app.openConversation(hit.conversation_id);
  if (!hit.seq) return;
  const until = Date.now() + FIND_MESSAGE_MS;
  const look = () => {
    if (app.state.view?.id !== hit.conversation_id) return; // the agent moved on
    const el = document.querySelector(`#message-list [data-seq="${hit.seq}"]`);
    if (el) {
      el.scrollIntoView({ block: "center" });
      el.classList.add("search-target");
      setTimeout(() => el.classList.remove("search-target"), 2000);
    } else if (Date.now() < until) {
      setTimeout(look, 100);
    }
  };
  look();
}

function setStatus(text) {
  els.status.textContent = text;
  els.status.hidden = !text;
}

function clearSearch() {
  clearTimeout(timer);
  asked += 1;
  shown = { query: "", next: null };
  els.input.value = "";
  els.clear.hidden = true;
  els.results.replaceChildren();
  els.more.hidden = true;
  setStatus("");
  els.sidebar.classList.remove("searching");
}

async function run(query, before) {
  const mine = ++asked;
  const params = new URLSearchParams({ q: query, limit: String(PAGE) });
  if (before) params.set("before", before);
  if (!before) setStatus(t("agent.search.searching"));
  els.more.disabled = true;
  try {
    const page = await app.api(`/api/v1/search?${params}`);
    if (mine !== asked) return;
    if (!before) els.results.replaceChildren();
    els.results.append(...page.hits.map(hitEl));
    shown = { query, next: page.next };
    els.more.hidden = !page.next;
    const count = els.results.children.length;
    setStatus(count ? "" : t("agent.search.none", { query }));
  } catch (err) {
    if (mine !== asked || err.message === "unauthorized") return;
    setStatus(t("agent.search.failed", { reason: err.message }));
  } finally {
    if (mine === asked) els.more.disabled = false;
  }
}

function onInput() {
  clearTimeout(timer);
  const query = els.input.value.trim().split(/\s+/).join(" ");
  els.clear.hidden = !els.input.value;
  if (!query) { clearSearch(); return; }
  els.sidebar.classList.add("searching");
  if (query === shown.query) return;
  timer = setTimeout(() => run(query), DEBOUNCE_MS);
}

export function setupSearch(hooks) {
  app = hooks;
  els.sidebar = document.querySelector(".sidebar");
  els.input = h("input", {
    type: "search", class: "search-input", "data-testid": "search-input", maxlength: String(MAX_CHARS),
    placeholder: t("agent.search.placeholder"), "aria-label": t("agent.search.aria"), autocomplete: "off",
  });
  els.clear = h("button", { type: "button", class: "link-button", "data-testid": "search-clear", "aria-label": t("agent.search.clear"), title: t("agent.search.clear"), hidden: true }, "×");
  els.status = h("p", { class: "search-status", "data-testid": "search-status", role: "status", hidden: true });
  els.results = h("ul", { class: "search-results", "data-testid": "search-results", "aria-label": t("agent.search.results") });
  els.more = h("button", { type: "button", class: "link-button search-more", "data-testid": "search-more", hidden: true }, t("agent.search.more"));
  const panel = h("div", { class: "search-panel" }, els.status, els.results, els.more);
  els.sidebar.prepend(h("div", { class: "search-box" }, els.input, els.clear), panel);
  els.input.addEventListener("input", () => { if (!composing) onInput(); });
  els.input.addEventListener("compositionstart", () => { composing = true; });
  els.input.addEventListener("compositionend", () => { composing = false; onInput(); });
  els.input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { event.preventDefault(); clearSearch(); }
    if (event.key === "Enter" && !event.isComposing) {
      event.preventDefault();
      clearTimeout(timer);
      const query = els.input.value.trim().split(/\s+/).join(" ");
      if (query) { els.sidebar.classList.add("searching"); run(query); }
    }
  });
  els.clear.addEventListener("click", () => { clearSearch(); els.input.focus(); });
  els.more.addEventListener("click", () => { if (shown.next) run(shown.query, shown.next); });
}

// The agent dashboard: login, the live conversation list and the conversation view.
// All data goes into the DOM with textContent / createElement (see dom.js).

import { h, timeOf, randomId } from "./dom.js";
import { t, formatNumber } from "./i18n.js";
import { setupLanguage } from "./agent-language.js";
import { setupNotify } from "./agent-notify.js";
import { AgentSocket } from "./agent-conn.js";
import { initLabels, labelChips, labelFilterAllows, renderViewLabels } from "./agent-labels.js";
import { setupNotes } from "./agent-notes.js";
import { setupCanned } from "./agent-canned.js";
import { mountBlocks, showBlocks } from "./agent-blocks.js";
import { setupStatus, statusSuffix } from "./agent-status.js";
import { leftEmailLine, renderLeftEmail, setupHours } from "./agent-hours.js";
import { setupSearch } from "./agent-search.js";
import { setupReports } from "./agent-reports.js";
import { setupContext } from "./agent-context.js";

// the language, the page's static texts and the branding first: everything below is built in them
await setupLanguage();

const TOKEN_KEY = "cs-agent-token";   // sessionStorage: one login per tab
const BASE_TITLE = document.title;
const PAGE = 50;
const $ = (selector) => document.querySelector(selector);

const els = {
  login: $("#login"), loginForm: $("[data-testid=login-form]"), loginError: $("[data-testid=login-error]"),
  username: $("[data-testid=login-username]"), password: $("[data-testid=login-password]"),
  loginSubmit: $("[data-testid=login-submit]"),
  app: $("#app"), agentName: $("[data-testid=agent-name]"), logout: $("[data-testid=logout]"),
  conn: $("[data-testid=connection-status]"),
  tabs: [...document.querySelectorAll(".tab")], list: $("#conversation-list"), listEmpty: $("#list-empty"),
  placeholder: $("#placeholder"), view: $("#view"), back: $("#back"),
  viewName: $("#view-name"), viewDetails: $("#view-details"), profile: $("#profile"),
  accept: $("#accept"), transfer: $("#transfer"), transferSelect: $("#transfer-select"),
  transferSubmit: $("#transfer-submit"), close: $("#close"),
  messages: $("#messages"), messageList: $("#message-list"), loadOlder: $("#load-older"),
  typing: $("#typing"), replyNote: $("#reply-note"), reply: $("#reply"), replyInput: $("#reply-input"),
  toast: $("[data-testid=toast]"),
};

const state = {
  token: null,
  me: null,
  socket: null,
  convs: new Map(),       // conversation_id -> conversation object
  items: new Map(),       // conversation_id -> list <li>
  tab: "waiting",
  agents: [],
  view: null,             // the open conversation's messages, see openConversation()
};

// ---- helpers ------------------------------------------------------------------------
function tabOf(conv) {
  if (conv.status === "open") return "waiting";
  if (conv.status === "closed") return "closed";
  return conv.assigned_to === state.me?.id ? "mine" : "others";
}
/** Open conversations show in Waiting only once the visitor has written (page views do not count);
 * a label filter shows only the conversations carrying that label. */
const isListed = (conv) => (conv.status !== "open" || conv.last_seq > 0) && labelFilterAllows(conv);
const isMine = (conv) => conv.status === "assigned" && conv.assigned_to === state.me?.id;
const visitorName = (conv) => conv.contact?.name || conv.visitor?.name || t("agent.unnamed.visitor", { id: conv.visitor?.id ?? conv.conversation_id });
const agentName = (id) => state.agents.find((a) => a.id === id)?.name || t("agent.unnamed.agent", { id });
const viewVisible = () => document.visibilityState === "visible";

let toastTimer = null;
function toast(text) {
  els.toast.textContent = text;
  els.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { els.toast.hidden = true; }, 5000);
}
// the error codes with a text of their own (agent.error.<code>); others show the server's message
const ERRORS = ["conflict", "forbidden", "too_large", "rate_limited", "not_found", "connection_lost", "not_connected"];
const errorText = (err) => (ERRORS.includes(err.code) ? t("agent.error." + err.code) : err.message || t("agent.error.generic"));
const notes = setupNotes({ state, els, toast, errorText }); // private notes: agent-notes.js
const agentStatus = setupStatus({ state, toast, errorText, renderTransferPicker }); // agent-status.js
const notify = setupNotify({ open: (id) => openConversation(id), toast }); // desktop notifications: agent-notify.js
mountBlocks({ token: () => state.token, toast, actions: $(".actions"), before: els.messages });
const reports = setupReports({ api, toast }); // the Reports page: agent-reports.js
const context = setupContext({ api, toast, open: (id) => openConversation(id), profile: renderProfile }); // agent-context.js

async function api(path) {
  const token = state.token; // a late 401 for an earlier session must not log out the next one
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  if (response.status === 401) {
    if (state.token === token) logout(t("agent.login.expired"));
    throw new Error("unauthorized");
  }
  if (!response.ok) throw new Error((await response.json().catch(() => ({}))).message || `HTTP ${response.status}`);
  return response.json();
}

// ---- sound: a short beep, only once the page has had a user gesture ------------------
let audio = null;
function unlockAudio() {
  if (audio) return;
  try { audio = new AudioContext(); } catch { audio = null; }
}
window.addEventListener("pointerdown", unlockAudio, { once: true, capture: true });
window.addEventListener("keydown", unlockAudio, { once: true, capture: true });
function beep() {
  if (!audio || audio.state === "closed") return;
  if (audio.state === "suspended") audio.resume();
  const osc = audio.createOscillator();
  const gain = audio.createGain();
  osc.frequency.value = 880;
  gain.gain.setValueAtTime(0.0001, audio.currentTime);
  gain.gain.exponentialRampToValueAtTime(0.2, audio.currentTime + 0.02);
  gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.25);
  osc.connect(gain).connect(audio.destination);
  osc.start();
  osc.stop(audio.currentTime + 0.3);
}

// ---- login / logout -------------------------------------------------------------------
function showLogin(message = "") {
  els.app.hidden = true;
  els.login.hidden = false;
  els.loginError.textContent = message;
  els.loginError.hidden = !message;
  els.loginSubmit.disabled = false;
  document.title = BASE_TITLE;
  els.username.focus();
}

els.loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  els.loginError.hidden = true;
  els.loginSubmit.disabled = true;
  try {
    const response = await fetch("/api/v1/login", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: els.username.value.trim(), password: els.password.value }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const retry = response.headers.get("Retry-After");
      const text = response.status === 401 ? t("agent.login.wrong")
        : response.status === 429
          ? (retry ? t("agent.login.throttled", { seconds: retry }) : t("agent.login.throttled_soon"))
          : body.message || t("agent.login.failed", { status: response.status });
      showLogin(text);
      return;
    }
    els.password.value = "";
    sessionStorage.setItem(TOKEN_KEY, body.token);
    startSession(body.token, body.agent);
  } catch {
    showLogin(t("agent.login.unreachable"));
  }
});

els.logout.addEventListener("click", () => {
  // Revoke the token on the server too, so a copy of it is worthless; best effort.
  if (state.token) {
    fetch("/api/v1/logout", { method: "POST", headers: { Authorization: `Bearer ${state.token}` } })
      .catch(() => {});
  }
  logout("");
});

function logout(message) {
  state.socket?.stop();
  state.socket = null;
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.me = null;
  state.convs.clear();
  state.items.clear();
  els.list.replaceChildren();
  closeView();
  reports.hide();
  showLogin(message);
}

async function startSession(token, agent) {
  state.token = token;
  if (!agent) {
    try { agent = await api("/api/v1/me"); } catch { if (!state.token) return; }
  }
  state.me = agent || null;
  els.agentName.textContent = agent ? agent.name || agent.username : "";
  els.login.hidden = true;
  els.app.hidden = false;
  loadAgents();
  state.socket = new AgentSocket(token, {
    state: setConnection,
    frame: onFrame,
    unauthorized: () => logout(t("agent.login.revoked")),
  });
  state.socket.start();
  renderList();
}

async function loadAgents() {
  try { state.agents = (await api("/api/v1/agents")).agents || []; } catch { return; }
  renderTransferPicker();
  renderList();
}

function setConnection(value) {
  els.conn.dataset.state = value;
  els.conn.textContent = ["connecting", "open", "reconnecting"].includes(value) ? t("agent.conn." + value) : value;
}

// ---- frames ------------------------------------------------------------------------
function onFrame(frame) {
  switch (frame.type) {
    case "welcome": onWelcome(frame); break;
    case "conversation": upsert(frame.conversation, true); renderList(); refreshView(); break;
    case "message": onMessage(frame); break;
    case "ai_delta": onDelta(frame); break;
    case "typing": onTyping(frame); break;
    case "read": onRead(frame); break;
    case "note": notes.onNote(frame); break;
    case "agent_status": agentStatus.onStatus(frame); break;
    case "page": context.onPage(frame); break;
    case "error": toast(errorText({ code: frame.error, message: frame.message })); break;
    default: break;
  }
}

function onWelcome(frame) {
  state.me = frame.agent;
  agentStatus.onWelcome(frame.agent);
  aiStreams.clear(); // their final messages come by history
  els.agentName.textContent = frame.agent.name || frame.agent.username;
  const closed = [...state.convs.values()].filter((c) => c.status === "closed");
  state.convs.clear();
  for (const conv of closed) state.convs.set(conv.conversation_id, conv);
  for (const conv of frame.conversations) upsert(conv, false);
  renderList();
  renderTransferPicker();
  if (state.view) { loadHistory(); refreshView(); } // fill what was missed while away
}

/** Waiting for an agent: open, with at least one message (page views alone do not count). */
const waitingWithMessages = (conv) => conv?.status === "open" && conv.last_seq > 0;

/** Store a conversation; beep when a new one starts waiting. */
function upsert(conv, live) {
  const before = state.convs.get(conv.conversation_id);
  // conversation events carry no last_message: keep the one we know
  if (!conv.last_message && before?.last_message) conv.last_message = before.last_message;
  // the welcome and the listing leave the contact out (undefined): keep the one we know
  if (conv.contact === undefined && before?.contact !== undefined) conv.contact = before.contact;
  // A reply only starts after a visitor message: if the newest message ended one, the
  // event's ai_streaming is stale (the needs_agent event is sent while it winds down).
  const last = conv.last_message;
  if (conv.ai_streaming && last && last.seq >= conv.last_seq && ["ai", "system"].includes(last.sender?.role)) {
    conv.ai_streaming = false;
  }
  state.convs.set(conv.conversation_id, conv);
  if (!conv.ai_streaming) {
    for (const [id, buffered] of aiStreams) if (buffered.conversationId === conv.conversation_id) aiStreams.delete(id);
  }
  if (live && waitingWithMessages(conv) && !waitingWithMessages(before)) {
    beep();
    notify.newConversation(conv.conversation_id, conv.last_seq, visitorName(conv), conv.last_message?.content);
  }
  if (state.view?.id === conv.conversation_id && conv.unread > 0) markRead();
}

function onMessage(frame) {
  const conv = state.convs.get(frame.conversation_id);
  if (conv) {
    if (frame.seq > conv.last_seq) {
      const started = conv.last_seq === 0 && conv.status === "open"; // a page view became a chat
      conv.last_seq = frame.seq;
      conv.last_message = frame;
      conv.updated_at = frame.ts || conv.updated_at;
      const mine = frame.sender?.role === "agent" && frame.sender?.id === state.me?.id;
      if (!mine) conv.unread = (conv.unread || 0) + 1;
      if (started) {
        beep();
        notify.newConversation(conv.conversation_id, frame.seq, visitorName(conv), frame.content);
      } else if (isMine(conv) && frame.sender?.role === "visitor") {
        notify.newMessage(conv.conversation_id, frame.seq, visitorName(conv), frame.content);
      }
    }
    if (frame.sender?.role === "ai" || frame.sender?.role === "system") conv.ai_streaming = false; // a reply ended
  }
  if (frame.stream_id) aiStreams.delete(frame.stream_id);
  if (state.view?.id === frame.conversation_id) {
    const near = nearBottom();
    addMessage(frame);
    if (frame.sender?.role === "visitor") hideTyping();
    scrollDown(near);
    markRead();
  }
  renderList();
}

// AI replies streaming now, in any conversation this socket follows: stream_id ->
// {conversationId, text}. Kept so that opening a conversation mid-reply shows all of it.
const aiStreams = new Map();

function onDelta(frame) {
  const conv = state.convs.get(frame.conversation_id);
  if (conv && !conv.ai_streaming) { conv.ai_streaming = true; renderList(); }
  let buffered = aiStreams.get(frame.stream_id);
  if (!buffered) {
    buffered = { conversationId: frame.conversation_id, text: "" };
    aiStreams.set(frame.stream_id, buffered);
  }
  buffered.text += frame.delta;
  const view = state.view;
  if (view?.id !== frame.conversation_id) return;
  const near = nearBottom();
  const live = view.streams.get(frame.stream_id);
  if (live) live.text.appendData(frame.delta);
  else showStream(frame.stream_id, buffered.text);
  scrollDown(near);
}

/** The growing element of a streaming AI reply in the open view. */
function showStream(streamId, text) {
  const view = state.view;
  if (view.finished.has(streamId) || view.streams.has(streamId)) return;
  const el = messageEl({ sender: { role: "ai", name: t("agent.message.assistant") }, content: "" });
  el.dataset.streaming = "true";
  el.dataset.streamId = streamId;
  const node = document.createTextNode(text);
  el.querySelector("[data-testid=message-text]").append(node);
  view.streams.set(streamId, { el, text: node });
  els.messageList.append(el);
}

let typingTimer = null;
function hideTyping() {
  els.typing.hidden = true;
  els.typing.textContent = "";
  clearTimeout(typingTimer);
}
function onTyping(frame) {
  if (state.view?.id !== frame.conversation_id) return;
  if (!frame.active) { hideTyping(); return; }
  const role = frame.sender?.role;
  const who = role === "visitor" ? t("agent.typing.visitor") : frame.sender?.name || t("agent.typing.someone");
  els.typing.textContent = t("agent.typing.active", { name: who });
  els.typing.hidden = false;
  clearTimeout(typingTimer);
  typingTimer = setTimeout(hideTyping, 8000); // in case "active: false" never comes
}

function onRead(frame) {
  const conv = state.convs.get(frame.conversation_id);
  if (frame.by === "agent" && conv) {
    conv.unread = Math.max(0, conv.last_seq - frame.seq);
    renderList();
  } else if (frame.by === "visitor" && state.view?.id === frame.conversation_id) {
    for (const [seq, el] of state.view.bySeq) {
      if (seq <= frame.seq && el.classList.contains("own")) el.dataset.read = "true";
    }
  }
}

// ---- the list -------------------------------------------------------------------------
function renderItem(conv) {
  let li = state.items.get(conv.conversation_id);
  if (!li) {
    li = h("li", { class: "item", "data-testid": "conversation-item", tabindex: "0", role: "button" });
    li.addEventListener("click", () => openConversation(conv.conversation_id));
    li.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openConversation(conv.conversation_id); } });
    state.items.set(conv.conversation_id, li);
  }
  li.dataset.conversationId = String(conv.conversation_id);
  li.dataset.status = conv.status;
  li.classList.toggle("selected", state.view?.id === conv.conversation_id);
  li.classList.toggle("needs-agent", Boolean(conv.needs_agent));
  const last = conv.last_message;
  const role = last?.sender?.role;
  const lastText = last ? (role === "visitor" || role === "system" ? ""
    : `${last.sender?.name || (role === "ai" ? t("agent.message.assistant") : role)}: `) + last.content : "";
  const unread = h("span", { class: "unread", "data-testid": "unread", hidden: !conv.unread }, formatNumber(conv.unread || 0));
  li.replaceChildren(...[
    h("div", { class: "item-top" },
      h("span", { class: "dot" + (conv.visitor?.online ? " online" : ""), title: t(conv.visitor?.online ? "agent.list.online" : "agent.list.offline") }),
      h("span", { class: "name", "data-testid": "visitor-name" }, visitorName(conv)),
      h("span", { class: "time" }, timeOf(conv.updated_at))),
    h("div", { class: "item-mid" },
      h("span", { class: "page", "data-testid": "visitor-page", title: conv.visitor?.page || "" }, conv.visitor?.page || ""),
      conv.needs_agent ? h("span", { class: "flag", "data-testid": "needs-agent" }, t("agent.list.needs_agent")) : null,
      conv.ai_streaming ? h("span", { class: "flag ai" }, t("agent.list.ai_replying")) : null),
    conv.status === "assigned" && !isMine(conv) ? h("div", { class: "assignee" }, t("agent.list.with", { name: agentName(conv.assigned_to) })) : null,
    labelChips(conv),
    leftEmailLine(conv),
    h("div", { class: "item-bottom" }, h("span", { class: "last", "data-testid": "last-message" }, lastText), unread),
  ].filter(Boolean));
  li.hidden = !isListed(conv) || tabOf(conv) !== state.tab;
  return li;
}

function renderList() {
  const time = (conv) => Date.parse(conv.updated_at) || 0;
  const sorted = [...state.convs.values()].sort((a, b) => time(b) - time(a) || b.conversation_id - a.conversation_id);
  const counts = { waiting: 0, mine: 0, others: 0, closed: 0 };
  let unreadMine = 0;
  let waitingNow = 0;
  let expected = els.list.firstElementChild;
  for (const conv of sorted) {
    if (isListed(conv)) counts[tabOf(conv)] += 1;
    if (waitingWithMessages(conv)) waitingNow += 1;
    if (isMine(conv)) unreadMine += conv.unread || 0;
    const li = renderItem(conv);
    // move only what is out of order: moving a node would take keyboard focus from it
    if (li === expected) expected = li.nextElementSibling;
    else els.list.insertBefore(li, expected);
  }
  for (const [id, li] of state.items) if (!state.convs.has(id)) { li.remove(); state.items.delete(id); }
  for (const tab of els.tabs) {
    tab.querySelector("[data-testid=count]").textContent = formatNumber(counts[tab.dataset.tab]);
    tab.setAttribute("aria-selected", String(tab.dataset.tab === state.tab));
  }
  els.listEmpty.hidden = counts[state.tab] > 0;
  const n = waitingNow + unreadMine;
  document.title = n > 0 ? `(${formatNumber(n)}) ${BASE_TITLE}` : BASE_TITLE;
}

for (const tab of els.tabs) {
  tab.addEventListener("click", () => {
    state.tab = tab.dataset.tab;
    renderList();
    if (state.tab === "closed") loadClosed();
  });
}

async function loadClosed() {
  try {
    const { conversations } = await api("/api/v1/conversations?status=closed&limit=200");
    for (const conv of conversations) {
      const known = state.convs.get(conv.conversation_id);
      if (!known || known.status === "closed") state.convs.set(conv.conversation_id, conv);
    }
    renderList();
  } catch (err) {
    if (state.token) toast(t("agent.list.closed_failed", { reason: err.message }));
  }
}

// ---- the conversation view ---------------------------------------------------------------
function messageEl(msg) {
  const role = msg.sender?.role || "system";
  const own = role === "agent" && msg.sender?.id === state.me?.id;
  const el = h("div", { class: `message ${role}${own ? " own" : ""}`, "data-testid": "message", "data-role": role });
  if (msg.seq) el.dataset.seq = String(msg.seq);
  if (msg.stream_id) el.dataset.streamId = msg.stream_id;
  if (role !== "system") {
    const name = role === "visitor" ? msg.sender?.name || t("agent.message.visitor") : msg.sender?.name || (role === "ai" ? t("agent.message.assistant") : role);
    const meta = h("div", { class: "meta", "data-seen": own ? t("agent.message.seen") : null }, h("span", { class: "sender" }, name), h("span", { class: "ts" }, timeOf(msg.ts)));
    if (msg.campaign_id) { // sent by a campaign, not typed by this sender: say so
      meta.append(h("span", { class: "campaign", "data-testid": "message-campaign", title: t("agent.message.campaign_title", { id: msg.campaign_id }) }, t("agent.message.campaign", { id: msg.campaign_id })));
    }
    el.append(meta);
  }
  el.append(h("div", { class: "text", "data-testid": "message-text" }, msg.content || ""));
  return el;
}

/** Insert el among the sequenced messages, before pending and streaming ones. */
function placeBySeq(el, seq) {
  let before = null;
  for (let node = els.messageList.lastElementChild; node; node = node.previousElementSibling) {
    if (node === el) continue;
    const s = Number(node.dataset.seq) || Number(node.dataset.after); // failed ones stay put
    if (!s || s > seq) before = node; else break;
  }
  els.messageList.insertBefore(el, before);
}

function addMessage(msg) {
  const view = state.view;
  if (view.bySeq.has(msg.seq)) return;
  if (msg.stream_id) {
    view.finished.add(msg.stream_id);
    view.streams.get(msg.stream_id)?.el.remove();
    view.streams.delete(msg.stream_id);
  }
  // Our own reply comes back (live or in history) before its ack: the oldest pending
  // element with that text is it, now sent; the ack then only confirms it.
  const mine = msg.sender?.role === "agent" && msg.sender?.id === state.me?.id;
  const own = mine ? [...view.outbox].find((item) => !item.seq && item.after < msg.seq && item.content === msg.content) : null;
  let el;
  if (own) {
    own.seq = msg.seq;
    el = own.el;
    delete el.dataset.pending;
    el.dataset.seq = String(msg.seq);
    el.querySelector(".ts").textContent = timeOf(msg.ts);
  } else {
    el = messageEl(msg);
  }
  view.bySeq.set(msg.seq, el);
  placeBySeq(el, msg.seq);
  if (view.oldest === null || msg.seq < view.oldest) view.oldest = msg.seq;
}

function nearBottom() {
  const m = els.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}
function scrollDown(force) {
  if (force) els.messages.scrollTop = els.messages.scrollHeight;
}

function openConversation(id) {
  if (state.view?.id === id) return;
  stopTyping();
  hideTyping();
  state.view = {
    id, bySeq: new Map(), streams: new Map(), finished: new Set(), oldest: null, hasMore: false, loading: false, readSent: 0,
    outbox: new Set(), // own replies not acked yet, oldest first: {content, el, after, seq}, see sendReply()
  };
  els.messageList.replaceChildren();
  els.replyInput.value = "";
  els.loadOlder.hidden = true;
  els.view.hidden = false;
  els.placeholder.hidden = true;
  document.body.classList.add("show-view");
  refreshView();
  renderList();
  loadHistory();
  loadAgents();
  loadContact(id);
}

/** The conversation with its contact's profile (the welcome and the list leave it out). */
async function loadContact(id) {
  try {
    const reply = await api(`/api/v1/conversations/${id}`);
    const known = state.convs.get(id);
    if (known) known.contact = reply.conversation.contact;
    else state.convs.set(id, reply.conversation);
    if (state.view?.id === id) {
      if (state.view.conv) state.view.conv.contact = reply.conversation.contact;
      refreshView();
    }
  } catch (err) {
    if (state.view?.id === id && err.message !== "unauthorized") toast(t("agent.view.profile_failed", { reason: errorText(err) }));
  }
}

/** The contact's profile block: who the site says this visitor is. */
function renderProfile(contact) {
  els.profile.hidden = !contact;
  if (!contact) { els.profile.replaceChildren(); return; }
  const rows = [["user_id", contact.external_id], ["name", contact.name], ["email", contact.email], ["phone", contact.phone]];
  const children = [];
  for (const [field, value] of rows) {
    if (value) children.push(h("dt", {}, t("agent.profile." + field)), h("dd", { "data-field": field }, value));
  }
  if (contact.tags?.length) {
    children.push(h("dt", {}, t("agent.profile.tags")), h("dd", { "data-field": "tags" }, ...contact.tags.map((tag) => h("span", { class: "tag" }, tag))));
  }
  for (const [key, value] of Object.entries(contact.attributes || {})) {
    children.push(h("dt", {}, key), h("dd", { "data-field": "attr" }, typeof value === "string" ? value : JSON.stringify(value)));
  }
  if (contact.unsubscribed) children.push(h("dt", {}, t("agent.profile.campaigns")), h("dd", { class: "unsubscribed", "data-field": "unsubscribed" }, t("agent.profile.unsubscribed")));
  els.profile.replaceChildren(...children);
}

function closeView() {
  stopTyping();
  hideTyping();
  state.view = null;
  showBlocks(null);
  context.show(null);
  els.view.hidden = true;
  els.placeholder.hidden = false;
  document.body.classList.remove("show-view");
  renderList();
}
els.back.addEventListener("click", closeView);

/** The newest page (before = undefined), or the page before the oldest held. */
async function loadHistory(before) {
  const view = state.view;
  if (!view || !state.socket) return;
  // A reload after a reconnect pages back until it meets the newest message held, so
  // that no gap stays when more than a page arrived while away.
  const reload = Boolean(view.loadedOnce && !before);
  const held = reload ? Math.max(0, ...[...view.bySeq.keys()].filter(Number.isFinite)) : 0;
  view.loading = true;
  try {
    const m = els.messages;
    let reply, height, top;
    for (let page = before; ;) {
      const frame = { type: "history", conversation_id: view.id, limit: PAGE };
      if (page) frame.before_seq = page;
      reply = await state.socket.request(frame);
      if (state.view !== view) return;
      height = m.scrollHeight;
      top = m.scrollTop;
      for (const msg of reply.messages) addMessage(msg);
      notes.received(view, reply.notes);
      const first = reply.messages[0]?.seq;
      if (!held || reply.messages.length < PAGE || !first || first <= held + 1) break;
      page = first;
    }
    for (const [streamId, buffered] of aiStreams) {
      if (buffered.conversationId === view.id) showStream(streamId, buffered.text);
    }
    if (!reload || !held) { // a reload that met what was held keeps what older pages said
      view.hasMore = reply.messages.length === PAGE && reply.messages[0]?.seq > 1;
      view.loadedOnce = true;
    }
    els.loadOlder.hidden = !view.hasMore;
    notes.place(view);
    if (before) m.scrollTop = m.scrollHeight - height + top; // keep what was on screen in place
    else scrollDown(true);
    markRead();
  } catch (err) {
    if (state.view === view) toast(t("agent.view.history_failed", { reason: errorText(err) }));
  } finally {
    view.loading = false;
  }
}

function loadOlder() {
  const view = state.view;
  if (view && view.hasMore && !view.loading && view.oldest) loadHistory(view.oldest);
}
els.loadOlder.addEventListener("click", loadOlder);
els.messages.addEventListener("scroll", () => { if (els.messages.scrollTop < 40) loadOlder(); });

function refreshView() {
  const view = state.view;
  if (!view) return;
  // not in the list (e.g. left out of a welcome): keep what was last known, invent nothing
  const conv = state.convs.get(view.id) || view.conv || { conversation_id: view.id, visitor: {} };
  view.conv = conv;
  els.view.dataset.conversationId = String(view.id);
  els.view.dataset.status = conv.status || "";
  els.viewName.textContent = visitorName(conv);
  const details = [
    { open: t("agent.view.status.open"), closed: t("agent.view.status.closed"),
      assigned: isMine(conv) ? t("agent.view.status.assigned_to_you") : t("agent.view.status.with", { name: agentName(conv.assigned_to) }) }[conv.status],
    t(conv.visitor?.online ? "agent.list.online" : "agent.list.offline"),
    conv.visitor?.email, conv.visitor?.page,
  ].filter(Boolean);
  els.viewDetails.textContent = details.join(" · ");
  renderProfile(conv.contact);
  renderViewLabels(conv);
  renderLeftEmail(conv);
  const mine = isMine(conv);
  els.accept.hidden = conv.status !== "open";
  els.transfer.hidden = !mine;
  els.close.hidden = !(mine || conv.status === "open");
  els.reply.hidden = !mine;
  els.replyNote.textContent = mine ? "" : conv.status === "open" ? t("agent.reply.accept_first")
    : conv.status === "closed" ? t("agent.reply.closed")
      : conv.status === "assigned" ? t("agent.reply.handled_by", { name: agentName(conv.assigned_to) }) : "";
  els.replyNote.hidden = mine;
  if (!mine) stopTyping();
  notes.refresh();
  showBlocks(conv);
  context.show(conv);
}

function markRead() {
  const view = state.view;
  const conv = view && state.convs.get(view.id);
  if (!conv || !viewVisible() || els.view.hidden) return;
  const seq = Math.max(conv.last_seq || 0, ...view.bySeq.keys());
  if (seq > view.readSent && state.socket?.send({ type: "read", conversation_id: view.id, seq })) view.readSent = seq;
  if (conv.unread) { conv.unread = 0; renderList(); }
}
document.addEventListener("visibilitychange", markRead);

function renderTransferPicker() {
  // Online agents first (on any server instance), then the others, each group by name.
  const others = state.agents.filter((a) => a.id !== state.me?.id && !a.disabled)
    .sort((a, b) => (b.online === true) - (a.online === true) || (a.name || a.username).localeCompare(b.name || b.username));
  els.transferSelect.replaceChildren(...others.map((a) => h("option", { value: String(a.id) },
    `${a.name || a.username}${statusSuffix(a)}`)));
  if (!others.length) els.transferSelect.append(h("option", { value: "", disabled: true }, t("agent.transfer.none")));
  els.transferSubmit.disabled = !others.length;
}

// ---- actions --------------------------------------------------------------------------------
async function act(frame, done) {
  try {
    await state.socket.request(frame);
    done?.();
  } catch (err) {
    toast(errorText(err));
  }
}

function locally(id, change) {
  const conv = state.convs.get(id);
  if (conv) Object.assign(conv, change);
  renderList();
  refreshView();
}

els.accept.addEventListener("click", () => {
  const id = state.view?.id;
  act({ type: "accept", conversation_id: id }, () => {
    locally(id, { status: "assigned", assigned_to: state.me.id, needs_agent: false });
    state.tab = "mine";
    renderList();
    els.replyInput.focus();
  });
});

els.transferSubmit.addEventListener("click", () => {
  const id = state.view?.id;
  const to = Number(els.transferSelect.value);
  if (!to) return;
  act({ type: "transfer", conversation_id: id, to_agent: to }, () => {
    locally(id, { assigned_to: to });
    toast(t("agent.transfer.done", { name: agentName(to) }));
  });
});

els.close.addEventListener("click", () => {
  const id = state.view?.id;
  act({ type: "close", conversation_id: id }, () => locally(id, { status: "closed" }));
});

// "/" at the start of the reply box: the canned replies (agent-canned.js)
setupCanned({ input: els.replyInput, api, context: () => ({ conv: state.convs.get(state.view?.id) || state.view?.conv, me: state.me, id: state.view?.id }) });
els.reply.addEventListener("submit", (event) => { event.preventDefault(); sendReply(); });
els.replyInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); sendReply(); }
});

function sendReply() {
  const view = state.view;
  const content = els.replyInput.value;
  if (!view || !content.trim()) return;
  if ([...content].length > 4000) { toast(t("agent.error.too_large")); return; }
  const id = randomId();
  const sender = { role: "agent", id: state.me?.id, name: state.me?.name };
  const el = messageEl({ sender, content, ts: new Date().toISOString() });
  el.dataset.pending = "true";
  els.messageList.append(el);
  // after: the newest seq known now (its echo comes later); seq: set once its echo came.
  const after = Math.max(state.convs.get(view.id)?.last_seq || 0, ...view.bySeq.keys());
  const item = { content, el, after, seq: 0 };
  view.outbox.add(item);
  els.replyInput.value = "";
  stopTyping();
  scrollDown(true);
  state.socket.request({ type: "text", conversation_id: view.id, content }, { resend: true, id }).then((ack) => {
    view.outbox.delete(item);
    if (state.view !== view || item.seq === ack.seq) return; // (its echo came first and took el)
    if (view.bySeq.has(ack.seq)) { if (!item.seq) el.remove(); return; } // shown already
    if (item.seq) { addMessage({ sender, content, seq: ack.seq, ts: ack.ts }); return; } // el went to an equal text
    delete el.dataset.pending;
    el.dataset.seq = String(ack.seq);
    view.bySeq.set(ack.seq, el);
    placeBySeq(el, ack.seq);
    markRead();
  }, (err) => {
    view.outbox.delete(item);
    if (item.seq) return; // its echo came: it is stored, whatever this resend met
    delete el.dataset.pending;
    el.dataset.failed = "true";
    el.dataset.after = String(Math.max(0, ...view.bySeq.keys()) + 0.5);
    toast(t("agent.reply.not_sent", { reason: errorText(err) }));
  });
}

// typing: "active: true" at most every 4 s while typing, "false" after 3 s idle
let typingActive = false;
let typingSentAt = 0;
let typingStop = null;
let typingConv = null;
els.replyInput.addEventListener("input", () => {
  const view = state.view;
  if (!view) return;
  if (!els.replyInput.value.trim()) { stopTyping(); return; }
  if (!typingActive || Date.now() - typingSentAt > 4000) {
    if (state.socket?.send({ type: "typing", conversation_id: view.id, active: true })) {
      typingActive = true; typingSentAt = Date.now(); typingConv = view.id;
    }
  }
  clearTimeout(typingStop);
  typingStop = setTimeout(stopTyping, 3000);
});
function stopTyping() {
  clearTimeout(typingStop);
  if (typingActive) state.socket?.send({ type: "typing", conversation_id: typingConv, active: false });
  typingActive = false;
}

// ---- start ---------------------------------------------------------------------------------
initLabels({ state, renderList, refreshView, toast, errorText });
setupHours();
setupSearch({ state, api, openConversation });
const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) startSession(saved, null);
else showLogin("");

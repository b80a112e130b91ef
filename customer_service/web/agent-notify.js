// Desktop notifications (the Notification API) for a new conversation in the queue and a
// visitor's message in one of mine, while this tab is hidden: besides the title badge and
// the beep, for an agent working in another window. A button in the top bar turns them on
// (the browser asks for the permission then, on that click, never on load) and off; the
// choice is remembered in localStorage. One notification per conversation: its tag is the
// conversation's, so a burst of messages updates one notification instead of piling up.
// A click on it brings the tab forward and opens the conversation.

import { h } from "./dom.js";
import { t, language } from "./i18n.js";

const KEY = "cs-agent-notify";
let ctx = null;              // {open(id), toast(text)}
let button = null;
const notified = new Map();  // conversation id -> the newest seq notified (a message, once)
const open = new Map();      // conversation id -> its notification on screen

const supported = () => typeof window.Notification === "function";
function wanted() {
  try { return localStorage.getItem(KEY) === "on"; } catch { return false; }
}
function remember(on) {
  try { localStorage.setItem(KEY, on ? "on" : "off"); } catch { /* private mode: this page only */ }
}
const active = () => supported() && Notification.permission === "granted" && wanted();

/** Called once by agent.js. ``open(id)`` opens a conversation; returns what agent.js calls
 * when a conversation starts waiting and when a visitor writes in one of mine. */
export function setupNotify({ open: openConversation, toast }) {
  ctx = { open: openConversation, toast };
  button = h("button", { type: "button", class: "link-button notify-toggle", "data-testid": "notify-toggle", title: t("agent.notify.toggle") });
  button.addEventListener("click", toggle);
  document.querySelector(".topbar [data-testid=logout]").before(button);
  render();
  // back in the tab: what the notifications said is on screen now
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    for (const note of open.values()) note.close();
    open.clear();
  });
  return {
    /** A conversation started waiting (its first message, seq). */
    newConversation: (id, seq, name, text) => show(id, seq, t("agent.notify.new_title", { name }), text),
    /** A visitor wrote in a conversation of mine. */
    newMessage: (id, seq, name, text) => show(id, seq, t("agent.notify.message_title", { name }), text),
  };
}

async function toggle() {
  if (!supported()) { ctx.toast(t("agent.notify.unsupported")); return; }
  if (active()) { remember(false); render(); return; }
  let permission = Notification.permission;
  if (permission === "default") {
    try { permission = await Notification.requestPermission(); } catch { permission = Notification.permission; }
  }
  remember(permission === "granted");
  if (permission === "denied") ctx.toast(t("agent.notify.blocked"));
  render();
}

function render() {
  const on = active();
  button.textContent = t(on ? "agent.notify.on" : "agent.notify.off");
  button.setAttribute("aria-pressed", String(on));
  button.dataset.state = on ? "on" : "off";
}

function show(id, seq, title, body) {
  if (!active() || document.visibilityState === "visible") return;
  if (seq && (notified.get(id) || 0) >= seq) return; // this message was announced already
  if (seq) notified.set(id, seq);
  let note;
  try {
    note = new Notification(title, { body: body || "", tag: `cs-conversation-${id}`, lang: language() });
  } catch {
    return; // e.g. a browser that allows them only from a service worker
  }
  open.set(id, note);
  note.addEventListener("click", () => {
    window.focus();
    note.close();
    ctx.open(id);
  });
  note.addEventListener("close", () => { if (open.get(id) === note) open.delete(id); });
}

// Private notes in the dashboard: a "Private note" tab beside "Reply" on the compose box,
// and the notes in the conversation's timeline. A note is never a message: the server
// keeps notes apart and sends them to agents only (docs/protocol.md, "Private notes").
// A note's after_seq places it: after that message, before the next.

import { h, timeOf } from "./dom.js";
import { t } from "./i18n.js";

// Every visible string of this module, from the language tables (agent.notes.*).
const S = {
  get replyTab() { return t("agent.notes.reply_tab"); },
  get noteTab() { return t("agent.notes.tab"); },
  get noteLabel() { return t("agent.notes.label"); },
  get placeholder() { return t("agent.notes.placeholder"); },
  get save() { return t("agent.notes.save"); },
  get tooLong() { return t("agent.notes.too_long"); },
  failed: (reason) => t("agent.notes.failed", { reason }),
};
const MAX_CHARS = 4000;

/**
 * @param {object} ctx  {state, els, toast, errorText}: the dashboard's state and elements
 * @returns {{onNote(frame), received(view, notes), place(view), refresh()}}
 */
export function setupNotes({ state, els, toast, errorText }) {
  let mode = "reply";
  let viewId = null;
  let saving = false;
  let shown = { reply: false, replyNote: true }; // what refreshView last decided for Reply

  const replyTab = h("button", { type: "button", role: "tab", class: "compose-tab", "data-testid": "compose-reply", "aria-selected": "true" }, S.replyTab);
  const noteTab = h("button", { type: "button", role: "tab", class: "compose-tab note", "data-testid": "compose-note", "aria-selected": "false" }, S.noteTab);
  const tabs = h("div", { class: "compose-tabs", role: "tablist" }, replyTab, noteTab);
  const input = h("textarea", { "data-testid": "note-input", rows: "2", maxlength: String(MAX_CHARS), placeholder: S.placeholder, "aria-label": S.noteTab });
  const send = h("button", { type: "submit", "data-testid": "note-send", class: "note-send" }, S.save);
  const form = h("form", { class: "reply note-form", "data-testid": "note-form", hidden: true }, input, send);
  els.replyNote.before(tabs);
  els.reply.after(form);

  function setMode(next) {
    mode = next;
    apply();
    (mode === "note" ? input : els.replyInput).focus();
  }
  replyTab.addEventListener("click", () => setMode("reply"));
  noteTab.addEventListener("click", () => setMode("note"));

  /** Called at the end of the dashboard's refreshView, which has just decided whether the
   * reply box or its explanation shows: note that, then apply the tab. */
  function refresh() {
    shown = { reply: !els.reply.hidden, replyNote: !els.replyNote.hidden };
    apply();
  }

  /** The Note tab shows the note form in place of the reply box (and its explanation). */
  function apply() {
    const view = state.view;
    if (view?.id !== viewId) { // another conversation: start again on Reply, empty
      viewId = view?.id ?? null;
      mode = "reply";
      input.value = "";
    }
    replyTab.setAttribute("aria-selected", String(mode === "reply"));
    noteTab.setAttribute("aria-selected", String(mode === "note"));
    form.hidden = mode !== "note";
    els.reply.hidden = mode === "note" || !shown.reply;
    els.replyNote.hidden = mode === "note" || !shown.replyNote;
  }

  function noteEl(note) {
    const own = note.sender?.id === state.me?.id;
    return h("div", {
      class: `message note${own ? " own" : ""}`, "data-testid": "note", "data-role": "note",
      "data-note-id": String(note.note_id), "data-after": String(note.after_seq + 0.5),
    },
    h("div", { class: "meta" },
      h("span", { class: "note-label", "data-testid": "note-label" }, S.noteLabel),
      h("span", { class: "sender" }, note.sender?.name || ""),
      h("span", { class: "ts" }, timeOf(note.ts))),
    h("div", { class: "text", "data-testid": "note-text" }, note.content || ""));
  }

  /** The view's notes by id: {note, el}; el joins the list once its place is loaded. */
  const notesOf = (view) => (view.notes ??= new Map());

  function add(view, note) {
    const notes = notesOf(view);
    if (!notes.has(note.note_id)) notes.set(note.note_id, { note, el: noteEl(note) });
  }

  /** Put each note after message after_seq (placeBySeq's rule: a node's key is its seq or
   * data-after; pending ones stay last). A note older than the messages loaded waits
   * until "Load older" brings its place. */
  function place(view) {
    if (!view || state.view !== view) return;
    const list = els.messageList;
    const sorted = [...notesOf(view).values()].sort((a, b) => a.note.note_id - b.note.note_id);
    for (const { note, el } of sorted) {
      if (el.isConnected) continue;
      const loaded = !view.hasMore || view.oldest === null || note.after_seq + 1 >= view.oldest;
      if (!loaded) continue;
      const key = note.after_seq + 0.5;
      let before = null;
      for (let node = list.lastElementChild; node; node = node.previousElementSibling) {
        const s = Number(node.dataset.seq) || Number(node.dataset.after);
        if (!s || s > key) before = node; else break;
      }
      list.insertBefore(el, before);
    }
  }

  /** The notes that came with a history page (the newest page only). */
  function received(view, notes) {
    if (!view || !notes) return;
    for (const note of notes) add(view, note);
  }

  /** A live note frame: shown when its conversation is open. */
  function onNote(frame) {
    const view = state.view;
    if (!view || view.id !== frame.conversation_id) return;
    const m = els.messages;
    const atBottom = m.scrollHeight - m.scrollTop - m.clientHeight < 80;
    add(view, frame);
    place(view);
    if (atBottom) m.scrollTop = m.scrollHeight;
  }

  async function save() {
    const view = state.view;
    const content = input.value;
    if (!view || saving || !content.trim()) return;
    if ([...content].length > MAX_CHARS) { toast(S.tooLong); return; }
    saving = true;
    send.disabled = true;
    try {
      // resend: a note lost with its socket is sent again with the same id, stored once
      await state.socket.request({ type: "note", conversation_id: view.id, content }, { resend: true });
      if (input.value === content) input.value = "";
    } catch (err) {
      toast(S.failed(errorText(err)));
    } finally {
      saving = false;
      send.disabled = false;
    }
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); save(); });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); save(); }
  });

  return { onNote, received, place, refresh };
}

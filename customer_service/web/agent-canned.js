// Canned replies in the reply box: "/" at the start of an empty box opens the team's
// snippets, filtered by what follows the "/" (shortcut first, then the text). Arrows move,
// Enter (or Tab, or a click) inserts the snippet with its {fields} filled for the open
// conversation, Escape closes the list and keeps what was typed.
// The fields and their syntax mirror customer_service/core/canned.py (render).

import { h } from "./dom.js";
import { t } from "./i18n.js";

// Every visible string of this module, from the language tables (agent.canned.*).
const STRINGS = {
  get label() { return t("agent.canned.label"); },
  get loading() { return t("agent.canned.loading"); },
  get none() { return t("agent.canned.none"); },
  noMatch: (query) => t("agent.canned.no_match", { query }),
  failed: (reason) => t("agent.canned.failed", { reason }),
  get hint() { return t("agent.canned.hint"); },
};
const SHOWN = 50; // options in the list at most (the filter narrows it)

/** ``text`` with its fields filled from ``values``: {name}, {name|fallback}, {{ and }}. */
export function renderCanned(text, values) {
  return text.replace(/\{\{|\}\}|\{([^{}]*)\}/g, (match, inner) => {
    if (match === "{{") return "{";
    if (match === "}}") return "}";
    const bar = inner.indexOf("|");
    const name = (bar < 0 ? inner : inner.slice(0, bar)).trim();
    const fallback = bar < 0 ? "" : inner.slice(bar + 1);
    return values[name] || fallback;
  });
}

/** The field values for a conversation as the dashboard knows it, and the agent. */
export function fieldValues(conv, me, conversationId) {
  const visitor = conv?.visitor || {};
  const contact = conv?.contact || {};
  return {
    "visitor.name": visitor.name || contact.name || "",
    "visitor.email": visitor.email || contact.email || "",
    "agent.name": me?.name || me?.username || "",
    "contact.name": contact.name || "",
    "contact.email": contact.email || "",
    "contact.phone": contact.phone || "",
    "contact.external_id": contact.external_id || "",
    "conversation.id": conversationId == null ? "" : String(conversationId),
  };
}

function matches(replies, query) {
  const q = query.toLowerCase();
  if (!q) return replies;
  const starts = replies.filter((r) => r.shortcut.startsWith(q));
  const inShortcut = replies.filter((r) => !r.shortcut.startsWith(q) && r.shortcut.includes(q));
  const inText = replies.filter((r) => !r.shortcut.includes(q) && r.text.toLowerCase().includes(q));
  return [...starts, ...inShortcut, ...inText];
}

/**
 * Wire the canned-reply list to ``input`` (the reply textarea, inside its form).
 * ``api(path)`` fetches JSON with the agent's token; ``context()`` returns
 * ``{conv, me, id}`` for the open conversation.
 */
export function setupCanned({ input, api, context }) {
  const form = input.form || input.parentElement;
  const list = h("ul", { class: "canned-list", id: "canned-list", role: "listbox", "data-testid": "canned-list",
    "aria-label": STRINGS.label });
  const note = h("p", { class: "canned-note", "data-testid": "canned-note", role: "status" });
  const hint = h("p", { class: "canned-hint" }, STRINGS.hint);
  const panel = h("div", { class: "canned", "data-testid": "canned" }, note, list, hint);
  panel.hidden = true;
  form.prepend(panel);
  input.setAttribute("aria-controls", "canned-list");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-expanded", "false");

  let replies = null;   // the last list fetched (null until the first answer)
  let loadError = "";
  let shown = [];       // the replies in the list now
  let active = 0;       // index into shown
  let dismissed = false; // Escape pressed: stay closed until the box no longer starts with "/"
  let insertWhenLoaded = false; // Enter pressed before the first list came
  let inserting = false;        // insert()'s own input event

  /** The filter while the box reads "/" and a word (no space): else null. */
  const query = () => {
    const found = /^\/(\S*)$/.exec(input.value);
    return found ? found[1] : null;
  };
  const isOpen = () => !panel.hidden;

  function close() {
    panel.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  async function load() {
    try {
      replies = (await api("/api/v1/canned")).canned || [];
      loadError = "";
    } catch (err) {
      loadError = err.message || String(err);
    }
    if (isOpen()) render();
    if (insertWhenLoaded && isOpen() && shown.length) insert(shown[active]);
    insertWhenLoaded = false;
  }

  function render() {
    const q = query();
    if (q === null || dismissed) { close(); return; }
    shown = replies ? matches(replies, q).slice(0, SHOWN) : [];
    active = Math.min(active, Math.max(shown.length - 1, 0));
    note.textContent = loadError && !replies ? STRINGS.failed(loadError)
      : !replies ? STRINGS.loading
        : !replies.length ? STRINGS.none
          : !shown.length ? STRINGS.noMatch(q) : "";
    note.hidden = !note.textContent;
    list.replaceChildren(...shown.map((reply, i) => {
      const item = h("li", {
        class: "canned-item", role: "option", id: `canned-option-${i}`, "data-testid": "canned-item",
        "data-shortcut": reply.shortcut, "aria-selected": i === active ? "true" : "false",
      }, h("span", { class: "canned-shortcut" }, `/${reply.shortcut}`), h("span", { class: "canned-text" }, reply.text));
      item.addEventListener("mousedown", (event) => event.preventDefault()); // keep the focus in the box
      item.addEventListener("click", () => insert(reply));
      return item;
    }));
    list.hidden = !shown.length;
    panel.hidden = false;
    input.setAttribute("aria-expanded", "true");
    if (shown.length) {
      input.setAttribute("aria-activedescendant", `canned-option-${active}`);
      list.children[active].scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function insert(reply) {
    const { conv, me, id } = context();
    input.value = renderCanned(reply.text, fieldValues(conv, me, id));
    close();
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
    dismissed = query() !== null; // a reply reading "/word": typing on does not reopen the list
    inserting = true;
    try { input.dispatchEvent(new Event("input", { bubbles: true })); } // the typing indicator, as if typed
    finally { inserting = false; }
  }

  input.addEventListener("input", () => {
    if (inserting) return;
    const q = query();
    if (q === null) { dismissed = false; close(); return; }
    if (dismissed) return;
    if (!isOpen()) { active = 0; load(); } // fresh on each opening: another agent may have added one
    else active = 0;
    render();
  });
  input.addEventListener("blur", close);
  input.addEventListener("focus", () => { if (!replies) load(); }, { once: true }); // ready before the first "/"

  // On the form, in the capture phase: before the box's own Enter-sends handler.
  form.addEventListener("keydown", (event) => {
    if (event.target !== input || !isOpen() || event.isComposing) return;
    const move = { ArrowDown: 1, ArrowUp: -1 }[event.key];
    if (move) {
      if (shown.length) { active = (active + move + shown.length) % shown.length; render(); }
    } else if (event.key === "Enter" || event.key === "Tab") {
      if (shown.length) insert(shown[active]);
      else if (!replies && !loadError) insertWhenLoaded = true; // typed faster than the list came
      else if (event.key === "Tab") return;
    } else if (event.key === "Escape") {
      dismissed = true;
      close();
    } else {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
  }, true);

  return { close, isOpen };
}

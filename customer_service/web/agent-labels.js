// Conversation labels in the dashboard: chips on the open conversation and in the list,
// an input to add one (Enter), × to remove one, and a label filter on the list.
// Changes go through REST (POST / DELETE /api/v1/conversations/{id}/labels/{label}); the
// server announces them to the other agents as a "conversation" frame carrying "labels".
// agent.js calls initLabels() once and the exported render helpers from its own renderers.

import { h } from "./dom.js";
import { t } from "./i18n.js";

// Every visible string of this module, from the language tables (agent.labels.*).
const TEXT = {
  get add() { return t("agent.labels.add"); },
  get addAria() { return t("agent.labels.add_aria"); },
  remove: (label) => t("agent.labels.remove", { label }),
  get filter() { return t("agent.labels.filter"); },
  get filterAria() { return t("agent.labels.filter_aria"); },
  get clear() { return t("agent.labels.clear"); },
  get unreachable() { return t("agent.labels.unreachable"); },
  failed: (reason) => t("agent.labels.failed", { reason }),
  loadFailed: (reason) => t("agent.labels.load_failed", { reason }),
};

let app = null;      // {state, renderList, refreshView, toast, errorText}
let filter = "";     // the label the list is filtered by ("": none)
const els = {};

/** The spelling the server stores (NFKC, trimmed, lower case), for matching in the page. */
const spelling = (text) => text.normalize("NFKC").trim().toLowerCase();

/** Whether the list's label filter lets this conversation show. */
export function labelFilterAllows(conv) {
  return !filter || (conv.labels || []).includes(filter);
}

/** The chips of a list item (null when it has no labels). */
export function labelChips(conv) {
  const labels = conv.labels || [];
  if (!labels.length) return null;
  return h("div", { class: "item-labels", "data-testid": "item-labels" },
    ...labels.map((label) => h("span", { class: "label-chip", "data-testid": "item-label", "data-label": label }, label)));
}

/** The open conversation's chips, each with ×, and the input that adds one. */
export function renderViewLabels(conv) {
  if (!els.bar) return;
  const labels = conv?.labels || [];
  els.chips.replaceChildren(...labels.map((label) => {
    const remove = h("button", { type: "button", class: "label-remove", "data-testid": "label-remove", "aria-label": TEXT.remove(label), title: TEXT.remove(label) }, "×");
    remove.addEventListener("click", () => change("DELETE", conv.conversation_id, label));
    return h("span", { class: "label-chip", "data-testid": "label", "data-label": label }, label, remove);
  }));
}

async function change(method, id, label) {
  const { state, toast, errorText } = app;
  try {
    const response = await fetch(`/api/v1/conversations/${id}/labels/${encodeURIComponent(label)}`, {
      method, headers: { Authorization: `Bearer ${state.token}` },
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      toast(TEXT.failed(errorText({ code: body.error, message: body.message || `HTTP ${response.status}` })));
      return false;
    }
    const conv = state.convs.get(id);
    if (conv) conv.labels = body.labels;
    if (state.view?.id === id && state.view.conv) state.view.conv.labels = body.labels;
    app.renderList();
    app.refreshView();
    return true;
  } catch {
    toast(TEXT.failed(TEXT.unreachable));
    return false;
  }
}

/** Labels known in the page, for the filter's suggestions. */
function suggest() {
  const known = new Set();
  for (const conv of app.state.convs.values()) for (const label of conv.labels || []) known.add(label);
  els.options.replaceChildren(...[...known].sort().map((label) => h("option", { value: label })));
}

/** Filter the list now with what is loaded, then ask the server for older ones too. */
async function applyFilter(value, fetchMore) {
  filter = spelling(value);
  els.clear.hidden = !filter;
  app.renderList();
  if (!filter || !fetchMore) return;
  const { state } = app;
  const wanted = filter;
  try {
    const response = await fetch(`/api/v1/conversations?limit=200&label=${encodeURIComponent(wanted)}`, {
      headers: { Authorization: `Bearer ${state.token}` },
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
    for (const conv of body.conversations) {
      const known = state.convs.get(conv.conversation_id);
      if (!known) state.convs.set(conv.conversation_id, conv);
      else known.labels = conv.labels;
    }
    if (filter === wanted) app.renderList();
  } catch (err) {
    if (state.token) app.toast(TEXT.loadFailed(err.message));
  }
}

export function initLabels(hooks) {
  app = hooks;
  // the view: chips and the input, under the conversation's header
  els.chips = h("span", { class: "label-chips", "data-testid": "labels" });
  els.input = h("input", { class: "label-input", "data-testid": "label-input", placeholder: TEXT.add, "aria-label": TEXT.addAria, maxlength: "64", autocomplete: "off" });
  els.bar = h("div", { class: "labels-bar", "data-testid": "labels-bar" }, els.chips, els.input);
  document.querySelector("#view .view-header").after(els.bar);
  els.input.addEventListener("keydown", async (event) => {
    if (event.key !== "Enter" || event.isComposing) return; // an IME composing Chinese uses Enter
    event.preventDefault();
    const id = app.state.view?.id;
    const value = els.input.value.trim();
    if (!id || !value) return;
    if (await change("POST", id, value) && app.state.view?.id === id) els.input.value = "";
  });
  // the list: a filter between the tabs and the list
  els.filter = h("input", { class: "label-filter-input", "data-testid": "label-filter", placeholder: TEXT.filter, "aria-label": TEXT.filterAria, list: "label-options", autocomplete: "off" });
  els.options = h("datalist", { id: "label-options" });
  els.clear = h("button", { type: "button", class: "link-button", "data-testid": "label-filter-clear", "aria-label": TEXT.clear, title: TEXT.clear, hidden: true }, "×");
  document.querySelector(".sidebar .tabs").after(h("div", { class: "label-filter" }, els.filter, els.clear, els.options));
  els.filter.addEventListener("focus", suggest);
  els.filter.addEventListener("input", () => applyFilter(els.filter.value, false));
  els.filter.addEventListener("change", () => applyFilter(els.filter.value, true));
  els.filter.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.isComposing) { event.preventDefault(); applyFilter(els.filter.value, true); }
    if (event.key === "Escape") { els.filter.value = ""; applyFilter("", false); }
  });
  els.clear.addEventListener("click", () => { els.filter.value = ""; applyFilter("", false); els.filter.focus(); });
}

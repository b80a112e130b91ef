// Blocking from the dashboard: a "Block visitor" action on the open conversation (the
// visitor, optionally the address it is connected from, for a chosen time, with a reason),
// and a banner saying the visitor is blocked, with "Unblock". REST: /api/v1/blocks.

import { h } from "./dom.js";
import { t, formatDateTime } from "./i18n.js";

// Every visible string of this module, from the language tables (agent.blocks.*).
const TEXT = {
  get blockButton() { return t("agent.blocks.button"); },
  get title() { return t("agent.blocks.title"); },
  get withAddress() { return t("agent.blocks.with_address"); },
  get noAddress() { return t("agent.blocks.no_address"); },
  get duration() { return t("agent.blocks.duration"); },
  get reason() { return t("agent.blocks.reason"); },
  get confirm() { return t("agent.blocks.confirm"); },
  get cancel() { return t("agent.blocks.cancel"); },
  get unblock() { return t("agent.blocks.unblock"); },
  get blocked() { return t("agent.blocks.blocked"); },
  until: (when) => t("agent.blocks.until", { when }),
  get forever() { return t("agent.blocks.forever"); },
  by: (name) => t("agent.blocks.by", { name }),
  network: (network) => t("agent.blocks.network", { network }),
  get done() { return t("agent.blocks.done"); },
  get lifted() { return t("agent.blocks.lifted"); },
  failed: (reason) => t("agent.blocks.failed", { reason }),
  liftFailed: (reason) => t("agent.blocks.lift_failed", { reason }),
};
// [duration sent, its label's key]
const DURATIONS = [["1h", "agent.blocks.duration.1h"], ["24h", "agent.blocks.duration.24h"], ["7d", "agent.blocks.duration.7d"],
  ["30d", "agent.blocks.duration.30d"], ["", "agent.blocks.duration.forever"]];

let ctx = null;        // { token(), toast(text), actions, before }
let current = null;    // { id, online } of the open conversation
let els = null;

/** Called once by agent.js: where the button and the banner go. */
export function mountBlocks({ token, toast, actions, before }) {
  ctx = { token, toast };
  const button = h("button", { type: "button", "data-testid": "block-visitor", class: "danger" }, TEXT.blockButton);
  const address = h("input", { type: "checkbox", "data-testid": "block-address" });
  const addressNote = h("span", { class: "block-note" }, TEXT.noAddress);
  const duration = h("select", { "data-testid": "block-duration", "aria-label": TEXT.duration },
    ...DURATIONS.map(([value, key]) => h("option", { value }, t(key))));
  duration.value = "7d";
  const reason = h("input", { type: "text", maxlength: "500", "data-testid": "block-reason", "aria-label": TEXT.reason, placeholder: TEXT.reason });
  const confirm = h("button", { type: "submit", class: "danger", "data-testid": "block-confirm" }, TEXT.confirm);
  const cancel = h("button", { type: "button", "data-testid": "block-cancel" }, TEXT.cancel);
  const form = h("form", { class: "block-form", "data-testid": "block-form", hidden: true },
    h("strong", {}, TEXT.title),
    h("label", {}, address, " ", TEXT.withAddress, " ", addressNote),
    h("label", {}, TEXT.duration, " ", duration),
    reason,
    h("span", { class: "block-buttons" }, confirm, cancel));
  const bannerText = h("span", { "data-testid": "blocked-text" });
  const unblock = h("button", { type: "button", class: "link-button", "data-testid": "unblock" }, TEXT.unblock);
  const banner = h("p", { class: "blocked-banner", "data-testid": "blocked-banner", role: "status", hidden: true }, bannerText, " ", unblock);
  actions.append(button);
  before.before(form, banner);
  els = { button, form, address, addressNote, duration, reason, confirm, banner, bannerText, unblock };

  button.addEventListener("click", () => {
    els.form.hidden = !els.form.hidden;
    if (!els.form.hidden) {
      address.checked = false;
      address.disabled = !current?.online;
      addressNote.hidden = Boolean(current?.online);
      reason.value = "";
      reason.focus();
    }
  });
  cancel.addEventListener("click", () => { els.form.hidden = true; });
  form.addEventListener("keydown", (event) => { if (event.key === "Escape") els.form.hidden = true; });
  form.addEventListener("submit", (event) => { event.preventDefault(); block(); });
  unblock.addEventListener("click", () => lift());
}

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${ctx.token()}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.message || `HTTP ${response.status}`);
  return data;
}

/** The open conversation changed (or its visitor came or went): show its blocks. */
export function showBlocks(conv) {
  if (!els) return;
  const id = conv?.conversation_id ?? null;
  const changed = current?.id !== id;
  current = id == null ? null : { id, online: Boolean(conv.visitor?.online), blocks: changed ? [] : current.blocks };
  if (!current) { els.banner.hidden = true; els.form.hidden = true; return; }
  if (!changed) return;
  els.form.hidden = true;
  render();
  load(id);
}

async function load(id) {
  try {
    const { blocks } = await call("GET", `/api/v1/blocks?conversation_id=${encodeURIComponent(id)}`);
    if (current?.id !== id) return;
    current.blocks = blocks;
    render();
  } catch (_) { /* the banner stays as it was; the next open retries */ }
}

function render() {
  const blocks = current?.blocks || [];
  els.banner.hidden = blocks.length === 0;
  els.button.hidden = blocks.length > 0;
  const root = document.querySelector("[data-testid=conversation-view]");
  if (root) root.toggleAttribute("data-blocked", blocks.length > 0);
  if (!blocks.length) return;
  const longest = blocks.find((b) => !b.expires_at) || blocks.reduce((a, b) => (a.expires_at > b.expires_at ? a : b));
  const parts = [TEXT.blocked, longest.expires_at ? TEXT.until(formatDateTime(longest.expires_at)) : TEXT.forever];
  if (longest.network) parts.push(TEXT.network(longest.network));
  if (longest.created_by) parts.push(TEXT.by(longest.created_by));
  els.bannerText.textContent = parts.join(" · ") + (longest.reason ? ` — ${longest.reason}` : "");
}

async function block() {
  const id = current?.id;
  if (id == null) return;
  const body = { conversation_id: id, reason: els.reason.value.trim() };
  if (els.address.checked) body.block_address = true;
  if (els.duration.value) body.duration = els.duration.value;
  els.confirm.disabled = true;
  try {
    const { block: made } = await call("POST", "/api/v1/blocks", body);
    els.form.hidden = true;
    ctx.toast(TEXT.done);
    if (current?.id === id) { current.blocks = [...current.blocks, made]; render(); }
  } catch (err) {
    ctx.toast(TEXT.failed(err.message));
  } finally {
    els.confirm.disabled = false;
  }
}

async function lift() {
  const id = current?.id;
  if (id == null) return;
  try {
    for (const b of current.blocks) await call("DELETE", `/api/v1/blocks/${b.id}`);
    ctx.toast(TEXT.lifted);
  } catch (err) {
    ctx.toast(TEXT.liftFailed(err.message));
  }
  if (current?.id === id) load(id);
}

// The agent's own status, a select in the top bar: online; away (keeps their conversations,
// gets no new ones from auto-assignment, can still accept by hand); offline (signed in,
// taking nothing). The server stores it on the agent's row ("status" frame → ack), so it
// survives reloads and reconnects: the welcome frame says what it is. Colleagues' statuses
// come as "agent_status" frames and show in the transfer list (statusSuffix).
// agent.js calls setupStatus() once and hands it the welcome and the agent_status frames.

import { h } from "./dom.js";
import { t } from "./i18n.js";

const STATUSES = ["online", "away", "offline"];

/**
 * Put the status select before the agent's name. ``ctx``: {state, toast, errorText,
 * renderTransferPicker}. Returns {onWelcome(agent), onStatus(frame)}.
 */
export function setupStatus(ctx) {
  const select = h("select", { class: "status-select", "data-testid": "status-select",
    "aria-label": t("agent.status.label"), title: t("agent.status.label") },
  ...STATUSES.map((status) => h("option", { value: status, "data-testid": `status-${status}` },
    t(`agent.status.${status}`))));
  select.disabled = true; // until the welcome says what it is
  document.querySelector("[data-testid=agent-name]").before(select);

  const show = (status) => {
    select.value = status;
    select.dataset.status = status;
  };

  select.addEventListener("change", async () => {
    const wanted = select.value;
    const before = ctx.state.me?.status || "online";
    show(wanted);
    select.disabled = true;
    try {
      await ctx.state.socket.request({ type: "status", status: wanted });
      if (ctx.state.me) ctx.state.me.status = wanted;
    } catch (err) {
      show(before);
      ctx.toast(t("agent.status.failed", { why: ctx.errorText(err) }));
    } finally {
      select.disabled = false;
    }
  });

  return {
    onWelcome(agent) {
      show(agent.status || "online");
      select.disabled = false;
    },
    onStatus(frame) {
      const colleague = ctx.state.agents.find((a) => a.id === frame.agent_id);
      if (colleague) colleague.status = frame.status;
      if (frame.agent_id === ctx.state.me?.id) { // the same agent in another tab
        ctx.state.me.status = frame.status;
        show(frame.status);
      }
      ctx.renderTransferPicker();
    },
  };
}

/** What the transfer list says after a colleague's name: signed in and their status, or
 * signed out ("" when not known). */
export function statusSuffix(agent) {
  if (agent.online === true) return t(`agent.status.suffix.${STATUSES.includes(agent.status) ? agent.status : "online"}`);
  if (agent.online === false) return t("agent.status.suffix.signed_out");
  return "";
}

// The Reports page of the dashboard: the "Reports" button in the top bar swaps the
// conversations for the report of a range (GET /api/v1/reports): date pickers (default
// the last 7 days, in the agent's own time zone), a group-by selector, the figures as
// cards, per-day bars (SVG, no chart library), the groups as a table, the campaigns, and
// a CSV download of what is shown. Figures: docs/reports.md. agent.js calls setupReports()
// once.

import { h } from "./dom.js";
import { t, formatNumber } from "./i18n.js";

const SVG = "http://www.w3.org/2000/svg";
const GROUPS = [["", "agent.reports.by.none"], ["day", "agent.reports.by.day"],
  ["agent", "agent.reports.by.agent"], ["label", "agent.reports.by.label"]];
const DAY_MS = 86400000;

let app = null;   // { api, toast }
const els = {};
let asked = 0;    // the newest request's number: older answers are dropped
let csvUrl = null;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) el.append(child);
  return el;
}

/** The agent's own zone ("Asia/Shanghai"); UTC when the browser does not say. */
function ownZone() {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch { return "UTC"; }
}

/** A local date as YYYY-MM-DD. */
function isoDay(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** "4 min 10 s" in the dashboard's language (core/reports.py format_duration mirrored). */
export function formatDuration(ms) {
  if (ms == null) return "-";
  if (ms < 10000) return t("agent.reports.dur.s", { s: (ms / 1000).toFixed(1) });
  const seconds = Math.floor((ms + 500) / 1000);
  const d = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (d) return hours ? t("agent.reports.dur.d_h", { d, h: hours }) : t("agent.reports.dur.d", { d });
  if (hours) return m ? t("agent.reports.dur.h_min", { h: hours, m }) : t("agent.reports.dur.h", { h: hours });
  if (m) return s ? t("agent.reports.dur.min_s", { m, s }) : t("agent.reports.dur.min", { m });
  return t("agent.reports.dur.s", { s: String(s) });
}

const pair = (d) => (d.count ? t("agent.reports.median_p90", { median: formatDuration(d.median_ms), p90: formatDuration(d.p90_ms) }) : "-");

function groupName(row, by) {
  if (row.name) return row.name;
  return t(by === "agent" ? "agent.reports.nobody" : "agent.reports.no_label");
}

function card(testid, title, value, detail) {
  return h("div", { class: "report-card", "data-testid": testid },
    h("div", { class: "report-card-title" }, title),
    h("div", { class: "report-card-value", "data-testid": "report-value" }, value),
    detail ? h("div", { class: "report-card-detail" }, detail) : null);
}

function cards(total) {
  const m = total.messages;
  const durationCard = (testid, title, d) => card(testid, title, d.count ? formatDuration(d.median_ms) : "-",
    d.count ? `${pair(d)} · ${t("agent.reports.measured", { count: formatNumber(d.count) })}` : t("agent.reports.measured", { count: "0" }));
  return [
    card("report-opened", t("agent.reports.card.opened"), formatNumber(total.opened)),
    card("report-closed", t("agent.reports.card.closed"), formatNumber(total.closed)),
    card("report-ai-resolved", t("agent.reports.card.ai_resolved"), formatNumber(total.ai_resolved)),
    durationCard("report-first-agent", t("agent.reports.card.first_agent"), total.first_response_agent),
    durationCard("report-first-ai", t("agent.reports.card.first_ai"), total.first_response_ai),
    durationCard("report-resolution", t("agent.reports.card.resolution"), total.resolution),
    card("report-messages", t("agent.reports.card.messages"), formatNumber(m.visitor + m.agent + m.ai + m.system),
      t("agent.reports.roles", { visitor: m.visitor, agent: m.agent, ai: m.ai, system: m.system })),
    card("report-ai-replies", t("agent.reports.card.ai_replies"), formatNumber(total.ai_replies)),
  ];
}

/** Conversations opened per local day: one bar each, scaled to the busiest day. */
function bars(days) {
  const most = Math.max(1, ...days.map((row) => row.opened));
  const width = 28;
  const height = 120;
  const chart = svg("svg", { class: "report-bars", "data-testid": "report-bars", role: "img",
    "aria-label": t("agent.reports.per_day"), viewBox: `0 0 ${Math.max(1, days.length) * width} ${height + 18}`,
    width: Math.max(1, days.length) * width, height: height + 18 });
  days.forEach((row, i) => {
    const barHeight = Math.round((row.opened / most) * height);
    const bar = svg("rect", { x: i * width + 4, y: height - barHeight, width: width - 8, height: barHeight,
      class: "report-bar", "data-testid": "report-bar", "data-day": row.key, "data-opened": row.opened },
    svg("title", {}, `${row.key}: ${formatNumber(row.opened)}`));
    const label = svg("text", { x: i * width + width / 2, y: height + 14, "text-anchor": "middle", class: "report-bar-label" });
    label.textContent = row.key.slice(8);
    chart.append(bar, label);
  });
  return chart;
}

function table(report) {
  const heads = ["agent.reports.col.group", "agent.reports.col.opened", "agent.reports.col.closed",
    "agent.reports.col.ai_resolved", "agent.reports.col.first_agent", "agent.reports.col.first_ai",
    "agent.reports.col.resolution", "agent.reports.col.messages"].map((key) => h("th", { scope: "col" }, t(key)));
  const roles = (m) => t("agent.reports.roles", { visitor: m.visitor, agent: m.agent, ai: m.ai, system: m.system });
  const line = (row, name, testid) => h("tr", { "data-testid": testid, "data-key": row.key },
    h("th", { scope: "row", title: name }, h("span", { class: "report-group-name" }, name)),
    h("td", {}, formatNumber(row.opened)), h("td", {}, formatNumber(row.closed)),
    h("td", {}, formatNumber(row.ai_resolved)), h("td", {}, pair(row.first_response_agent)),
    h("td", {}, pair(row.first_response_ai)), h("td", {}, pair(row.resolution)),
    h("td", {}, roles(row.messages)));
  return h("table", { class: "report-table", "data-testid": "report-table" },
    h("thead", {}, h("tr", {}, ...heads)),
    h("tbody", {}, ...report.rows.map((row) => line(row, groupName(row, report.by), "report-row")),
      line(report.total, t("agent.reports.total"), "report-total")));
}

function campaigns(list) {
  if (!list.length) return null;
  const heads = ["agent.reports.camp.name", "agent.reports.camp.sent", "agent.reports.camp.failed",
    "agent.reports.camp.skipped", "agent.reports.camp.replied"].map((key) => h("th", { scope: "col" }, t(key)));
  return h("section", { class: "report-campaigns", "data-testid": "report-campaigns" },
    h("h3", {}, t("agent.reports.campaigns")),
    h("table", { class: "report-table" }, h("thead", {}, h("tr", {}, ...heads)),
      h("tbody", {}, ...list.map((c) => h("tr", { "data-testid": "report-campaign" },
        h("th", { scope: "row" }, c.name), h("td", {}, formatNumber(c.sent)), h("td", {}, formatNumber(c.failed)),
        h("td", {}, formatNumber(c.skipped)), h("td", {}, formatNumber(c.replied)))))));
}

/** A CSV cell: quoted when needed (RFC 4180), a leading ' before what a spreadsheet would
 * run as a formula (core/export.py safe_cell). */
function cell(value) {
  let text = String(value ?? "");
  if (/^[=+\-@\t\r]/.test(text)) text = "'" + text;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function csvOf(report) {
  const seconds = (ms) => (ms == null ? "" : (ms / 1000).toFixed(3));
  const header = ["group", "name", "opened", "closed", "ai_resolved", "first_response_agent_count",
    "first_response_agent_median_s", "first_response_agent_p90_s", "first_response_ai_count",
    "first_response_ai_median_s", "first_response_ai_p90_s", "resolution_count", "resolution_median_s",
    "resolution_p90_s", "messages_visitor", "messages_agent", "messages_ai", "messages_system", "ai_replies"];
  const row = (f, group) => {
    const cells = [group, f.name, f.opened, f.closed, f.ai_resolved];
    for (const d of [f.first_response_agent, f.first_response_ai, f.resolution]) cells.push(d.count, seconds(d.median_ms), seconds(d.p90_ms));
    const m = f.messages;
    cells.push(m.visitor, m.agent, m.ai, m.system, f.ai_replies);
    return cells.map(cell).join(",");
  };
  return [header.join(","), ...report.rows.map((r) => row(r, r.key || "(none)")), row(report.total, "total")].join("\r\n") + "\r\n";
}

function setCsv(report) {
  if (csvUrl) URL.revokeObjectURL(csvUrl);
  csvUrl = URL.createObjectURL(new Blob([csvOf(report)], { type: "text/csv;charset=utf-8" }));
  els.csv.href = csvUrl;
  els.csv.download = `report-${els.since.value}-${els.until.value}${report.by ? "-by-" + report.by : ""}.csv`;
  els.csv.hidden = false;
}

async function load() {
  const number = ++asked;
  const since = els.since.value;
  const until = els.until.value;
  const by = els.by.value;
  if (!since || !until) return;
  if (until < since) {
    els.status.textContent = t("agent.reports.bad_range");
    els.status.hidden = false;
    return;
  }
  els.status.textContent = t("agent.reports.loading");
  els.status.hidden = false;
  const query = (group) => "/api/v1/reports?" + new URLSearchParams({ since, until, tz: ownZone(), ...(group ? { by: group } : {}) });
  try {
    const [report, perDay] = await Promise.all([app.api(query(by)), by === "day" ? null : app.api(query("day"))]);
    if (number !== asked) return;
    const days = (by === "day" ? report : perDay).rows;
    els.cards.replaceChildren(...cards(report.total));
    els.bars.replaceChildren(h("h3", {}, t("agent.reports.per_day")), bars(days));
    els.bars.scrollLeft = els.bars.scrollWidth; // a long range: the latest days in view
    els.groups.replaceChildren(table(report));
    els.campaigns.replaceChildren(...[campaigns(report.campaigns)].filter(Boolean));
    setCsv(report);
    els.status.hidden = true;
  } catch (err) {
    if (number !== asked) return;
    els.status.textContent = t("agent.reports.failed", { reason: err.message });
    els.status.hidden = false;
  }
}

function show(on) {
  els.page.hidden = !on;
  els.workspace.hidden = on;
  els.toggle.textContent = t(on ? "agent.reports.back" : "agent.reports.open");
  els.toggle.setAttribute("aria-pressed", on ? "true" : "false");
  if (on) load();
}

/** Called once by agent.js with its authenticated GET (`api`) and its `toast`. */
export function setupReports({ api, toast }) {
  app = { api, toast };
  els.workspace = document.querySelector(".workspace");
  els.toggle = h("button", { type: "button", class: "link-button", "data-testid": "reports-toggle", "aria-pressed": "false" },
    t("agent.reports.open"));
  document.querySelector(".topbar .spacer").after(els.toggle);
  const today = new Date();
  els.since = h("input", { type: "date", "data-testid": "reports-since", value: isoDay(new Date(today.getTime() - 6 * DAY_MS)) });
  els.until = h("input", { type: "date", "data-testid": "reports-until", value: isoDay(today) });
  els.by = h("select", { "data-testid": "reports-by" }, ...GROUPS.map(([value, key]) => h("option", { value }, t(key))));
  els.csv = h("a", { class: "report-csv", "data-testid": "reports-csv", hidden: true }, t("agent.reports.csv"));
  els.status = h("p", { class: "report-status", "data-testid": "reports-status", role: "status", hidden: true });
  els.cards = h("div", { class: "report-cards", "data-testid": "report-cards" });
  els.bars = h("section", { class: "report-days" });
  els.groups = h("section", { class: "report-groups" });
  els.campaigns = h("div");
  els.page = h("section", { class: "reports", "data-testid": "reports", hidden: true },
    h("form", { class: "report-controls" },
      h("label", {}, t("agent.reports.since"), " ", els.since),
      h("label", {}, t("agent.reports.until"), " ", els.until),
      h("label", {}, t("agent.reports.by"), " ", els.by),
      els.csv),
    els.status, els.cards, els.bars, els.groups, els.campaigns);
  els.workspace.after(els.page);
  for (const input of [els.since, els.until, els.by]) input.addEventListener("change", load);
  els.page.querySelector("form").addEventListener("submit", (event) => event.preventDefault());
  els.toggle.addEventListener("click", () => show(els.page.hidden));
  return { hide: () => show(false) };
}

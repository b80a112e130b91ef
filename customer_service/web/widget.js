/* customer-service chat widget.
 *
 * Embed with:
 *   <script src="https://chat.example.com/widget.js" data-title="Chat with us" async></script>
 *
 * Options (data attributes on the script tag):
 *   data-title   header text ([web] title)    data-name / data-email  visitor details
 *   data-color   accent colour (CSS colour)   data-open               start opened
 *   data-lang    "en" or "zh-CN"; default: the browser's languages, then [web] default_language
 *   data-inline  "#selector": render the panel inside that element, no bubble
 *   data-page    the page shown to agents; default: location.origin + location.pathname
 *                (the query and fragment are never sent: they may hold tokens). The
 *                referrer (origin + path too), the time zone and document.title go with it,
 *                and a single-page app's navigation (pushState, popstate, hashchange) is
 *                sent as a "page" frame (docs/agents.md, "Visitor context")
 *   data-lang    the language to show ("en", "zh-CN"); default: the browser's
 *   data-user-id / data-user-hash  the signed-in user's id on the site and its
 *                HMAC-SHA256 under [identity] secret, computed by the site's server
 *                (docs/identity.md): the visitor sees the same history on every device
 *
 * Everything lives in an open shadow root so the host page's CSS does not leak in.
 * Every piece of text from the network goes into the DOM through textContent.
 */
(function () {
  "use strict";

  const script = document.currentScript;
  if (!script || !script.src) return;

  const ORIGIN = new URL(script.src, location.href).origin;
  const WS_URL = ORIGIN.replace(/^http/, "ws") + "/ws/visitor";
  const SETTINGS_URL = ORIGIN + "/api/v1/widget";
  const KEY = "cs-widget:" + ORIGIN;
  const MAX_CHARS = 4000;
  const MAX_URL = 2048;         // a page or referrer longer than this is not sent
  const MAX_TITLE = 512;
  const PAGE_SETTLE_MS = 300;
  const opts = script.dataset;

  // ---- strings: one table per language (lang-<language>.json, put in by the server) ----
  const STRINGS = /*@STRINGS@*/{};
  const LANGS = Object.keys(STRINGS);
  function matchLang(wanted) {
    const lower = String(wanted || "").toLowerCase();
    if (!lower) return null;
    return LANGS.find((l) => l.toLowerCase() === lower)
      || LANGS.find((l) => l.toLowerCase().split("-")[0] === lower.split("-")[0]) || null;
  }
  // data-lang wins, then the browser's languages, then the server's default_language
  const ASKED_LANG = matchLang(opts.lang) || (navigator.languages || [navigator.language]).map(matchLang).find(Boolean);
  let LANG = ASKED_LANG || "en";
  /** The text for `key` in the widget's language (English when it has none), `{name}` filled from `vars`. */
  function t(key, vars) {
    const text = (STRINGS[LANG] || {})[key] ?? (STRINGS.en || {})[key] ?? key;
    return vars ? text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole)) : text;
  }

  // ---- what the server says before anyone writes: branding, default language ----------
  // (GET /api/v1/widget, public; the widget waits for it at most SETTINGS_DEADLINE_MS)
  const SETTINGS_DEADLINE_MS = 4000;
  let settings = {};
  const settingsReady = (async () => {
    const abort = typeof AbortController === "function" ? new AbortController() : null;
    const timer = setTimeout(() => { if (abort) abort.abort(); }, SETTINGS_DEADLINE_MS);
    try {
      const response = await fetch(ORIGIN + "/api/v1/widget", { credentials: "omit", signal: abort && abort.signal });
      if (response.ok) settings = await response.json();
    } catch (_) { /* unreachable now: the defaults, and the socket retries on its own */ }
    finally { clearTimeout(timer); }
    if (!ASKED_LANG) LANG = matchLang(settings.default_language) || "en";
  })();
  const begin = () => { settingsReady.then(start); };

  if (opts.inline && !document.querySelector(opts.inline) && document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", begin); // the container comes later in the page
  } else {
    begin();
  }

  function start() {
    const inlineTarget = opts.inline ? document.querySelector(opts.inline) : null;
    const INLINE = Boolean(inlineTarget);

    // ---- storage (may be unavailable: third-party contexts, private modes) ----
    const memory = {};
    const store = {
      get(name) {
        try { return localStorage.getItem(KEY + ":" + name); } catch (_) { return memory[name] || null; }
      },
      set(name, value) {
        try { localStorage.setItem(KEY + ":" + name, value); } catch (_) { memory[name] = value; }
      },
    };

    // ---- identity: who the site says is signed in ----
    const USER_ID = opts.userId && opts.userHash ? opts.userId : "";
    /** A visitor the server knows (a token held) or a signed-in user: they connect at once. */
    const known = () => Boolean(store.get("token") || USER_ID);
    // This browser's visitor belonged to another signed-in user (or the user signed out):
    // forget it, so that the next person at a shared computer does not see their chat.
    // (Anonymous → signed in keeps it: the conversation continues under the user's name.)
    if (store.get("uid") && store.get("uid") !== USER_ID) {
      store.set("token", "");
      store.set("conv", "");
      store.set("seen", "0");
      store.set("uid", "");
    }

    // ---- tiny DOM helper: attributes are set as attributes, children as text ----
    function h(tag, attrs, ...children) {
      const el = document.createElement(tag);
      for (const [k, v] of Object.entries(attrs || {})) {
        if (v === false || v == null) continue;
        if (k === "class") el.className = v;
        else el.setAttribute(k, v === true ? "" : String(v));
      }
      for (const child of children) {
        if (child == null) continue;
        el.append(typeof child === "string" ? document.createTextNode(child) : child);
      }
      return el;
    }

    function randomId() {
      if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
      return "v" + Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
    }

    function timeOf(ts) {
      const d = ts ? new Date(ts) : new Date();
      return isNaN(d) ? "" : d.toLocaleTimeString(LANG, { hour: "2-digit", minute: "2-digit" });
    }

    // ---- build the UI -----------------------------------------------------------
    const host = h("div", { class: "cs-widget-host", "data-cs-widget": "" });
    host.style.display = "none"; // shown once the stylesheet has loaded
    const shadow = host.attachShadow({ mode: "open" });
    const link = h("link", { rel: "stylesheet", href: ORIGIN + "/static/widget.css" });
    const reveal = () => { host.style.display = ""; };
    link.addEventListener("load", reveal);
    link.addEventListener("error", reveal);

    const root = h("div", { class: "cs-root" + (INLINE ? " cs-inline" : " cs-floating"), "data-state": "connecting" });
    root.setAttribute("lang", LANG);
    const accent = opts.color || (/^#(?:[0-9a-f]{3}|[0-9a-f]{6})$/i.test(settings.accent_color || "") ? settings.accent_color : "");
    if (accent) root.style.setProperty("--cs-accent", accent);
    const TITLE = opts.title || settings.title || t("widget.header.title");
    let logoUrl = "";
    try { logoUrl = settings.logo_url ? new URL(settings.logo_url, ORIGIN + "/").href : ""; } catch (_) { logoUrl = ""; }
    const logo = /^https?:/.test(logoUrl) ? h("img", { class: "cs-logo", "data-testid": "cs-logo", src: logoUrl, alt: "" }) : null;

    const bubbleBadge = h("span", { class: "cs-bubble-badge", hidden: true });
    const bubble = INLINE ? null : h("button", {
      type: "button", class: "cs-bubble", "data-testid": "cs-bubble",
      "aria-label": t("widget.bubble.open"), "aria-expanded": "false",
    }, h("span", { class: "cs-bubble-icon", "aria-hidden": "true" }), bubbleBadge);

    const status = h("div", { class: "cs-status", "data-testid": "cs-status", role: "status" }, t("widget.status.connecting"));
    const closeBtn = INLINE ? null : h("button", { type: "button", class: "cs-close", "aria-label": t("widget.bubble.close") }, "×");
    const teamLine = h("div", { class: "cs-availability", "data-testid": "cs-availability", hidden: true });
    const messages = h("div", { class: "cs-messages", "data-testid": "cs-messages", role: "log", "aria-live": "polite", "data-empty": t("widget.messages.empty") });
    const typing = h("div", { class: "cs-typing", "data-testid": "cs-typing", hidden: true });
    const errorBox = h("div", { class: "cs-error", "data-testid": "cs-error", role: "alert", hidden: true });
    const input = h("textarea", {
      class: "cs-input", "data-testid": "cs-input", rows: "1", maxlength: String(MAX_CHARS),
      placeholder: t("widget.input.placeholder"), "aria-label": t("widget.input.label"),
    });
    const send = h("button", { type: "submit", class: "cs-send", "data-testid": "cs-send", "aria-label": t("widget.input.send") }, t("widget.input.send"));
    const form = h("form", { class: "cs-form" }, input, send);
    const panel = h("div", {
      class: "cs-panel", "data-testid": "cs-panel", role: INLINE ? "region" : "dialog",
      "aria-label": opts.title || settings.title || t("widget.panel.label"), "data-state": "connecting", hidden: !INLINE,
    },
      h("div", { class: "cs-header" }, logo,
        h("div", { class: "cs-heading" }, h("div", { class: "cs-title", "data-testid": "cs-title" }, TITLE), status, teamLine),
        closeBtn),
      messages, typing, errorBox, form);

    root.append(panel);
    if (bubble) root.append(bubble);
    shadow.append(link, root);

    function mount() {
      (inlineTarget || document.body).append(host);
    }
    if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);

    // ---- state --------------------------------------------------------------------
    let ws = null;
    let state = "connecting";     // idle (a first-time visitor, before their first message) | connecting | open | reconnecting | closed
    let everConnected = false;
    let attempt = 0;
    let retryTimer = null;
    let pingTimer = null;
    let pongTimer = null;
    let highestSeq = 0;           // highest seq held
    let agentReadSeq = 0;         // highest seq the agent has read
    let readSent = 0;
    let unseen = 0;               // agent/ai messages while the panel is closed
    let seenSeq = Number(store.get("seen")) || 0; // newest seq shown with the panel open (any page)
    let isOpen = INLINE;
    let refused = false;          // the server refused the identity: do not reconnect
    const bySeq = new Map();      // seq -> element
    const loadedAt = location.href; // data-page describes this URL (see currentPage)
    let lastPage = "";            // the page and title the server last heard of
    let lastTitle = "";
    let pageTimer = null;
    const outbox = new Map();     // unacked own texts, oldest first: client id -> {content, el, after, seq}
                                  // (after: highestSeq when sent; seq: set when its echo came before the ack)
    const streams = new Map();    // stream_id -> {el, text}
    const finishedStreams = new Set();
    let hours = null;             // business hours, availability, leave-a-message, pre-chat form (below)

    function setState(next) {
      state = next;
      root.setAttribute("data-state", next);
      panel.setAttribute("data-state", next);
      status.textContent = t("widget.status." + next);
    }

    // ---- messages --------------------------------------------------------------------
    function nearBottom() {
      return messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;
    }
    function scrollDown(force) {
      if (force || nearBottom()) messages.scrollTop = messages.scrollHeight;
    }

    /** Insert el among the sequenced messages, before any pending or streaming ones. */
    function placeBySeq(el, seq) {
      let before = null;
      for (let node = messages.lastElementChild; node; node = node.previousElementSibling) {
        if (node === el) continue;
        const s = Number(node.getAttribute("data-seq")) || Number(node.getAttribute("data-after")); // failed ones stay put
        if (!s || s > seq) before = node; else break;
      }
      messages.insertBefore(el, before);
    }

    function messageEl(role, name, content) {
      const textEl = h("div", { class: "cs-text", "data-testid": "cs-text" }, content);
      const el = h("div", { class: "cs-message cs-" + role, "data-testid": "cs-message", "data-role": role });
      if (role === "agent" || role === "ai") el.append(h("div", { class: "cs-sender" }, name || t(role === "ai" ? "widget.sender.ai" : "widget.sender.agent")));
      el.append(textEl);
      if (role !== "system") el.append(h("div", { class: "cs-meta" }));
      return el;
    }

    function setMeta(el, ts) {
      const meta = el.querySelector(".cs-meta");
      if (!meta) return;
      let text = timeOf(ts);
      if (el.getAttribute("data-role") === "visitor") {
        if (el.hasAttribute("data-failed")) text = el.getAttribute("data-failed");
        else if (el.getAttribute("data-pending") === "true") text = t("widget.meta.sending");
        else if (el.getAttribute("data-read") === "true") text += " · " + t("widget.meta.read");
      }
      meta.textContent = text;
      if (ts) el.setAttribute("data-ts", ts);
    }

    function assignSeq(el, seq, ts) {
      el.setAttribute("data-seq", String(seq));
      el.removeAttribute("data-pending");
      bySeq.set(seq, el);
      if (seq > highestSeq) highestSeq = seq;
      if (el.getAttribute("data-role") === "visitor" && seq <= agentReadSeq) el.setAttribute("data-read", "true");
      setMeta(el, ts);
    }

    /** The oldest own text still pending with exactly this content, sent before seq came. */
    function pendingWith(content, seq) {
      for (const item of outbox.values()) if (!item.seq && item.after < seq && item.content === content) return item;
      return null;
    }

    function onMessage(frame) {
      const seq = frame.seq;
      if (bySeq.has(seq)) return; // already shown (our own acked text, or a replay)
      const role = frame.sender && frame.sender.role || "system";
      const name = frame.sender && frame.sender.name || "";
      const wasNear = nearBottom();
      // Our own text comes back before its ack: that is the pending element, now sent.
      const own = role === "visitor" ? pendingWith(frame.content, seq) : null;
      if (own) own.seq = seq;
      const el = own ? own.el : messageEl(role, name, frame.content);
      if (frame.stream_id) {
        el.setAttribute("data-stream-id", frame.stream_id);
        finishedStreams.add(frame.stream_id);
        const live = streams.get(frame.stream_id);
        if (live) { live.el.remove(); streams.delete(frame.stream_id); }
      }
      assignSeq(el, seq, frame.ts);
      placeBySeq(el, seq);
      if (hours) hours.threadChanged();
      if (role === "agent") hideTyping();
      if ((role === "agent" || role === "ai") && !isOpen && seq > seenSeq) { unseen += 1; updateBadge(); }
      scrollDown(wasNear);
      markRead();
    }

    function onDelta(frame) {
      if (finishedStreams.has(frame.stream_id)) return;
      let live = streams.get(frame.stream_id);
      const wasNear = nearBottom();
      if (!live) {
        const el = messageEl("ai", t("widget.sender.ai"), "");
        el.setAttribute("data-streaming", "true");
        el.setAttribute("data-stream-id", frame.stream_id);
        const text = document.createTextNode("");
        el.querySelector(".cs-text").append(text);
        live = { el, text };
        streams.set(frame.stream_id, live);
        messages.append(el);
        // keep pending own texts below the reply they were written after? No: a reply
        // starts after the text it answers, so appending at the end is right.
      }
      live.text.appendData(frame.delta);
      scrollDown(wasNear);
    }

    function onRead(frame) {
      if (frame.by !== "agent" || typeof frame.seq !== "number") return;
      if (frame.seq <= agentReadSeq) return;
      agentReadSeq = frame.seq;
      for (const [seq, el] of bySeq) {
        if (seq <= agentReadSeq && el.getAttribute("data-role") === "visitor" && el.getAttribute("data-read") !== "true") {
          el.setAttribute("data-read", "true");
          setMeta(el, el.getAttribute("data-ts"));
        }
      }
    }

    /** welcome.last_seq lower than what we hold: the server forgot; drop the surplus. */
    /** The server serves another conversation than the one held (the visitor was
     * identified into their account's): nothing held belongs to it. Unsent texts stay. */
    function resetThread() {
      bySeq.clear();
      for (const live of streams.values()) live.el.remove();
      streams.clear();
      finishedStreams.clear();
      for (const item of outbox.values()) {
        item.seq = 0;
        item.after = 0;
        item.el.removeAttribute("data-seq");
        item.el.setAttribute("data-pending", "true");
        setMeta(item.el);
      }
      messages.replaceChildren(...[...outbox.values()].map((item) => item.el));
      highestSeq = 0;
      agentReadSeq = 0;
      readSent = 0;
      seenSeq = 0;
      store.set("seen", "0");
      unseen = 0;
      updateBadge();
      hideTyping();
      if (hours) hours.threadChanged();
    }

    function dropBeyond(last) {
      for (const [seq, el] of bySeq) {
        if (seq > last) { el.remove(); bySeq.delete(seq); }
      }
      for (const item of outbox.values()) { // echoed but not acked: pending again, resent below
        item.after = Math.min(item.after, last);
        if (item.seq > last) {
          item.seq = 0;
          item.el.removeAttribute("data-seq");
          item.el.removeAttribute("data-read");
          item.el.setAttribute("data-pending", "true");
          setMeta(item.el);
          messages.append(item.el);
        }
      }
      if (seenSeq > last) { seenSeq = last; store.set("seen", String(last)); }
      highestSeq = Math.min(highestSeq, last);
      if (agentReadSeq > last) agentReadSeq = last;
      if (readSent > last) readSent = last;
    }

    // ---- typing --------------------------------------------------------------------
    let typingHideTimer = null;
    function hideTyping() {
      typing.hidden = true;
      typing.textContent = "";
      clearTimeout(typingHideTimer);
    }
    function onTyping(frame) {
      if (!frame.active) { hideTyping(); return; }
      const name = frame.sender && frame.sender.name || t("widget.typing.someone");
      typing.textContent = t("widget.typing.active", { name });
      typing.hidden = false;
      clearTimeout(typingHideTimer);
      typingHideTimer = setTimeout(hideTyping, 8000); // in case "active: false" never comes
      scrollDown(false);
    }

    let typingActive = false;
    let typingSentAt = 0;
    let typingStopTimer = null;
    function typingInput() {
      const now = Date.now();
      if (input.value.trim() === "") { stopTyping(); return; }
      if (!typingActive || now - typingSentAt > 4000) {
        if (frameOut({ type: "typing", active: true })) { typingActive = true; typingSentAt = now; }
      }
      clearTimeout(typingStopTimer);
      typingStopTimer = setTimeout(stopTyping, 3000);
    }
    function stopTyping() {
      clearTimeout(typingStopTimer);
      if (typingActive) frameOut({ type: "typing", active: false });
      typingActive = false;
    }

    // ---- errors --------------------------------------------------------------------
    let errorTimer = null;
    // the error codes the visitor gets a text of their own for (widget.error.<code>)
    const ERROR_CODES = ["too_large", "rate_limited", "bad_request", "unavailable", "timeout",
      "identity_invalid", "identity_required", "blocked", "busy"];
    const errorText = (code) => t("widget.error." + code);
    function showError(text, sticky) {
      errorBox.textContent = text;
      errorBox.hidden = false;
      clearTimeout(errorTimer);
      if (!sticky) errorTimer = setTimeout(() => { errorBox.hidden = true; errorBox.textContent = ""; }, 5000);
    }

    function onError(frame) {
      if (hours && hours.onError(frame)) return;
      const text = ERROR_CODES.includes(frame.error) ? errorText(frame.error) : frame.message || t("widget.error.generic");
      if (["identity_invalid", "identity_required", "blocked"].includes(frame.error)) {
        // The server closes the socket after this; reconnecting would meet the same answer.
        refused = true;
        root.setAttribute("data-refused", frame.error);
        if (window.console) console.warn("cs-widget:", frame.message);
        showError(text, true);
        return;
      }
      const item = frame.id ? outbox.get(frame.id) : null;
      if (item && frame.error === "busy") {
        // The server is overloaded and stored nothing: resend (same id) when it says, and
        // hold the texts typed meanwhile, so that all go out in the order they were typed
        // (one timer per text, each with its own jitter, would reorder them).
        const wait = Math.min(Math.max(Number(frame.retry_after) || 2, 0.5), 60) * 1000;
        heldForBusy.add(frame.id);
        busyUntil = Math.max(busyUntil, Date.now() + wait);
        if (busyTimer === null) busyTimer = setTimeout(resendAfterBusy, wait);
      } else if (item && ["timeout", "unavailable", "rate_limited", "internal"].includes(frame.error)) {
        // Safe to resend with the same id: the server stores it at most once.
        setTimeout(() => { if (outbox.has(frame.id)) sendText(frame.id); }, 1500 + Math.random() * 1000);
      } else if (item) {
        outbox.delete(frame.id);
        if (!item.seq) { // (one whose echo came is stored, whatever this resend met)
          item.el.setAttribute("data-failed", t("widget.error.not_sent", { reason: text }));
          item.el.removeAttribute("data-pending");
          item.el.setAttribute("data-after", String(highestSeq + 0.5));
          setMeta(item.el);
        }
      }
      if (!item || !item.seq) showError(text); // a message shown as sent needs no alarm
    }

    // ---- sending --------------------------------------------------------------------
    function frameOut(frame) {
      if (!ws || ws.readyState !== WebSocket.OPEN || state !== "open") return false;
      try { ws.send(JSON.stringify(frame)); return true; } catch (_) { return false; }
    }

    let busyUntil = 0;             // after a busy answer, texts wait until then (ms)
    let busyTimer = null;
    const heldForBusy = new Set(); // client ids to send, in outbox order, once it passes
    function sendText(id) {
      const item = outbox.get(id);
      if (!item) return;
      if (Date.now() < busyUntil) { heldForBusy.add(id); return; } // sent in order after
      frameOut({ type: "text", id, content: item.content });
    }

    function resendAfterBusy() {
      busyTimer = null;
      const left = busyUntil - Date.now();
      if (left > 0) { busyTimer = setTimeout(resendAfterBusy, left); return; }
      const ids = [...outbox.keys()].filter((id) => heldForBusy.has(id));
      heldForBusy.clear();
      for (const id of ids) sendText(id);
    }

    function submit() {
      const content = input.value;
      if (content.trim() === "") return;
      if ([...content].length > MAX_CHARS) { showError(errorText("too_large")); return; }
      queueText(content);
      input.value = "";
      autosize();
      stopTyping();
    }

    /** Show `content` as pending and send it (now, or after the next welcome). */
    function queueText(content) {
      const id = randomId();
      const el = messageEl("visitor", "", content);
      el.setAttribute("data-pending", "true");
      el.setAttribute("data-client-id", id);
      setMeta(el);
      messages.append(el);
      outbox.set(id, { content, el, after: highestSeq, seq: 0 });
      if (hours) hours.threadChanged();
      scrollDown(true);
      if (refused) { showError(errorBox.textContent || errorText("identity_invalid"), true); return; }
      // a first-time visitor's first message, or a normal close earlier: connect for it
      if (state === "idle" || state === "closed") connect();
      else sendText(id);                 // otherwise sent now, or on the next welcome
    }

    function onAck(frame) {
      if (hours && hours.onAck(frame)) return;
      const item = outbox.get(frame.id);
      if (!item || typeof frame.seq !== "number") return;
      outbox.delete(frame.id);
      if (item.seq === frame.seq) return; // its echo came first and took the pending element
      if (bySeq.has(frame.seq)) { if (!item.seq) item.el.remove(); return; } // shown already
      // An echo took our element for an equal text sent from another tab: show ours apart.
      const el = item.seq ? messageEl("visitor", "", item.content) : item.el;
      assignSeq(el, frame.seq, frame.ts);
      placeBySeq(el, frame.seq);
      markRead();
    }

    function markRead() {
      if (!isOpen || document.visibilityState !== "visible") return;
      if (highestSeq > seenSeq) { seenSeq = highestSeq; store.set("seen", String(seenSeq)); }
      if (state !== "open") return;
      if (highestSeq > readSent && frameOut({ type: "read", seq: highestSeq })) readSent = highestSeq;
    }

    // ---- visitor context: the page the visitor is on, told to agents ----------------------
    /** origin + path of an http(s) URL ("" for anything else, or one too long to send). */
    function trimUrl(url) {
      if (!url) return "";
      try {
        const u = new URL(url, location.href);
        if (u.protocol !== "http:" && u.protocol !== "https:") return "";
        const trimmed = u.origin + u.pathname;
        return trimmed.length <= MAX_URL ? trimmed : "";
      } catch (_) { return ""; }
    }
    /** data-page while the visitor is still on the page it was given for, then the URL. */
    function currentPage() {
      if (opts.page && location.href === loadedAt) return opts.page.length <= MAX_URL ? opts.page : "";
      return trimUrl(location.href);
    }
    function pageTitle() { return String(document.title || "").replace(/\s+/g, " ").trim().slice(0, MAX_TITLE); }
    function timeZone() {
      try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (_) { return ""; }
    }
    /** A single-page app changed the URL: tell the server once the new page has its title
     * (a short wait also turns a burst of changes into one frame). */
    function pageChanged() {
      clearTimeout(pageTimer);
      pageTimer = setTimeout(() => {
        const page = currentPage();
        const title = pageTitle();
        if (!page || (page === lastPage && title === lastTitle)) return;
        if (frameOut({ type: "page", url: page, title })) { lastPage = page; lastTitle = title; }
      }, PAGE_SETTLE_MS);
    }
    for (const name of ["pushState", "replaceState"]) {
      const original = history[name];
      if (typeof original !== "function") continue;
      history[name] = function () {
        const result = original.apply(this, arguments);
        try { pageChanged(); } catch (_) { /* never break the site's navigation */ }
        return result;
      };
    }
    window.addEventListener("popstate", pageChanged);
    window.addEventListener("hashchange", pageChanged);

    // ---- connection --------------------------------------------------------------------
    function connect() {
      clearTimeout(retryTimer);
      retryTimer = null;
      if (ws) return;
      setState(everConnected ? "reconnecting" : "connecting");
      let socket;
      try { socket = new WebSocket(WS_URL); } catch (_) { scheduleReconnect(); return; }
      ws = socket;
      socket.addEventListener("open", () => {
        // origin + path only: a query or fragment may hold secrets (reset links, tokens)
        const hello = { type: "hello" };
        const page = currentPage();
        if (page) hello.page = page;
        const title = pageTitle();
        if (title) hello.title = title;
        const referrer = trimUrl(document.referrer);
        if (referrer) hello.referrer = referrer;
        const timezone = timeZone();
        if (timezone) hello.timezone = timezone;
        lastPage = page;
        lastTitle = title;
        const token = store.get("token");
        if (token) hello.visitor_token = token;
        if (highestSeq > 0) hello.last_seq = highestSeq;
        hello.lang = LANG;
        const given = hours ? hours.prechat() : {};
        if (opts.name || given.name) hello.name = opts.name || given.name;
        if (opts.email || given.email) hello.email = opts.email || given.email;
        const held = Number(store.get("conv"));
        if (held) hello.conversation_id = held; // what last_seq counts in
        if (USER_ID) { hello.user_id = USER_ID; hello.user_hash = opts.userHash; }
        socket.send(JSON.stringify(hello));
      });
      socket.addEventListener("message", (event) => {
        if (socket !== ws) return;
        let frame;
        try { frame = JSON.parse(event.data); } catch (_) { return; }
        try { handle(frame); } catch (err) { if (window.console) console.error("cs-widget:", err); }
      });
      socket.addEventListener("close", (event) => {
        if (socket !== ws) return;
        ws = null;
        stopPing();
        hideTyping();
        typingActive = false;
        if (event.code === 1000 || refused) { setState("closed"); return; }
        scheduleReconnect();
      });
    }

    function scheduleReconnect() {
      ws = null;
      setState(everConnected ? "reconnecting" : "connecting");
      const base = Math.min(30000, 500 * Math.pow(2, attempt));
      attempt += 1;
      const delay = base / 2 + Math.random() * base / 2; // equal jitter
      clearTimeout(retryTimer);
      retryTimer = setTimeout(connect, delay);
    }

    function handle(frame) {
      switch (frame.type) {
        case "welcome":
          if (frame.visitor_token && frame.visitor_token !== store.get("token")) {
            store.set("token", frame.visitor_token); // a new visitor: nothing seen yet
            seenSeq = 0;
            store.set("seen", "0");
          }
          if (String(frame.conversation_id) !== store.get("conv")) {
            if (store.get("conv")) resetThread();
            store.set("conv", String(frame.conversation_id));
          }
          store.set("uid", frame.user_id || "");
          if (frame.user_id) root.setAttribute("data-user-id", frame.user_id); // identified
          else root.removeAttribute("data-user-id");
          // read on another device (or before this page) counts as read here too
          if (frame.visitor_read_seq > seenSeq) { seenSeq = frame.visitor_read_seq; store.set("seen", String(seenSeq)); }
          if (frame.last_seq < seenSeq) seenSeq = frame.last_seq;
          if (typeof frame.last_seq === "number" && frame.last_seq < highestSeq) dropBeyond(frame.last_seq);
          if (frame.availability && hours) hours.setAvailability(frame.availability, frame.back_at);
          attempt = 0;
          everConnected = true;
          setState("open");
          if (hours) hours.welcomed();
          startPing();
          for (const id of outbox.keys()) sendText(id); // unacked texts, same ids
          markRead();
          break;
        case "message": onMessage(frame); break;
        case "ack": onAck(frame); break;
        case "ai_delta": onDelta(frame); break;
        case "typing": onTyping(frame); break;
        case "read": onRead(frame); break;
        case "error": onError(frame); break;
        case "pong": clearTimeout(pongTimer); break;
        case "availability": if (hours) hours.setAvailability(frame.status, frame.back_at); break;
        default: break; // unknown frames are ignored
      }
    }

    function startPing() {
      stopPing();
      pingTimer = setInterval(() => {
        if (!frameOut({ type: "ping" })) return;
        clearTimeout(pongTimer);
        pongTimer = setTimeout(dropDeadSocket, 10000);
      }, 25000);
    }
    /** No pong: the connection is dead though no close came; do not wait for one. */
    function dropDeadSocket() {
      const dead = ws;
      if (!dead) return;
      ws = null;
      stopPing();
      try { dead.close(4000, "no pong"); } catch (_) { /* ignore */ }
      scheduleReconnect();
    }
    function stopPing() {
      clearInterval(pingTimer);
      clearTimeout(pongTimer);
    }

    // ---- business hours: availability, welcome, leave-a-message, pre-chat form ----------
    /** What GET /api/v1/widget says (polled while the panel is open) and what the socket
     * says (welcome.availability, availability frames): the header's online / away / closed
     * line, the greeting shown before the conversation begins, the offer to leave an email
     * address when nobody can answer, and the pre-chat form ([web] prechat_fields). */
    function makeHours() {
      const EMAIL = /^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$/;
      const POLL_MS = 45000;
      let settings = null;
      let loaded = false;           // the settings answered (or could not be had)
      let team = null;              // { status, back_at }
      let leaveId = null;           // the pending leave_message frame's id
      let pendingLeave = null;      // a leave_message waiting for the socket's welcome
      let leaveAddress = "";
      let given = null;             // { name, email } from the pre-chat form

      /** The text of a per-language table: the widget's language, else the default's. */
      function textFor(table) {
        if (!table) return "";
        const fallback = settings ? settings.default_language : "en";
        const text = LANG in table ? table[LANG] : table[fallback];
        return typeof text === "string" && text.trim() ? text : "";
      }

      /** When the team is back, in the visitor's language and local time. */
      function backWhen(iso) {
        const back = new Date(iso);
        if (isNaN(back)) return "";
        const midnight = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
        const days = Math.round((midnight(back) - midnight(new Date())) / 86400000);
        const time = back.toLocaleTimeString(LANG, { hour: "2-digit", minute: "2-digit" });
        if (days <= 0) return t("widget.hours.today", { time });
        if (days === 1) return t("widget.hours.tomorrow", { time });
        const day = back.toLocaleDateString(LANG, { weekday: "long" });
        if (days < 7) return t("widget.hours.weekday", { day, time });
        const date = back.toLocaleDateString(LANG, { month: "long", day: "numeric" });
        return t("widget.hours.date", { date, time });
      }

      // the greeting, among the messages until the stored one comes (data-after keeps it first)
      const welcomeText = h("div", { class: "cs-text" });
      const welcomeEl = h("div", { class: "cs-message cs-system cs-welcome", "data-testid": "cs-welcome", "data-after": "0.5" }, welcomeText);

      // leave-a-message
      const leaveEmail = h("input", {
        type: "email", class: "cs-leave-email", "data-testid": "cs-leave-email", maxlength: "254",
        autocomplete: "email", placeholder: t("widget.hours.email_placeholder"), "aria-label": t("widget.hours.email_label"),
      });
      const leaveSubmit = h("button", { type: "submit", class: "cs-leave-submit", "data-testid": "cs-leave-submit" }, t("widget.hours.email_submit"));
      const leaveForm = h("form", { class: "cs-leave-form", novalidate: true }, leaveEmail, leaveSubmit);
      const leaveError = h("div", { class: "cs-field-error", "data-testid": "cs-leave-error", role: "alert", hidden: true });
      const leaveDone = h("div", { class: "cs-leave-done", "data-testid": "cs-leave-done", hidden: true });
      const leavePrompt = h("div", { class: "cs-leave-prompt" }, t("widget.hours.leave_prompt"));
      const leaveBox = h("div", { class: "cs-leave", "data-testid": "cs-leave", hidden: true }, leavePrompt, leaveForm, leaveError, leaveDone);
      panel.insertBefore(leaveBox, errorBox);

      // the pre-chat form
      const inputs = {};
      const prechatForm = h("form", { class: "cs-prechat", "data-testid": "cs-prechat", novalidate: true, hidden: true },
        h("div", { class: "cs-prechat-title" }, t("widget.prechat.title")));
      const prechatError = h("div", { class: "cs-field-error", "data-testid": "cs-prechat-error", role: "alert", hidden: true });
      panel.insertBefore(prechatForm, form);

      function askedFields() {
        const fields = settings && Array.isArray(settings.prechat_fields) ? settings.prechat_fields : [];
        return fields.filter((f) => ["name", "email", "question"].includes(f)
          && !(f === "name" && opts.name) && !(f === "email" && opts.email));
      }
      function needsPrechat() {
        return !given && !store.get("token") && !USER_ID && askedFields().length > 0;
      }
      function buildPrechat() {
        for (const field of askedFields()) {
          const control = field === "question"
            ? h("textarea", { rows: "3", maxlength: String(MAX_CHARS) })
            : h("input", { type: field === "email" ? "email" : "text", maxlength: field === "email" ? "254" : "512",
              autocomplete: field === "email" ? "email" : "name" });
          control.className = "cs-prechat-input";
          control.setAttribute("data-testid", "cs-prechat-" + field);
          control.setAttribute("data-field", field);
          inputs[field] = control;
          prechatForm.append(h("label", { class: "cs-prechat-label" }, t("widget.prechat." + field), control));
        }
        prechatForm.append(prechatError,
          h("button", { type: "submit", class: "cs-prechat-start", "data-testid": "cs-prechat-start" }, t("widget.prechat.start")));
      }
      function showPrechat(show) {
        prechatForm.hidden = !show;
        form.hidden = show;
        if (show) { const first = prechatForm.querySelector("input, textarea"); if (first && !INLINE) first.focus(); }
      }

      prechatForm.addEventListener("submit", (event) => {
        event.preventDefault();
        const values = {};
        for (const [field, control] of Object.entries(inputs)) {
          values[field] = control.value.trim();
          if (!values[field]) { prechatError.textContent = t("widget.prechat.required", { field: t("widget.prechat." + field) }); prechatError.hidden = false; control.focus(); return; }
          if (field === "email" && !EMAIL.test(values[field])) { prechatError.textContent = t("widget.hours.email_invalid"); prechatError.hidden = false; control.focus(); return; }
        }
        prechatError.hidden = true;
        given = { name: values.name || "", email: values.email || "" };
        showPrechat(false);
        if (values.question) queueText(values.question); // the first message: it connects
        else if (!ws && !refused) connect();
      });

      leaveForm.addEventListener("submit", (event) => {
        event.preventDefault();
        const address = leaveEmail.value.trim();
        if (!EMAIL.test(address)) { leaveError.textContent = t("widget.hours.email_invalid"); leaveError.hidden = false; return; }
        leaveError.hidden = true;
        const id = randomId();
        if (!frameOut({ type: "leave_message", id, email: address })) {
          if (refused) { leaveError.textContent = errorText("unavailable"); leaveError.hidden = false; return; }
          // Not connected (a first-time visitor who has not written): leaving an address is
          // what begins the conversation; it is sent once the socket is welcomed.
          pendingLeave = { type: "leave_message", id, email: address };
          if (state === "idle" || state === "closed" || !ws) connect();
        }
        leaveId = id;
        leaveAddress = address;
        leaveSubmit.disabled = true;
      });

      function render() {
        const conv = store.get("conv");
        const left = Boolean(conv) && store.get("left") === conv;
        // the greeting: until the conversation holds a message
        const greeting = textFor(settings && settings.welcome);
        welcomeText.textContent = greeting;
        if (greeting && bySeq.size === 0) {
          if (!welcomeEl.isConnected) messages.prepend(welcomeEl);
        } else {
          welcomeEl.remove(); // (an empty list shows the stylesheet's placeholder)
        }
        if (!team) { teamLine.hidden = true; leaveBox.hidden = true; return; }
        let text;
        if (team.status === "online") {
          const reply = textFor(settings && settings.expected_reply);
          text = reply ? t("widget.hours.online_reply", { reply }) : t("widget.hours.online");
        } else if (team.status === "closed") {
          const when = team.back_at ? backWhen(team.back_at) : "";
          text = when ? t("widget.hours.closed_back", { when }) : t("widget.hours.closed");
        } else {
          text = t("widget.hours.away");
        }
        teamLine.textContent = text;
        teamLine.setAttribute("data-status", team.status);
        root.setAttribute("data-availability", team.status);
        teamLine.hidden = false;
        leaveBox.hidden = team.status === "online" && !left;
        leaveForm.hidden = left;
        leavePrompt.hidden = left;
        leaveDone.hidden = !left;
        if (left) leaveDone.textContent = t("widget.hours.email_saved", { email: store.get("left-email") || "" });
      }

      function load() {
        if (!window.fetch) { loaded = true; return; }
        fetch(SETTINGS_URL, { credentials: "omit", cache: "no-store" })
          .then((response) => (response.ok ? response.json() : null))
          .catch(() => null)
          .then((answer) => {
            const first = !loaded;
            loaded = true;
            if (answer) {
              settings = answer;
              if (first) buildPrechat();
              if (typeof answer.status === "string") team = { status: answer.status, back_at: answer.back_at || null };
            }
            render();
            if (first && isOpen) opened();
          });
      }
      load();
      setInterval(() => { if (isOpen && document.visibilityState === "visible") load(); }, POLL_MS);

      function opened() {
        if (loaded && needsPrechat()) showPrechat(true);
      }

      return {
        /** Hold the first connection until the settings say whether a pre-chat form comes first. */
        opened,
        welcomed() { if (pendingLeave && frameOut(pendingLeave)) pendingLeave = null; },
        prechat() { return given || {}; },
        setAvailability(status, backAt) { team = { status, back_at: backAt || null }; render(); },
        threadChanged: render,
        onAck(frame) {
          if (!leaveId || frame.id !== leaveId) return false;
          leaveId = null;
          leaveSubmit.disabled = false;
          store.set("left", store.get("conv") || "");
          store.set("left-email", leaveAddress);
          render();
          return true;
        },
        onError(frame) {
          if (!leaveId || frame.id !== leaveId) return false;
          leaveId = null;
          leaveSubmit.disabled = false;
          leaveError.textContent = frame.error === "bad_request" ? t("widget.hours.email_invalid") : (ERROR_CODES.includes(frame.error) ? errorText(frame.error) : frame.message || "");
          leaveError.hidden = false;
          return true;
        },
      };
    }

    // ---- open / close the panel ------------------------------------------------------
    function updateBadge() {
      if (!bubble) return;
      bubbleBadge.textContent = unseen > 9 ? "9+" : String(unseen);
      bubbleBadge.hidden = unseen === 0;
    }

    function setOpen(open) {
      if (INLINE) open = true;
      isOpen = open;
      panel.hidden = !open;
      root.classList.toggle("cs-is-open", open);
      if (bubble) {
        bubble.setAttribute("aria-expanded", String(open));
        bubble.setAttribute("aria-label", t(open ? "widget.bubble.close" : "widget.bubble.open"));
      }
      try { sessionStorage.setItem(KEY + ":open", open ? "1" : ""); } catch (_) { /* ignore */ }
      if (open) {
        // a returning visitor whose socket closed comes back; a first-time one waits for their
        // first message (or the pre-chat form, or an email left), so opening creates nothing
        if (!ws && !retryTimer && !refused && state !== "open" && state !== "idle" && known()) connect();
        if (hours) hours.opened();
        unseen = 0;
        updateBadge();
        scrollDown(true);
        markRead();
        if (!INLINE) input.focus();
      }
    }

    function autosize() {
      input.style.height = "auto";
      input.style.height = Math.min(input.scrollHeight, 140) + "px";
    }

    if (bubble) bubble.addEventListener("click", () => setOpen(!isOpen));
    if (closeBtn) closeBtn.addEventListener("click", () => { setOpen(false); if (bubble) bubble.focus(); });
    form.addEventListener("submit", (event) => { event.preventDefault(); submit(); });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); submit(); }
      else if (event.key === "Escape" && !INLINE) { setOpen(false); if (bubble) bubble.focus(); }
    });
    input.addEventListener("input", () => { autosize(); typingInput(); });
    document.addEventListener("visibilitychange", markRead);
    // back online: reconnect only a widget that was in use (never a page view alone)
    window.addEventListener("online", () => {
      if (!ws && !refused && state !== "open" && state !== "idle" && (everConnected || outbox.size > 0 || known())) connect();
    });

    let startOpen = INLINE || ("open" in opts && opts.open !== "false");
    try { if (sessionStorage.getItem(KEY + ":open") === "1") startOpen = true; } catch (_) { /* ignore */ }
    hours = makeHours();
    // A returning visitor connects at once (agents' replies, the badge), and so does a
    // signed-in user (messages waiting in their account, a campaign's, show on the bubble);
    // a first-time anonymous visitor only with their first message, whether the panel is
    // inline (the chat page), opened by data-open or by the bubble: page views and opening
    // the chat alone create no visitor and no conversation.
    setState(known() ? "connecting" : "idle");
    setOpen(startOpen);
    if (known()) connect();
  }
})();

// The agent's WebSocket: reconnects with backoff, matches acks to requests, resends
// unacked texts with the same id after a reconnect (the server stores them once).

import { randomId } from "./dom.js";

/** A request that failed here, not at the server: its code names the text the dashboard shows
 * (agent.error.<code>). */
const failure = (code) => Object.assign(new Error(code.replace("_", " ")), { code });

export class AgentSocket {
  /**
   * @param {string} token  login token
   * @param {object} on     {state(s), frame(f), unauthorized()}
   */
  constructor(token, on) {
    this.token = token;
    this.on = on;
    this.ws = null;
    this.attempt = 0;
    this.ready = false;          // welcome received on the current socket
    this.stopped = false;
    this.pending = new Map();    // id -> {resolve, reject, frame, resend}
    this.retryTimer = null;
    this.pingTimer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    if (this.ws) this.ws.close(1000, "logout");
    this.ws = null;
    for (const item of this.pending.values()) item.reject(failure("not_connected"));
    this.pending.clear();
  }

  connect() {
    if (this.stopped) return;
    const url = location.origin.replace(/^http/, "ws") + "/ws/agent?token=" + encodeURIComponent(this.token);
    this.on.state(this.attempt === 0 && !this.everOpen ? "connecting" : "reconnecting");
    const ws = new WebSocket(url);
    this.ws = ws;
    let opened = false;
    ws.addEventListener("open", () => { opened = true; });
    ws.addEventListener("message", (event) => {
      if (ws !== this.ws) return;
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      this.dispatch(frame);
    });
    ws.addEventListener("close", (event) => this.closed(ws, event.code, opened));
  }

  /** A socket ended (or was given up as dead): fail what cannot wait, then retry. */
  async closed(ws, code, opened) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.ready = false;
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    // Requests that cannot be resent safely fail now; texts wait for the next socket.
    for (const [id, item] of this.pending) {
      if (!item.resend) { item.reject(failure("connection_lost")); this.pending.delete(id); }
    }
    if (this.stopped) return;
    // A refused handshake (401) looks like a close before open; 1008 may be a revoked
    // token. Ask the HTTP API whether the token still works before retrying.
    if (!opened || code === 1008) {
      const revoked = await this.tokenRevoked();
      if (this.stopped) return; // stopped (logged out) while asking
      if (revoked) { this.on.unauthorized(); return; }
    }
    this.scheduleReconnect();
  }

  async tokenRevoked() {
    try {
      const response = await fetch("/api/v1/me", { headers: { Authorization: "Bearer " + this.token } });
      return response.status === 401;
    } catch {
      return false; // server unreachable: keep retrying
    }
  }

  scheduleReconnect() {
    this.on.state("reconnecting");
    const base = Math.min(30000, 500 * 2 ** this.attempt);
    this.attempt += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), base / 2 + Math.random() * base / 2);
  }

  dispatch(frame) {
    if (frame.type === "pong") { clearTimeout(this.pongTimer); return; }
    if (frame.type === "welcome") {
      this.attempt = 0;
      this.ready = true;
      this.everOpen = true;
      this.on.state("open");
      this.startPing();
      this.on.frame(frame);
      for (const [id, item] of this.pending) if (item.resend) this.raw({ ...item.frame, id });
      return;
    }
    if ((frame.type === "ack" || frame.type === "error" || frame.type === "history") && frame.id && this.pending.has(frame.id)) {
      const item = this.pending.get(frame.id);
      if (frame.type === "error" && item.resend && ["timeout", "unavailable", "internal"].includes(frame.error)) {
        setTimeout(() => { if (this.pending.has(frame.id) && this.ready) this.raw({ ...item.frame, id: frame.id }); }, 1500);
        return;
      }
      this.pending.delete(frame.id);
      if (frame.type === "error") item.reject(Object.assign(new Error(frame.message || frame.error), { code: frame.error }));
      else item.resolve(frame);
      return;
    }
    this.on.frame(frame);
  }

  raw(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Fire-and-forget frames (typing, read): dropped while disconnected. */
  send(frame) {
    return this.ready && this.raw(frame);
  }

  /**
   * A frame answered by ack/error/history. With resend, it survives reconnects
   * (used for text, which the server de-duplicates by id).
   */
  request(frame, { resend = false, id = randomId() } = {}) {
    return new Promise((resolve, reject) => {
      if (!this.ready && !resend) { reject(failure("not_connected")); return; }
      this.pending.set(id, { resolve, reject, frame, resend });
      if (this.ready) this.raw({ ...frame, id });
    });
  }

  /** A ping every 25 s; no pong within 10 s means a dead connection: reconnect now. */
  startPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (!this.send({ type: "ping" })) return;
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => {
        const dead = this.ws;
        dead?.close(4000, "no pong");
        if (dead) this.closed(dead, 4000, true); // the close event may take long to come
      }, 10000);
    }, 25000);
  }
}

'use strict';
// Chaos clients: they behave as a careful real client does, and log everything they see.
//   - raw WebSocket (`ws`) or Socket.IO (`socket.io-client`, websocket-only or polling with
//     upgrade), on a "home" instance; when a connection ends they reconnect with backoff
//     (home first, then the other instance), and later drift back home;
//   - on every new connection they join their rooms again with `since` = the newest seq
//     they have seen in the room, continuing while the ack says `truncated` (each page
//     from the last seq of the previous page: live messages arrive meanwhile);
//   - every send carries a unique clientMsgId; an error reply, a timeout or a lost
//     connection makes them resend the same clientMsgId until it is acked.
// The log format is the checker's (checker.js). Everything a reply or a push carries is
// logged synchronously in the handler that receives it, so the log keeps the wire order.
const WebSocket = require('ws');
const { io } = require('socket.io-client');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- one connection, either protocol: request(event, data, ms, cb) with cb(err, data)
// called exactly once, synchronously when the reply arrives (or on timeout/close). ----

class RawConn {
  constructor(url, handlers) {
    this.h = handlers;
    this.pending = new Map();
    this.nextId = 1;
    this.closed = false;
    this.closingByUs = false;
    this.ws = new WebSocket(url, { handshakeTimeout: 3000, perMessageDeflate: false });
    this.ws.on('open', () => this.h.open());
    this.ws.on('error', (e) => { this.lastError = e.message; });
    this.ws.on('unexpected-response', (req, res) => { this.lastError = `HTTP ${res.statusCode}`; res.resume(); this.ws.terminate(); });
    this.ws.on('message', (raw) => {
      let m;
      try { m = JSON.parse(raw.toString()); } catch (_) { return; }
      if ((m.event === 'ack' || m.event === 'error') && m.id !== undefined) {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        clearTimeout(p.timer);
        if (m.event === 'ack') p.cb(null, m.data);
        else p.cb({ code: (m.data && m.data.code) || 'ERROR', message: m.data && m.data.message });
        return;
      }
      this.h.event(m.event, m.data);
    });
    this.ws.on('close', (code) => {
      if (this.closed) return;
      this.closed = true;
      this.failPending();
      this.h.close(code, this.closingByUs ? 'client' : 'server', this.lastError);
    });
  }

  failPending() {
    for (const [, p] of this.pending) { clearTimeout(p.timer); p.cb({ code: 'DISCONNECTED' }); }
    this.pending.clear();
  }

  request(event, data, ms, cb) {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) { cb({ code: 'DISCONNECTED' }); return; }
    const id = this.nextId++;
    const timer = setTimeout(() => { this.pending.delete(id); cb({ code: 'TIMEOUT' }); }, ms);
    this.pending.set(id, { cb, timer });
    this.ws.send(JSON.stringify({ event, data, id }));
  }

  close() { this.closingByUs = true; try { this.ws.close(); } catch (_) { /* not open */ } setTimeout(() => this.ws.terminate(), 1000).unref(); }

  terminate() { this.closingByUs = true; this.ws.terminate(); }

  // The slow client: stop reading from the socket (the kernel buffers fill, then the
  // server's outbound queue), and later read again.
  pause() { if (this.ws._socket) this.ws._socket.pause(); }

  resume() { if (this.ws._socket) this.ws._socket.resume(); }
}

class SioConn {
  constructor(base, token, transports, handlers) {
    this.h = handlers;
    this.pending = new Map();
    this.nextId = 1;
    this.closed = false;
    this.closingByUs = false;
    this.s = io(`${base}/chat`, {
      auth: { token }, reconnection: false, forceNew: true, transports, timeout: 3000,
    });
    this.s.on('connect', () => this.h.open());
    this.s.on('connect_error', (e) => { this.lastError = e.message; this.finish(0, 'server'); });
    this.s.on('disconnect', (reason) => {
      this.lastError = reason;
      this.finish(0, reason === 'io client disconnect' || this.closingByUs ? 'client' : 'server');
    });
    this.s.onAny((event, data) => this.h.event(event, data));
  }

  finish(code, by) {
    if (this.closed) return;
    this.closed = true;
    for (const [, p] of this.pending) { clearTimeout(p.timer); p.cb({ code: 'DISCONNECTED' }); }
    this.pending.clear();
    this.h.close(code, by, this.lastError);
  }

  request(event, data, ms, cb) {
    if (this.closed || !this.s.connected) { cb({ code: 'DISCONNECTED' }); return; }
    const id = this.nextId++;
    const timer = setTimeout(() => { this.pending.delete(id); cb({ code: 'TIMEOUT' }); }, ms);
    this.pending.set(id, { cb, timer });
    this.s.emit(event, data, (res) => {
      const p = this.pending.get(id);
      if (!p) return;
      this.pending.delete(id);
      clearTimeout(timer);
      if (res && res.error) cb({ code: res.error.code || 'ERROR', message: res.error.message });
      else cb(null, res);
    });
  }

  close() { this.closingByUs = true; this.s.disconnect(); }

  terminate() { this.close(); }

  pause() {}

  resume() {}
}

// ---- the client ----

const REQUEST_MS = 5000;
// Socket.IO clients: websocket only, polling then upgrade (the default), polling only.
const SIO_TRANSPORTS = { sio: ['websocket'], 'sio-up': ['polling', 'websocket'], 'sio-poll': ['polling'] };

class ChaosClient {
  // opts: { uid, token, kind: 'ws' | 'sio' | 'sio-up' | 'sio-poll', home, instances: [{ws, http}],
  //         rooms, rng, textPad, t0 }
  constructor(opts) {
    Object.assign(this, opts);
    this.log = [];
    this.session = 0;
    this.conn = null;
    this.ready = false; // connected and every room joined in this session
    this.joined = new Set();
    this.lastSeq = new Map(); // room -> newest seq seen (what `since` is made of)
    this.stopped = false;
    this.cmidN = 0;
    this.attempts = 0; // consecutive failed connection attempts
    this.waiters = [];
    this.inst = null;
  }

  rec(ev, fields) { this.log.push({ t: Date.now(), ev, s: this.session, ...fields }); }

  see(room, seq) { if (!(this.lastSeq.get(room) >= seq)) this.lastSeq.set(room, seq); }

  onEvent(event, data) {
    if (event !== 'new_message' || !data || typeof data.seq !== 'number') return;
    const [cmid] = String(data.text).split('|', 1);
    this.rec('msg', { room: data.roomId, id: data.id, seq: data.seq, cmid, user: String(data.userId) });
    this.see(data.roomId, data.seq);
  }

  // Connect (retrying with backoff until stopped), join every room, stay until the
  // connection ends, repeat.
  async run() {
    while (!this.stopped) {
      const inst = this.pickInstance();
      const ok = await this.connectOnce(inst);
      if (this.stopped) break;
      if (!ok) {
        this.attempts++;
        await sleep(Math.min(2000, 100 * 2 ** Math.min(this.attempts, 5)) * (0.5 + this.rng()));
        continue;
      }
      this.attempts = 0;
      await this.session_(inst);
      this.ready = false;
      if (!this.stopped) await sleep(50 + 250 * this.rng());
    }
  }

  pickInstance() {
    if (this.forceInstance !== undefined) { const i = this.forceInstance; this.forceInstance = undefined; return i; }
    return this.attempts % 2 === 0 ? this.home : 1 - this.home;
  }

  connectOnce(inst) {
    return new Promise((resolve) => {
      let opened = false;
      const handlers = {
        open: () => {
          opened = true;
          this.session++;
          this.inst = inst;
          this.rec('open', { inst });
          resolve(true);
        },
        event: (e, d) => this.onEvent(e, d),
        close: (code, by, why) => {
          if (!opened) {
            this.rec('fail', { inst, why: why || String(code) });
            resolve(false);
            return;
          }
          this.rec('close', { code, by, why });
          this.ready = false;
          this.joined.clear();
          if (this.onClosed) this.onClosed();
        },
      };
      const u = this.instances[inst];
      this.conn = this.kind === 'ws'
        ? new RawConn(`${u.ws}/ws?token=${this.token}`, handlers)
        : new SioConn(u.http, this.token, SIO_TRANSPORTS[this.kind], handlers);
    });
  }

  request(event, data, ms = REQUEST_MS, onReply) {
    const conn = this.conn;
    return new Promise((resolve) => conn.request(event, data, ms, (err, res) => {
      if (onReply) onReply(err, res);
      resolve({ err, res });
    }));
  }

  // One connection: (re)join the rooms, then wait for the close.
  async session_(inst) {
    const conn = this.conn;
    const closed = new Promise((r) => { this.onClosed = r; });
    if (conn.closed) return;
    for (const room of this.rooms) {
      let page = false;
      let cursor; // while paging: the newest seq of the previous page, not of the live stream
      for (;;) {
        if (conn.closed || this.stopped) break;
        // Live messages newer than the server's snapshot arrive while we page, so the next
        // page starts after the last one, not after the newest seq seen.
        const since = page ? cursor : (this.lastSeq.has(room) ? this.lastSeq.get(room) : undefined);
        const data = since === undefined ? { roomId: room } : { roomId: room, since };
        const { err, res } = await this.request('join_room', data, REQUEST_MS, (e, r) => {
          if (e) { this.rec('join_err', { room, code: e.code }); return; }
          const items = (r.messages || []).map((m) => [m.id, m.seq, String(m.text).split('|', 1)[0], String(m.userId)]);
          this.rec('join', { room, since: since === undefined ? null : since, page, truncated: !!r.truncated, items });
          for (const it of items) this.see(room, it[1]);
          cursor = items.reduce((m, it) => Math.max(m, it[1]), since === undefined ? 0 : since);
          if (!this.lastSeq.has(room)) this.lastSeq.set(room, 0);
        });
        if (err) {
          if (err.code === 'DISCONNECTED') break;
          if (err.code === 'TIMEOUT') {
            // The join may still succeed later, unseen: this connection's state is
            // unknown, so start a new one (as a real client would).
            conn.close();
            break;
          }
          await sleep(300 + 500 * this.rng());
          continue;
        }
        if (res.truncated) { page = true; continue; }
        this.joined.add(room);
        break;
      }
    }
    if (!conn.closed && !this.stopped && this.joined.size === this.rooms.length) {
      this.ready = true;
      this.wake();
      if (inst !== this.home && this.goHome) this.scheduleGoHome(conn);
    } else if (!conn.closed) {
      conn.close();
    }
    await closed;
  }

  // A client displaced to the other instance goes back home after a while (clients of a
  // drained instance do not all stay on the survivor).
  scheduleGoHome(conn) {
    const ms = 3000 + 5000 * this.rng();
    setTimeout(() => {
      if (this.stopped || this.conn !== conn || conn.closed || this.paused) return;
      this.forceInstance = this.home;
      this.rec('go_home', {});
      conn.close();
    }, ms).unref();
  }

  wake() { for (const w of this.waiters.splice(0)) w(); }

  untilReady() { return this.ready ? Promise.resolve() : new Promise((r) => this.waiters.push(r)); }

  // Send one message, resending the same clientMsgId until it is acked (or `deadline`).
  async send(room, text, deadline) {
    const cmid = `${this.uid}.${++this.cmidN}`;
    const body = `${cmid}|${text}`;
    for (let attempt = 1; Date.now() < deadline; attempt++) {
      while (!this.ready && Date.now() < deadline) {
        await Promise.race([this.untilReady(), sleep(200)]);
      }
      if (Date.now() >= deadline) break;
      this.rec('send', { cmid, room, attempt });
      const { err } = await this.request('send_message', { roomId: room, text: body, clientMsgId: cmid }, REQUEST_MS, (e, r) => {
        if (!e) this.rec('ack', { cmid, id: r.messageId, seq: r.seq });
        else if (e.code === 'TIMEOUT' || e.code === 'DISCONNECTED') this.rec('timeout', { cmid, code: e.code });
        else this.rec('err', { cmid, code: e.code });
      });
      if (!err) return true;
      if (err.code === 'VALIDATION_ERROR') return false; // a bug of this client: never retried
      await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 4)) * (0.5 + this.rng()));
    }
    return false;
  }

  // The steady sender: one message at a time, every `interval` ms on average.
  // on(): may a new message start; deadline(): when to give up resending one.
  async sendLoop(intervalMs, on, deadline) {
    while (!this.stopped && on()) {
      await sleep(intervalMs * (0.5 + this.rng()));
      if (!on()) break;
      const room = this.rooms[Math.floor(this.rng() * this.rooms.length)];
      await this.send(room, 'm', deadline());
    }
  }

  stop() {
    this.stopped = true;
    this.wake();
    if (this.conn && !this.conn.closed) this.conn.close();
  }
}

module.exports = { ChaosClient, RawConn, SioConn, sleep };

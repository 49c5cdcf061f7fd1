'use strict';
// Real clients for the tests: the raw-WebSocket protocol through the `ws` package, and a
// byte-level WebSocket client (net) for sending frames that no library would send.
const crypto = require('node:crypto');
const net = require('node:net');
const WebSocket = require('ws');

// A raw-protocol chat client: request() sends {event, data, id} and resolves with the ack
// data (rejects with the error data); every server push is recorded.
class ChatClient {
  constructor(url, opts = {}) {
    this.url = url;
    this.events = [];
    this.waiters = [];
    this.pending = new Map();
    this.nextId = 1;
    this.closed = null;
    this.ws = new WebSocket(url, { headers: opts.headers || {}, handshakeTimeout: 5000 });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('unexpected-response', (req, res) => {
        let body = '';
        res.on('data', (d) => { body += d; });
        res.on('end', () => {
          const e = new Error(`HTTP ${res.statusCode}`);
          e.status = res.statusCode;
          e.body = body;
          e.headers = res.headers;
          reject(e);
        });
      });
      this.ws.once('error', reject);
    });
    this.closedPromise = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.closed = { code, reason: reason.toString() };
        for (const [, p] of this.pending) p.reject(new Error(`closed ${code}`));
        this.pending.clear();
        resolve(this.closed);
      });
    });
    this.ws.on('error', () => {});
    this.ws.on('message', (raw) => {
      let m;
      try { m = JSON.parse(raw.toString()); } catch (_) { m = { event: '<invalid>', data: raw.toString() }; }
      if (m.id !== undefined && (m.event === 'ack' || m.event === 'error') && this.pending.has(m.id)) {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.event === 'ack') p.resolve(m.data); else p.reject(Object.assign(new Error(m.data.message), m.data));
      }
      this.events.push(m);
      for (const w of [...this.waiters]) {
        if (w.match(m)) { this.waiters.splice(this.waiters.indexOf(w), 1); w.resolve(m); }
      }
    });
  }

  static async connect(url, opts) {
    const c = new ChatClient(url, opts);
    await c.opened;
    return c;
  }

  send(obj) { this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); }

  request(event, data, timeout = 10000) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => { this.pending.delete(id); reject(new Error(`timeout waiting for reply to ${event}`)); }, timeout);
      this.pending.set(id, {
        resolve: (v) => { clearTimeout(t); resolve(v); },
        reject: (e) => { clearTimeout(t); reject(e); },
      });
      this.send(data === undefined ? { event, id } : { event, data, id });
    });
  }

  // Resolves with the first recorded or future message matching.
  waitFor(event, pred = () => true, timeout = 5000) {
    const match = (m) => m.event === event && pred(m.data, m);
    const found = this.events.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = { match, resolve: (m) => { clearTimeout(t); resolve(m); } };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`timeout waiting for ${event} on ${this.url}; got ${JSON.stringify(this.events.slice(-5))}`));
      }, timeout);
      this.waiters.push(w);
    });
  }

  of(event) { return this.events.filter((m) => m.event === event).map((m) => m.data); }

  clear() { this.events = []; }

  close() { if (this.ws.readyState <= 1) this.ws.close(); return this.closedPromise; }

  terminate() { this.ws.terminate(); return this.closedPromise; }
}

// ---- byte-level WebSocket client ----

function encodeFrame(opcode, payload, { fin = true, mask = true, rsv = 0, len } = {}) {
  const p = Buffer.isBuffer(payload) ? payload : Buffer.from(payload || '');
  const n = len === undefined ? p.length : len;
  let head;
  if (n < 126) { head = Buffer.alloc(2); head[1] = n; }
  else if (n < 65536) { head = Buffer.alloc(4); head[1] = 126; head.writeUInt16BE(n, 2); }
  else { head = Buffer.alloc(10); head[1] = 127; head.writeBigUInt64BE(BigInt(n), 2); }
  head[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
  if (!mask) return Buffer.concat([head, p]);
  head[1] |= 0x80;
  const key = crypto.randomBytes(4);
  const body = Buffer.from(p);
  for (let i = 0; i < body.length; i++) body[i] ^= key[i & 3];
  return Buffer.concat([head, key, body]);
}

// Opens a TCP connection, performs the handshake, then exposes frames as they arrive.
class RawSocket {
  static connect(port, pathAndQuery, headers = {}, host = '127.0.0.1') {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, host);
      const rs = new RawSocket(s);
      s.once('error', reject);
      s.once('connect', () => {
        const key = crypto.randomBytes(16).toString('base64');
        const lines = [`GET ${pathAndQuery} HTTP/1.1`, `Host: ${host}:${port}`, 'Upgrade: websocket',
          'Connection: Upgrade', `Sec-WebSocket-Key: ${key}`, 'Sec-WebSocket-Version: 13'];
        for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
        s.write(lines.join('\r\n') + '\r\n\r\n');
      });
      rs.onHead = (status, head) => (status === 101 ? resolve(rs) : reject(Object.assign(new Error(`HTTP ${status}`), { status, head })));
    });
  }

  constructor(s) {
    this.s = s;
    this.buf = Buffer.alloc(0);
    this.headDone = false;
    this.frames = [];
    this.waiters = [];
    this.ended = false;
    this.endPromise = new Promise((r) => s.on('close', () => { this.ended = true; r(); this._notify(); }));
    s.on('error', () => {});
    s.on('data', (d) => this._data(d));
  }

  _data(d) {
    this.buf = Buffer.concat([this.buf, d]);
    if (!this.headDone) {
      const i = this.buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      const head = this.buf.slice(0, i).toString();
      this.buf = this.buf.slice(i + 4);
      this.headDone = true;
      this.onHead(Number(head.split(' ')[1]), head);
    }
    for (;;) {
      if (this.buf.length < 2) break;
      const b1 = this.buf[1] & 0x7f;
      let off = 2; let n = b1;
      if (b1 === 126) { if (this.buf.length < 4) break; n = this.buf.readUInt16BE(2); off = 4; }
      if (b1 === 127) { if (this.buf.length < 10) break; n = Number(this.buf.readBigUInt64BE(2)); off = 10; }
      if (this.buf.length < off + n) break;
      const f = { fin: !!(this.buf[0] & 0x80), opcode: this.buf[0] & 0x0f, payload: this.buf.slice(off, off + n) };
      if (f.opcode === 8) f.code = n >= 2 ? f.payload.readUInt16BE(0) : 1005;
      this.frames.push(f);
      this.buf = this.buf.slice(off + n);
    }
    this._notify();
  }

  _notify() {
    for (const w of [...this.waiters]) {
      const f = this.frames.find(w.match);
      if (f || this.ended) { this.waiters.splice(this.waiters.indexOf(w), 1); w.resolve(f || null); }
    }
  }

  write(buf) { this.s.write(buf); }

  sendText(str, opts) { this.write(encodeFrame(1, Buffer.from(str), opts)); }

  waitFrame(match, timeout = 5000) {
    const f = this.frames.find(match);
    if (f) return Promise.resolve(f);
    return new Promise((resolve, reject) => {
      const w = { match, resolve: (x) => { clearTimeout(t); resolve(x); } };
      const t = setTimeout(() => { this.waiters.splice(this.waiters.indexOf(w), 1); reject(new Error('timeout waiting for frame')); }, timeout);
      this.waiters.push(w);
      if (this.ended) this._notify();
    });
  }

  waitClose(timeout = 5000) { return this.waitFrame((f) => f.opcode === 8, timeout); }

  texts() { return this.frames.filter((f) => f.opcode === 1).map((f) => JSON.parse(f.payload.toString())); }

  destroy() { this.s.destroy(); }
}

// Sends a raw HTTP request and returns the status line + headers (no keep-alive).
function rawHttp(port, text, host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host);
    let data = '';
    s.on('connect', () => s.write(text));
    s.on('data', (d) => { data += d.toString(); });
    s.on('error', reject);
    s.on('close', () => resolve({ status: Number((data.split(' ')[1]) || 0), raw: data }));
    s.setTimeout(5000, () => s.destroy());
  });
}

module.exports = { ChatClient, RawSocket, encodeFrame, rawHttp };

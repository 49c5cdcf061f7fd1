'use strict';
// socket.io-client helpers: connect as the seeds do, and promise-returning emits.
const { io } = require('socket.io-client');

function connect(base, token, opts = {}) {
  const nsp = opts.nsp === undefined ? '/chat' : opts.nsp;
  const s = io(`${base}${nsp}`, {
    auth: token === undefined ? undefined : { token },
    reconnection: opts.reconnection || false,
    forceNew: true,
    transports: opts.transports,
    timeout: 5000,
  });
  s.events = [];
  s.onAny((event, data) => s.events.push({ event, data }));
  s.of = (event) => s.events.filter((m) => m.event === event).map((m) => m.data);
  s.waitFor = (event, pred = () => true, timeout = 5000) => new Promise((resolve, reject) => {
    const hit = s.events.find((m) => m.event === event && pred(m.data));
    if (hit) { resolve(hit.data); return; }
    const t = setTimeout(() => { s.offAny(h); reject(new Error(`timeout waiting for ${event}`)); }, timeout);
    const h = (ev, data) => { if (ev === event && pred(data)) { clearTimeout(t); s.offAny(h); resolve(data); } };
    s.onAny(h);
  });
  // emit with an ack callback; rejects with the {error} payload of a failed request.
  s.request = (event, data, timeout = 8000) => new Promise((resolve, reject) => {
    s.timeout(timeout).emit(event, data, (err, res) => {
      if (err) reject(err);
      else if (res && res.error) reject(Object.assign(new Error(res.error.message), res.error));
      else resolve(res);
    });
  });
  s.ready = new Promise((resolve, reject) => {
    s.once('connect', () => resolve(s));
    s.once('connect_error', (e) => reject(e));
  });
  return s;
}

module.exports = { connect };

'use strict';
// Engine.IO v4 / Socket.IO v5 wire behaviour at the packet level, against a gateway in
// conformance mode (the settings the official test suites expect: pingInterval 300,
// pingTimeout 200, no auth). The official suites themselves are run by hand
// (docs/CONFORMANCE.md); these cases keep the main behaviours under CI.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const h = require('../lib/harness');

let gw;
let base;
const sleep = h.sleep;

before(async () => {
  gw = await h.startGateway({ args: ['--conformance'] });
  base = `http://127.0.0.1:${gw.port}`;
});
after(h.stopAll);

async function get(path) {
  const r = await fetch(`${base}${path}`);
  return { status: r.status, body: await r.text() };
}
async function post(path, body) {
  const r = await fetch(`${base}${path}`, { method: 'POST', body });
  return { status: r.status, body: await r.text() };
}
async function handshake(prefix = '/socket.io') {
  const r = await get(`${prefix}/?EIO=4&transport=polling`);
  assert.equal(r.status, 200);
  assert.equal(r.body[0], '0');
  return JSON.parse(r.body.slice(1));
}
function wsOpen(path) {
  const ws = new WebSocket(`ws://127.0.0.1:${gw.port}${path}`);
  ws.msgs = [];
  ws.waiters = [];
  ws.on('message', (d, bin) => {
    const m = bin ? d : d.toString();
    const w = ws.waiters.shift();
    if (w) w(m); else ws.msgs.push(m);
  });
  ws.next = () => new Promise((r) => { if (ws.msgs.length) r(ws.msgs.shift()); else ws.waiters.push(r); });
  ws.closed = new Promise((r) => ws.on('close', (code) => r(code)));
  ws.on('error', () => {});
  return ws;
}

describe('Engine.IO', () => {
  it('opens a polling session with the conformance settings', async () => {
    const o = await handshake();
    assert.deepEqual(Object.keys(o).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
    assert.deepEqual(o.upgrades, ['websocket']);
    assert.equal(o.pingInterval, 300);
    assert.equal(o.pingTimeout, 200);
    assert.equal(o.maxPayload, 1000000);
  });

  it('refuses bad versions, transports and methods with 400', async () => {
    assert.equal((await get('/socket.io/?transport=polling')).status, 400);
    assert.equal((await get('/socket.io/?EIO=3&transport=polling')).status, 400);
    assert.equal((await get('/socket.io/?EIO=4&transport=abc')).status, 400);
    assert.equal((await post('/socket.io/?EIO=4&transport=polling', '')).status, 400);
    const unknown = await get('/socket.io/?EIO=4&transport=polling&sid=nope');
    assert.equal(unknown.status, 400);
    assert.deepEqual(JSON.parse(unknown.body), { code: 1, message: 'Session ID unknown' });
  });

  it('echoes messages over polling at the Engine.IO level (/engine.io/)', async () => {
    const { sid } = await handshake('/engine.io');
    const p = `/engine.io/?EIO=4&transport=polling&sid=${sid}`;
    assert.deepEqual(await post(p, '4test1\x1e4test2\x1ebAQIDBA=='), { status: 200, body: 'ok' });
    assert.equal((await get(p)).body, '4test1\x1e4test2\x1ebAQIDBA==');
  });

  it('pings every pingInterval and closes the session when the pong is late', async () => {
    const { sid } = await handshake();
    const p = `/socket.io/?EIO=4&transport=polling&sid=${sid}`;
    for (let i = 0; i < 2; i++) {
      assert.equal((await get(p)).body, '2');
      await post(p, '3');
    }
    await sleep(550);
    assert.equal((await get(p)).status, 400);
  });

  it('closes the session on an overlapping poll, answering the first with a close packet', async () => {
    const { sid } = await handshake();
    const p = `/socket.io/?EIO=4&transport=polling&sid=${sid}`;
    const [a, b] = await Promise.all([get(p), sleep(10).then(() => get(`${p}&t=x`))]);
    assert.equal(a.body, '1');
    assert.equal(b.status, 400);
    assert.equal((await get(p)).status, 400);
  });

  it('upgrades from polling to WebSocket with the probe, a noop ending the poll', async () => {
    const { sid } = await handshake();
    const ws = wsOpen(`/socket.io/?EIO=4&transport=websocket&sid=${sid}`);
    await new Promise((r) => ws.on('open', r));
    ws.send('2probe');
    assert.equal(await ws.next(), '3probe');
    assert.equal((await get(`/socket.io/?EIO=4&transport=polling&sid=${sid}`)).body, '6');
    ws.send('5');
    ws.send('40');
    assert.match(await ws.next(), /^40\{"sid":"[^"]+"\}$/);
    assert.equal(await ws.next(), '42["auth",{}]');
    assert.equal((await get(`/socket.io/?EIO=4&transport=polling&sid=${sid}`)).status, 400);
    ws.close();
  });
});

describe('Socket.IO', () => {
  async function connected(nsp = '') {
    const ws = wsOpen('/socket.io/?EIO=4&transport=websocket');
    assert.equal((await ws.next())[0], '0');
    ws.send(`40${nsp}`);
    assert.match(await ws.next(), /^40/);
    await ws.next(); // auth
    return ws;
  }

  it('connects namespaces, refuses unknown ones, echoes events and acks', async () => {
    const ws = await connected();
    ws.send('42["message",1,"2",{"3":[true]}]');
    assert.equal(await ws.next(), '42["message-back",1,"2",{"3":[true]}]');
    ws.send('42456["message-with-ack",1,"2",{"3":[false]}]');
    assert.equal(await ws.next(), '43456[1,"2",{"3":[false]}]');
    ws.send('40/random');
    assert.equal(await ws.next(), '44/random,{"message":"Invalid namespace"}');
    ws.send('40/custom,{"token":"abc"}');
    assert.match(await ws.next(), /^40\/custom,\{"sid":/);
    assert.equal(await ws.next(), '42/custom,["auth",{"token":"abc"}]');
    ws.close();
  });

  it('echoes binary attachments in conformance mode', async () => {
    const ws = await connected();
    ws.send('451-["message",{"_placeholder":true,"num":0}]');
    ws.send(Buffer.from([1, 2, 3]));
    assert.equal(await ws.next(), '451-["message-back",{"_placeholder":true,"num":0}]');
    assert.deepEqual([...(await ws.next())], [1, 2, 3]);
    ws.close();
  });

  it('closes the session on malformed packets', async () => {
    for (const bad of ['4abc', '42{}', '42abc["x"]']) {
      const ws = await connected();
      ws.send(bad);
      await ws.closed;
    }
  });

  it('closes a session that connects no namespace within the connect timeout', async () => {
    const ws = wsOpen('/socket.io/?EIO=4&transport=websocket');
    const t0 = Date.now();
    await ws.closed;
    assert.ok(Date.now() - t0 < 2000);
  });
});

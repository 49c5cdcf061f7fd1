'use strict';
// Issue 5: unmodified socket.io-client 4.x, written as in the seeds, against the cluster:
// two instances x two workers, default transports (polling, then the upgrade), websocket
// only, polling only; and raw-WebSocket clients in the same rooms.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');
const { ChatClient } = require('../lib/clients');
const sio = require('../lib/sio');

let cl;
const base = (i) => `http://127.0.0.1:${cl.port(i)}`;

before(async () => { cl = await h.startCluster({ instances: 2, workers: 2 }); });
after(h.stopAll);

async function flow(transports, label) {
  // Bob connects only once Alice is in: user_online goes to the sockets open at that time.
  const alice = sio.connect(base(0), h.token(`${label}-alice`, 'Alice'), { transports });
  await alice.ready;
  const bob = sio.connect(base(1), `Bearer ${h.token(`${label}-bob`, 'Bob')}`, { transports });
  await bob.ready;
  await alice.waitFor('user_online', (d) => d.userId === `${label}-bob` && d.username === 'Bob');

  const room = `${label}-room`;
  const ja = await alice.request('join_room', { roomId: room });
  assert.equal(ja.joined, room);
  assert.deepEqual(ja.messages, []);
  await bob.request('join_room', { roomId: room });
  await alice.waitFor('user_joined_room', (d) => d.userId === `${label}-bob`);

  const ack = await alice.request('send_message', { roomId: room, text: 'hello from socket.io' });
  assert.equal(ack.sent, true);
  assert.ok(ack.messageId > 0 && ack.seq > 0);
  const nm = await bob.waitFor('new_message', (d) => d.id === ack.messageId);
  assert.equal(nm.text, 'hello from socket.io');
  assert.equal(nm.username, 'Alice');
  await alice.waitFor('new_message', (d) => d.id === ack.messageId);

  bob.emit('typing', { roomId: room, isTyping: true });
  const ty = await alice.waitFor('user_typing');
  assert.deepEqual(ty, { roomId: room, userId: `${label}-bob`, username: 'Bob', isTyping: true });

  const dm = await bob.request('direct_message', { recipientId: `${label}-alice`, text: 'psst' });
  assert.equal(dm.sent, true);
  const got = await alice.waitFor('direct_message', (d) => d.text === 'psst');
  assert.equal(got.senderUsername, 'Bob');

  // History for a late joiner.
  const carol = sio.connect(base(1), h.token(`${label}-carol`, 'Carol'), { transports });
  await carol.ready;
  const jc = await carol.request('join_room', { roomId: room });
  assert.deepEqual(jc.messages.map((m) => m.text), ['hello from socket.io']);

  // Errors: the `error` event, and the ack callback gets {error}.
  await assert.rejects(alice.request('send_message', { roomId: room, text: '' }), { code: 'VALIDATION_ERROR' });
  const ev = await alice.waitFor('error', (d) => d.code === 'VALIDATION_ERROR');
  assert.ok(ev.message);
  await assert.rejects(alice.request('no_such_event', {}), { code: 'UNKNOWN_EVENT' });
  await assert.rejects(carol.request('send_message', { roomId: 'not-joined', text: 'x' }), { code: 'FORBIDDEN' });

  const online = await carol.request('get_online_users');
  assert.ok(online.some((u) => u.userId === `${label}-alice`));

  bob.disconnect();
  await alice.waitFor('user_offline', (d) => d.userId === `${label}-bob`);
  alice.disconnect();
  carol.disconnect();
  return { alice, bob };
}

describe('socket.io-client as the seeds use it', () => {
  it('chats with default transports (polling, then upgraded to websocket)', async () => {
    await flow(undefined, 'def');
  });

  it('chats with transports: ["websocket"]', async () => {
    await flow(['websocket'], 'ws');
  });

  it('chats with transports: ["polling"] through two workers (requests handed to the owner)', async () => {
    await flow(['polling'], 'poll');
    // Several polling clients: the kernel spreads their requests over both workers, so
    // some requests reach the worker that does not own the session.
    const clients = [];
    for (let i = 0; i < 6; i++) {
      const c = sio.connect(base(0), h.token(`pl${i}`, `pl${i}`), { transports: ['polling'] });
      await c.ready;
      await c.request('join_room', { roomId: 'poll-many' });
      clients.push(c);
    }
    const a = await clients[0].request('send_message', { roomId: 'poll-many', text: 'to all pollers' });
    await Promise.all(clients.map((c) => c.waitFor('new_message', (d) => d.id === a.messageId)));
    for (const c of clients) c.disconnect();
    const out = cl.gateways[0].out;
    assert.ok(!/handoff_failed/.test(out), 'no failed handoff');
    const m = await h.httpGet(cl.port(0), '/metrics');
    const handoffs = Number(/^chat_socketio_handoffs_total (\d+)/m.exec(m.body)[1]);
    assert.ok(handoffs > 0, 'some requests reached the other worker and were handed over');
  });

  it('upgrades and keeps the session when the polling requests land on another worker', async () => {
    // Many default-transport clients on a 2-worker gateway: each session's requests are
    // spread by the kernel; all must upgrade and chat.
    const cs = [];
    for (let i = 0; i < 8; i++) {
      const c = sio.connect(base(1), h.token(`up${i}`, `up${i}`));
      await c.ready;
      cs.push(c);
    }
    await h.waitFor(() => cs.every((c) => c.io.engine.transport.name === 'websocket'), { what: 'all upgraded' });
    for (const c of cs) await c.request('join_room', { roomId: 'upgraded' });
    const a = await cs[3].request('send_message', { roomId: 'upgraded', text: 'after upgrade' });
    await Promise.all(cs.map((c) => c.waitFor('new_message', (d) => d.id === a.messageId)));
    for (const c of cs) c.disconnect();
  });

  it('refuses a bad token with connect_error, and an unknown namespace', async () => {
    const bad = sio.connect(base(0), 'not-a-token');
    await assert.rejects(bad.ready, (e) => {
      assert.equal(e.message, 'Invalid token');
      assert.equal(e.data.code, 'UNAUTHORIZED');
      return true;
    });
    bad.close();
    const none = sio.connect(base(0), undefined);
    await assert.rejects(none.ready, (e) => e.message === 'Authentication required');
    none.close();
    const expired = sio.connect(base(0), h.token('x', 'x', { exp: Math.floor(Date.now() / 1000) - 5 }));
    await assert.rejects(expired.ready, (e) => e.message === 'Invalid token');
    expired.close();
    const nsp = sio.connect(base(0), h.token('x', 'x'), { nsp: '/nope' });
    await assert.rejects(nsp.ready, (e) => e.message === 'Invalid namespace');
    nsp.close();
  });

  it('serves the "/" and "/notifications" namespaces too, with user pushes', async () => {
    const n = sio.connect(base(1), h.token('notified', 'N'), { nsp: '/notifications' });
    const root = sio.connect(base(0), h.token('rooted', 'R'), { nsp: '/' });
    await n.ready;
    await root.ready;
    const r = await h.httpRequest({
      port: cl.port(0), path: '/api/users/notified/events', method: 'POST',
      headers: { Authorization: 'Bearer test-api-key', 'Content-Type': 'application/json' },
      body: { event: 'book:new', data: { id: 1 } },
    });
    assert.equal(r.status, 202);
    assert.deepEqual(await n.waitFor('book:new'), { id: 1 });
    assert.ok(await root.request('get_online_users'));
    n.disconnect();
    root.disconnect();
  });
});

describe('both protocols in one room', () => {
  it('a raw WebSocket client and a Socket.IO client chat with each other', async () => {
    const raw = await ChatClient.connect(`${cl.url(0)}?token=${h.token('mix-raw', 'Raw')}`);
    const s = sio.connect(base(1), h.token('mix-sio', 'Sio'));
    await s.ready;
    await raw.request('join_room', { roomId: 'mixed' });
    await s.request('join_room', { roomId: 'mixed' });
    await raw.waitFor('user_joined_room', (d) => d.userId === 'mix-sio');
    const a = await raw.request('send_message', { roomId: 'mixed', text: 'from raw' });
    const b = await s.request('send_message', { roomId: 'mixed', text: 'from socket.io' });
    const m1 = await s.waitFor('new_message', (d) => d.id === a.messageId);
    const m2 = (await raw.waitFor('new_message', (d) => d.id === b.messageId)).data;
    assert.equal(m1.text, 'from raw');
    assert.equal(m2.text, 'from socket.io');
    // The same event payload on both protocols.
    const rawCopy = (await raw.waitFor('new_message', (d) => d.id === a.messageId)).data;
    assert.deepEqual(m1, rawCopy);
    s.emit('typing', { roomId: 'mixed', isTyping: false });
    assert.equal((await raw.waitFor('user_typing')).data.username, 'Sio');
    s.disconnect();
    await raw.close();
  });

  it('seed 004: newMessage from socket.io reaches raw clients as message', async () => {
    const raw = await ChatClient.connect(`${cl.url(1)}?token=${h.token('s4-raw', 'r')}`);
    const s = sio.connect(base(0), h.token('s4-sio', 's'), { nsp: '/' });
    await s.ready;
    await raw.waitFor('user-joined', (d) => d.userId === 's4-sio');
    s.emit('newMessage', 'hello everyone');
    assert.equal((await raw.waitFor('message')).data, 'hello everyone');
    assert.equal(await s.waitFor('message'), 'hello everyone');
    s.disconnect();
    await raw.waitFor('user-left', (d) => d.userId === 's4-sio');
    await raw.close();
  });
});

#!/usr/bin/env node
'use strict';
/*
 * Self-test of the peer against two running processes that share Redis and PostgreSQL:
 *
 *   PEER_JWT_SECRET=S [PEER_DATABASE_URL=postgresql://...] node bench/peer/selftest.js \
 *       [--urls http://127.0.0.1:4001,http://127.0.0.1:4002] [--presence none|global]
 *
 * socket.io-client comes from tests/node_modules (the product's test dependencies). With a
 * database URL it also checks that every acked message is a committed row.
 */
const path = require('path');
const assert = require('assert/strict');
const jwt = require('jsonwebtoken');

const ROOT = path.resolve(__dirname, '..', '..');
const { io } = require(path.join(ROOT, 'tests', 'node_modules', 'socket.io-client'));

function arg(name, env, def) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  if (eq) return eq.slice(name.length + 3);
  return process.env[env] !== undefined ? process.env[env] : def;
}

const URLS = arg('urls', 'PEER_URLS', 'http://127.0.0.1:4001,http://127.0.0.1:4002').split(',');
const SECRET = arg('jwt-secret', 'PEER_JWT_SECRET', '');
const DATABASE = arg('database', 'PEER_DATABASE_URL', '');
const PRESENCE = arg('presence', 'PEER_PRESENCE', 'none');
const NSP = arg('namespace', 'PEER_NAMESPACE', '/chat');
if (!SECRET || URLS.length < 2) {
  console.error('usage: PEER_JWT_SECRET=S node selftest.js [--urls A,B] [--database URL] [--presence none|global]');
  process.exit(2);
}
const [A, B] = URLS;
const RUN = `${process.pid.toString(36)}${Date.now().toString(36)}`;

function token(sub, username, extra = {}, secret = SECRET) {
  return jwt.sign({ sub, username, ...extra }, secret, { algorithm: 'HS256', expiresIn: 600 });
}

const sockets = [];
function connect(base, tok) {
  const s = io(`${base}${NSP}`, {
    auth: tok === undefined ? undefined : { token: tok },
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    timeout: 5000,
  });
  sockets.push(s);
  s.events = [];
  s.onAny((event, data) => s.events.push({ event, data }));
  s.of = (event) => s.events.filter((m) => m.event === event).map((m) => m.data);
  s.waitFor = (event, pred = () => true, ms = 5000) => new Promise((resolve, reject) => {
    const hit = s.events.find((m) => m.event === event && pred(m.data));
    if (hit) { resolve(hit.data); return; }
    const h = (ev, data) => {
      if (ev === event && pred(data)) { clearTimeout(t); s.offAny(h); resolve(data); }
    };
    const t = setTimeout(() => { s.offAny(h); reject(new Error(`timeout waiting for ${event}`)); }, ms);
    s.onAny(h);
  });
  // The raw ack payload (success or {error}).
  s.call = (event, data, ms = 8000) => s.timeout(ms).emitWithAck(event, data);
  s.ready = new Promise((resolve, reject) => {
    s.once('connect', () => resolve(s));
    s.once('connect_error', reject);
  });
  return s;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

let passed = 0;
const failures = [];
async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failures.push(name);
    console.log(`FAIL ${name}\n     ${(e && e.stack ? e.stack : String(e)).split('\n').slice(0, 6).join('\n     ')}`);
  }
}

async function main() {
  let pool = null;
  if (DATABASE) {
    const { Pool } = require('pg');
    pool = new Pool({ connectionString: DATABASE, max: 2 });
  }
  const room = `selftest-${RUN}`;
  const aliceId = String(100000 + (process.pid % 800000)); // numeric sub: userId is a number
  const bobId = `bob-${RUN}`; // string sub
  let alice, alice2, bob, carol;

  await step('bad and missing tokens give connect_error (Invalid token / Authentication required)', async () => {
    const bad = connect(A, token(aliceId, 'alice', {}, 'not-the-secret-not-the-secret-xx'));
    const e1 = await bad.ready.then(() => null, (e) => e);
    assert.ok(e1, 'connected with a bad signature');
    assert.equal(e1.message, 'Invalid token');
    assert.equal(e1.data && e1.data.code, 'UNAUTHORIZED');
    const expired = connect(B, jwt.sign({ sub: aliceId, exp: Math.floor(Date.now() / 1000) - 10 }, SECRET));
    const e2 = await expired.ready.then(() => null, (e) => e);
    assert.equal(e2 && e2.message, 'Invalid token');
    const none = connect(A, undefined);
    const e3 = await none.ready.then(() => null, (e) => e);
    assert.equal(e3 && e3.message, 'Authentication required');
    const hs512 = connect(A, jwt.sign({ sub: aliceId, exp: Math.floor(Date.now() / 1000) + 60 }, SECRET, { algorithm: 'HS512' }));
    const e4 = await hs512.ready.then(() => null, (e) => e);
    assert.equal(e4 && e4.message, 'Invalid token');
  });

  await step('connect on both ports (Bearer prefix accepted)', async () => {
    alice = connect(A, token(aliceId, 'alice'));
    alice2 = connect(B, `Bearer ${token(aliceId, 'alice')}`); // alice's second socket, other process
    bob = connect(B, token(bobId, 'bob'));
    await Promise.all([alice.ready, alice2.ready, bob.ready]);
    assert.equal(alice.io.engine.transport.name, 'websocket');
  });

  await step('join_room from both processes: acks, user_joined_room across processes', async () => {
    const ja = await alice.call('join_room', { roomId: room });
    assert.deepEqual(ja, { joined: room, messages: [] });
    const jb = await bob.call('join_room', { roomId: room });
    assert.deepEqual(jb, { joined: room, messages: [] });
    const ev = await alice.waitFor('user_joined_room', (d) => d.roomId === room);
    assert.deepEqual(ev, { roomId: room, userId: bobId, username: 'bob' });
    await sleep(150);
    // (bob may see alice's own announcement: it travels through Redis after alice's ack)
    assert.equal(bob.of('user_joined_room').filter((d) => d.userId === bobId).length, 0,
      'the joiner got its own user_joined_room');
  });

  let first;
  await step('send_message: ack {sent, messageId, seq} after the insert, new_message to both processes', async () => {
    const ack = await alice.call('send_message', { roomId: room, text: 'hello from A', clientMsgId: `c1-${RUN}` });
    assert.deepEqual(Object.keys(ack), ['sent', 'messageId', 'seq']);
    assert.equal(ack.sent, true);
    assert.equal(typeof ack.messageId, 'number');
    assert.equal(ack.seq, 1);
    if (pool) {
      const r = await pool.query('SELECT seq, body, user_id FROM messages WHERE id = $1', [ack.messageId]);
      assert.equal(r.rowCount, 1, 'acked message is not a committed row');
      assert.equal(r.rows[0].body, 'hello from A');
    }
    const [ma, mb] = await Promise.all([
      alice.waitFor('new_message', (d) => d.seq === 1),
      bob.waitFor('new_message', (d) => d.seq === 1),
    ]);
    assert.deepEqual(ma, mb);
    assert.deepEqual(Object.keys(ma), ['id', 'seq', 'text', 'roomId', 'userId', 'username', 'timestamp']);
    assert.equal(ma.id, ack.messageId);
    assert.equal(ma.text, 'hello from A');
    assert.equal(ma.roomId, room);
    assert.equal(ma.userId, Number(aliceId), 'an all-digits user id is a number');
    assert.equal(ma.username, 'alice');
    assert.match(ma.timestamp, ISO);
    assert.ok(Math.abs(Date.parse(ma.timestamp) - Date.now()) < 60000);
    first = ma;
  });

  await step('send_message from the other process: seq 2, string userId', async () => {
    const ack = await bob.call('send_message', { roomId: room, text: 'réponse de B 👋' });
    assert.equal(ack.seq, 2);
    const m = await alice.waitFor('new_message', (d) => d.seq === 2);
    assert.equal(m.userId, bobId);
    assert.equal(m.text, 'réponse de B 👋');
  });

  await step('repeated clientMsgId: the original ids, no second broadcast', async () => {
    const ack = await alice.call('send_message', { roomId: room, text: 'hello from A', clientMsgId: `c1-${RUN}` });
    assert.deepEqual(ack, { sent: true, messageId: first.id, seq: 1 });
    await sleep(200);
    assert.equal(bob.of('new_message').filter((d) => d.seq === 1).length, 1);
  });

  await step('join_room history: last messages oldest first, byte-identical to the live events; since + truncated', async () => {
    carol = connect(A, token(`carol-${RUN}`, 'carol'));
    await carol.ready;
    const j = await carol.call('join_room', { roomId: room });
    assert.equal(j.joined, room);
    assert.deepEqual(j.messages.map((m) => m.seq), [1, 2]);
    assert.deepEqual(j.messages[0], first);
    assert.equal('truncated' in j, false);
    const js = await carol.call('join_room', { roomId: room, since: 1 });
    assert.deepEqual(js.messages.map((m) => m.seq), [2]);
    assert.equal(js.truncated, false);
    await sleep(100);
    const joins = alice.of('user_joined_room').filter((d) => d.userId === `carol-${RUN}`);
    assert.equal(joins.length, 1, 'a re-join must not announce again');
  });

  await step('validation and membership errors: {error:{message,code}} acks and an `error` event', async () => {
    const before = alice.of('error').length;
    let r = await alice.call('send_message', { roomId: 'bad room!', text: 'x' });
    assert.deepEqual(r, { error: { message: 'roomId must be 1-64 characters of A-Z a-z 0-9 _ . : -', code: 'VALIDATION_ERROR' } });
    r = await alice.call('send_message', { roomId: room, text: ' \n\t ' });
    assert.equal(r.error.code, 'VALIDATION_ERROR');
    assert.equal(r.error.message, 'text must not be empty');
    r = await alice.call('send_message', { roomId: room, text: 'x'.repeat(1001) });
    assert.equal(r.error.message, 'text is too long');
    r = await alice.call('send_message', { roomId: `other-${RUN}`, text: 'x' });
    assert.equal(r.error.code, 'FORBIDDEN');
    r = await alice.call('join_room', { roomId: room, since: -1 });
    assert.equal(r.error.message, 'since must be a non-negative integer');
    r = await alice.call('no_such_event', {});
    assert.equal(r.error.code, 'UNKNOWN_EVENT');
    r = await alice.call('send_message', { roomId: room, text: 'x', clientMsgId: 'y'.repeat(65) });
    assert.equal(r.error.code, 'VALIDATION_ERROR');
    r = await alice.call('direct_message', { recipientId: -1, text: 'x' });
    assert.equal(r.error.message, 'recipientId must be a user id (number or string)');
    r = await alice.call('typing', { roomId: room, isTyping: 'yes' });
    assert.equal(r.error.message, 'isTyping must be a boolean');
    await sleep(100);
    assert.equal(alice.of('error').length - before, 9, 'each failure also emits `error`');
    const astral = '😀'.repeat(1000); // 1000 code points, 2000 UTF-16 units: allowed
    const ok = await alice.call('send_message', { roomId: room, text: astral });
    assert.equal(ok.sent, true);
    assert.equal(ok.seq, 3);
    await bob.waitFor('new_message', (d) => d.seq === 3);
  });

  await step('typing: user_typing to the others (across processes), ack {}', async () => {
    const r = await alice.call('typing', { roomId: room, isTyping: true });
    assert.deepEqual(r, {});
    const t = await bob.waitFor('user_typing', (d) => d.roomId === room);
    assert.deepEqual(t, { roomId: room, userId: Number(aliceId), username: 'alice', isTyping: true });
    await sleep(100);
    assert.equal(alice.of('user_typing').length, 0);
  });

  await step('direct_message: ack {sent, messageId}, to the recipient and the sender\'s other sockets', async () => {
    const ack = await alice.call('direct_message', { recipientId: bobId, text: 'psst', clientMsgId: `d1-${RUN}` });
    assert.deepEqual(Object.keys(ack), ['sent', 'messageId']);
    assert.equal(ack.sent, true);
    const [d1, d2] = await Promise.all([
      bob.waitFor('direct_message', (d) => d.id === ack.messageId),
      alice2.waitFor('direct_message', (d) => d.id === ack.messageId),
    ]);
    assert.deepEqual(d1, d2);
    assert.deepEqual(Object.keys(d1), ['id', 'text', 'senderId', 'senderUsername', 'recipientId', 'timestamp']);
    assert.equal(d1.senderId, Number(aliceId));
    assert.equal(d1.recipientId, bobId);
    assert.match(d1.timestamp, ISO);
    await sleep(150);
    assert.equal(alice.of('direct_message').length, 0, 'the sending socket got its own DM');
    const dup = await alice.call('direct_message', { recipientId: bobId, text: 'psst', clientMsgId: `d1-${RUN}` });
    assert.deepEqual(dup, ack);
    const rev = await bob.call('direct_message', { recipientId: Number(aliceId), text: 'back' });
    await alice.waitFor('direct_message', (d) => d.id === rev.messageId);
    const h = await bob.call('dm_history', { userId: Number(aliceId) });
    assert.deepEqual(h.messages.map((m) => m.text), ['psst', 'back']);
    assert.equal(h.hasMore, false);
  });

  await step('history {messages, hasMore}', async () => {
    const h = await bob.call('history', { roomId: room, limit: 2 });
    assert.deepEqual(h.messages.map((m) => m.seq), [2, 3]);
    assert.equal(h.hasMore, true);
    const h2 = await bob.call('history', { roomId: room, before: 2 });
    assert.deepEqual(h2.messages, [first]);
    assert.equal(h2.hasMore, false);
  });

  await step('get_online_users across both processes', async () => {
    const list = await bob.call('get_online_users');
    assert.ok(Array.isArray(list));
    const ids = list.map((u) => u.userId);
    for (const id of [Number(aliceId), bobId, `carol-${RUN}`]) assert.ok(ids.includes(id), `missing ${id}`);
    assert.equal(ids.filter((id) => id === Number(aliceId)).length, 1, 'a user with two sockets listed twice');
  });

  await step('burst: 300 concurrent sends from both processes, every ack a distinct seq, all delivered', async () => {
    const base = 3;
    const N = 150;
    const sends = [];
    for (let i = 0; i < N; i++) {
      sends.push(alice.call('send_message', { roomId: room, text: `a${i}` }));
      sends.push(bob.call('send_message', { roomId: room, text: `b${i}` }));
    }
    const acks = await Promise.all(sends);
    const seqs = acks.map((a) => a.seq).sort((x, y) => x - y);
    assert.deepEqual(seqs, Array.from({ length: 2 * N }, (_, i) => base + 1 + i), 'seqs are not gapless');
    const want = base + 2 * N;
    // carol joined after seq 2: everyone has seq 3 onwards live.
    const live = (s) => new Set(s.of('new_message').filter((m) => m.roomId === room && m.seq >= 3).map((m) => m.seq));
    for (const s of [alice, bob, carol]) {
      const deadline = Date.now() + 10000;
      while (live(s).size < want - 2) {
        if (Date.now() > deadline) {
          const got = live(s);
          const missing = [];
          for (let q = 3; q <= want; q++) if (!got.has(q)) missing.push(q);
          throw new Error(`not every message delivered: ${got.size}/${want - 2}, missing ${missing.slice(0, 20).join(',')}`);
        }
        await sleep(20);
      }
      const got = s.of('new_message').filter((m) => m.roomId === room).map((m) => m.seq);
      assert.equal(got.length, new Set(got).size, 'duplicate deliveries');
    }
    const order = bob.of('new_message').map((m) => m.seq);
    let inversions = 0;
    for (let i = 1; i < order.length; i++) if (order[i] < order[i - 1]) inversions++;
    console.log(`     (receiver order: ${inversions} inversion(s) among ${order.length} deliveries; the peer does not reorder)`);
    if (pool) {
      const r = await pool.query('SELECT count(*)::int AS n, max(seq)::int AS m FROM messages WHERE room_id = $1', [room]);
      assert.deepEqual(r.rows[0], { n: want, m: want });
    }
  });

  await step('leave_room: ack {left}, user_left_room to the others', async () => {
    const r = await bob.call('leave_room', { roomId: room });
    assert.deepEqual(r, { left: room });
    const ev = await alice.waitFor('user_left_room', (d) => d.userId === bobId);
    assert.deepEqual(ev, { roomId: room, userId: bobId, username: 'bob' });
    const s = await bob.call('send_message', { roomId: room, text: 'after leaving' });
    assert.equal(s.error.code, 'FORBIDDEN');
  });

  if (PRESENCE === 'global') {
    await step('presence global: user_online / user_offline across processes', async () => {
      const did = `dave-${RUN}`;
      const dave = connect(B, token(did, 'dave'));
      await dave.ready;
      await alice.waitFor('user_online', (d) => d.userId === did);
      dave.disconnect();
      await alice.waitFor('user_offline', (d) => d.userId === did);
    });
  } else {
    await step('presence none: no user_online / user_offline', async () => {
      const dave = connect(B, token(`dave-${RUN}`, 'dave'));
      await dave.ready;
      dave.disconnect();
      await sleep(300);
      assert.equal(alice.of('user_online').length + alice.of('user_offline').length, 0);
    });
  }

  for (const s of sockets) s.disconnect();
  if (pool) await pool.end();
  console.log(`\n${passed} passed, ${failures.length} failed${failures.length ? ': ' + failures.join('; ') : ''}`);
  process.exit(failures.length ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

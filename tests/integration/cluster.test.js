'use strict';
// Issue 3: two instances x two workers joined through Redis by their brokers, with
// PostgreSQL behind. Clients are spread over every worker of both instances.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');
const { ChatClient } = require('../lib/clients');

let cl;
before(async () => { cl = await h.startCluster({ instances: 2, workers: 2 }); });
after(h.stopAll);

// Connect clients until every worker of every instance holds at least one member.
async function spreadClients(prefix, perWorker = 1) {
  const clients = [];
  for (let i = 0; i < 2; i++) {
    const seen = {};
    for (let k = 0; k < 40 && !(Object.keys(seen).length === 2 && Object.values(seen).every((v) => v >= perWorker)); k++) {
      const uid = `${prefix}${i}${k}`;
      const c = await ChatClient.connect(`${cl.url(i)}?token=${h.token(uid, `${prefix}-${i}-${k}`)}`);
      c.uid = uid;
      c.instance = i;
      await h.waitFor(() => h.workerOf(cl.gateways[i], uid), { what: `log line of ${uid}` });
      c.worker = h.workerOf(cl.gateways[i], uid);
      seen[c.worker] = (seen[c.worker] || 0) + 1;
      clients.push(c);
    }
    assert.equal(Object.keys(seen).length, 2, `instance ${i}: clients on both workers`);
  }
  return clients;
}

describe('cross-worker and cross-instance delivery', () => {
  it('room messages and typing reach exactly the members, exactly once', async () => {
    const members = await spreadClients('m');
    for (const c of members) await c.request('join_room', { roomId: 'crowd' });
    const outsider = await ChatClient.connect(`${cl.url(1)}?token=${h.token('outsider', 'outsider')}`);
    await h.sleep(300);
    for (const c of members) c.clear();
    outsider.clear();

    // Every member sends one message; every member must see every message once.
    const acks = await Promise.all(members.map((c, i) => c.request('send_message', { roomId: 'crowd', text: `msg ${i}` })));
    const seqs = acks.map((a) => a.seq).sort((a, b) => a - b);
    assert.equal(new Set(seqs).size, members.length, 'distinct seqs');
    await h.waitFor(() => members.every((c) => c.of('new_message').length >= members.length), { what: 'all deliveries' });
    await h.sleep(300);
    for (const c of members) {
      const got = c.of('new_message');
      assert.equal(got.length, members.length, `${c.uid} got ${got.length}`);
      assert.equal(new Set(got.map((m) => m.id)).size, members.length, 'no duplicates');
      const order = got.map((m) => m.seq);
      assert.deepEqual(order, [...order].sort((a, b) => a - b), `${c.uid}: in seq order`);
    }
    // Typing from one member reaches all the others once, not the typist.
    const typist = members[0];
    await typist.request('typing', { roomId: 'crowd', isTyping: true });
    await h.waitFor(() => members.slice(1).every((c) => c.of('user_typing').length === 1), { what: 'typing' });
    await h.sleep(200);
    assert.equal(typist.of('user_typing').length, 0);
    for (const c of members.slice(1)) assert.equal(c.of('user_typing').length, 1);
    // The outsider saw nothing of the room.
    for (const ev of ['new_message', 'user_typing', 'user_joined_room']) assert.equal(outsider.of(ev).length, 0, ev);

    // Redis is subscribed once per host per room: two brokers, not four workers.
    assert.equal(cl.redis.cli('PUBSUB', 'NUMSUB', 'chat:room:crowd').split('\n')[1], '2');
    for (const c of members) await c.close();
    await h.waitFor(() => cl.redis.cli('PUBSUB', 'NUMSUB', 'chat:room:crowd').split('\n')[1] === '0',
      { what: 'unsubscribe after the last member left' });
    await outsider.close();
  });

  it('pushes to a user reach every socket of that user on both instances, once', async () => {
    const a = await ChatClient.connect(`${cl.url(0)}?token=${h.token('pushed', 'pushed')}`);
    const b = await ChatClient.connect(`${cl.url(1)}?token=${h.token('pushed', 'pushed')}`);
    const other = await ChatClient.connect(`${cl.url(1)}?token=${h.token('other', 'other')}`);
    await h.sleep(200);
    const res = await h.httpRequest({
      port: cl.port(0), path: '/api/users/pushed/events', method: 'POST',
      headers: { Authorization: 'Bearer test-api-key', 'Content-Type': 'application/json' },
      body: { event: 'notification', data: { text: 'you have mail' } },
    });
    assert.equal(res.status, 202);
    for (const c of [a, b]) {
      const m = await c.waitFor('notification');
      assert.deepEqual(m.data, { text: 'you have mail' });
    }
    await h.sleep(200);
    assert.equal(a.of('notification').length, 1);
    assert.equal(b.of('notification').length, 1);
    assert.equal(other.of('notification').length, 0);

    // A direct message: to every socket of the recipient, and the sender's other sockets.
    const sender2 = await ChatClient.connect(`${cl.url(0)}?token=${h.token('other', 'other')}`);
    const ack = await other.request('direct_message', { recipientId: 'pushed', text: 'psst' });
    assert.equal(ack.sent, true);
    for (const c of [a, b, sender2]) {
      const dm = await c.waitFor('direct_message', (d) => d.text === 'psst');
      assert.equal(dm.data.senderId, 'other');
      assert.equal(dm.data.senderUsername, 'other');
      assert.equal(dm.data.id, ack.messageId);
    }
    await h.sleep(200);
    assert.equal(other.of('direct_message').length, 0, 'not echoed to the sending socket');
    for (const c of [a, b, sender2]) assert.equal(c.of('direct_message').length, 1);
    for (const c of [a, b, other, sender2]) await c.close();
  });

  it('another service can publish to a room with plain redis-cli PUBLISH', async () => {
    const c = await ChatClient.connect(`${cl.url(1)}?token=${h.token('listener', 'listener')}`);
    await c.request('join_room', { roomId: 'announce' });
    cl.redis.cli('PUBLISH', 'chat:room:announce', '{"event":"announcement","data":{"text":"maintenance at 5"}}');
    const m = await c.waitFor('announcement');
    assert.deepEqual(m.data, { text: 'maintenance at 5' });
    cl.redis.cli('PUBLISH', 'chat:user:listener', '{"event":"ping_user","data":1}');
    assert.equal((await c.waitFor('ping_user')).data, 1);
    await c.close();
  });
});

describe('presence across the cluster', () => {
  it('user_online on the first connection anywhere, user_offline on the last', async () => {
    const watcher = await ChatClient.connect(`${cl.url(0)}?token=${h.token('watcher', 'watcher')}`);
    await h.sleep(200);
    const first = await ChatClient.connect(`${cl.url(1)}?token=${h.token('roamer', 'roamer')}`);
    await watcher.waitFor('user_online', (d) => d.userId === 'roamer');
    const second = await ChatClient.connect(`${cl.url(0)}?token=${h.token('roamer', 'roamer')}`);
    await h.sleep(400);
    assert.equal(watcher.of('user_online').filter((d) => d.userId === 'roamer').length, 1);
    const online = await watcher.request('get_online_users');
    assert.ok(online.some((u) => u.userId === 'roamer' && u.username === 'roamer'));
    assert.ok(online.some((u) => u.userId === 'watcher'));
    await first.close();
    await h.sleep(400);
    assert.equal(watcher.of('user_offline').filter((d) => d.userId === 'roamer').length, 0);
    await second.close();
    await watcher.waitFor('user_offline', (d) => d.userId === 'roamer' && d.username === 'roamer');
    const after = await watcher.request('get_online_users');
    assert.ok(!after.some((u) => u.userId === 'roamer'));
    await watcher.close();
  });
  it('CHAT_PRESENCE_EVENTS=rooms: user_offline reaches the rooms of the last socket only', async () => {
    const rooms = { CHAT_PRESENCE_EVENTS: 'rooms' };
    const rc = await h.startCluster({ instances: 2, workers: 1, redis: cl.redis, pg: cl.pg, env: rooms, brokerEnv: rooms });
    const c = async (i, uid) => ChatClient.connect(`${rc.url(i)}?token=${h.token(uid, uid)}`);
    const mate = await c(0, 'mate');
    const outsider = await c(0, 'outsider');
    const leaver = await c(1, 'leaver');
    await mate.request('join_room', { roomId: 'presence-rooms' });
    await leaver.request('join_room', { roomId: 'presence-rooms' });
    await leaver.close();
    await mate.waitFor('user_offline', (d) => d.userId === 'leaver' && d.username === 'leaver');
    await h.sleep(300);
    assert.equal(outsider.of('user_offline').length, 0, 'not in the room: not told');
    assert.equal(mate.of('user_online').length + outsider.of('user_online').length, 0, 'rooms scope has no user_online');
    await mate.close();
    await outsider.close();
  });
});

'use strict';
// Issue 2: one chat-gateway process, raw WebSocket clients over loopback. The in-memory
// store is used here on purpose (no database, one worker); the PostgreSQL path is covered
// by the storage tests.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const h = require('../lib/harness');
const { ChatClient, RawSocket, encodeFrame, rawHttp } = require('../lib/clients');

let gw;
let url;
const connect = (sub, name, q = '') => ChatClient.connect(`${url}?token=${h.token(sub, name)}${q}`);

before(async () => {
  gw = await h.startGateway({
    env: {
      CHAT_PING_INTERVAL: '400', CHAT_PING_TIMEOUT: '400', CHAT_HANDSHAKE_TIMEOUT: '700',
      CHAT_MAX_OUTBUF: '256k', CHAT_RATE_LIMIT: '20', CHAT_RATE_BURST: '40',
      CHAT_MAX_FRAME_BYTES: '16k', CHAT_MAX_MESSAGE_BYTES: '32k',
    },
  });
  url = `ws://127.0.0.1:${gw.port}/ws`;
});
after(h.stopAll);

describe('chat between users', () => {
  it('two users in a room see messages, typing and presence; a third sees nothing of the room', async () => {
    const alice = await connect('101', 'alice');
    const bob = await connect('102', 'bob');
    await alice.waitFor('user_online', (d) => d.userId === 102 && d.username === 'bob');
    const carol = await connect('103', 'carol');

    const ja = await alice.request('join_room', { roomId: 'lobby' });
    assert.equal(ja.joined, 'lobby');
    assert.deepEqual(ja.messages, []);
    await bob.request('join_room', { roomId: 'lobby' });
    await alice.waitFor('user_joined_room', (d) => d.roomId === 'lobby' && d.userId === 102 && d.username === 'bob');

    const ack = await alice.request('send_message', { roomId: 'lobby', text: 'hello bob' });
    assert.equal(ack.sent, true);
    assert.ok(Number.isInteger(ack.messageId));
    assert.ok(Number.isInteger(ack.seq));
    const nm = await bob.waitFor('new_message', (d) => d.text === 'hello bob');
    assert.equal(nm.data.roomId, 'lobby');
    assert.equal(nm.data.userId, 101);
    assert.equal(nm.data.username, 'alice');
    assert.equal(nm.data.id, ack.messageId);
    assert.equal(nm.data.seq, ack.seq);
    assert.match(nm.data.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    await alice.waitFor('new_message', (d) => d.text === 'hello bob'); // sender included

    assert.deepEqual(await bob.request('typing', { roomId: 'lobby', isTyping: true }), {});
    const t = await alice.waitFor('user_typing');
    assert.deepEqual(t.data, { roomId: 'lobby', userId: 102, username: 'bob', isTyping: true });
    assert.equal(bob.of('user_typing').length, 0, 'typing is not echoed to the typist');

    // The room history is served on a later join.
    const again = await bob.request('join_room', { roomId: 'lobby' });
    assert.equal(again.messages.length, 1);
    assert.equal(again.messages[0].text, 'hello bob');

    const online = await carol.request('get_online_users');
    const ids = online.map((u) => u.userId).sort();
    assert.deepEqual(ids, [101, 102, 103]);

    await h.sleep(200);
    for (const ev of ['new_message', 'user_typing', 'user_joined_room']) {
      assert.equal(carol.of(ev).length, 0, `carol got ${ev}`);
    }
    // Joining twice sent no second user_joined_room.
    assert.equal(alice.of('user_joined_room').length, 1);

    await bob.request('leave_room', { roomId: 'lobby' });
    await alice.waitFor('user_left_room', (d) => d.userId === 102);
    await assert.rejects(bob.request('send_message', { roomId: 'lobby', text: 'x' }), { code: 'FORBIDDEN' });

    await bob.close();
    await alice.waitFor('user_offline', (d) => d.userId === 102);
    await alice.waitFor('user-left', (d) => d.userId === 102);
    await alice.close();
    await carol.close();
  });

  it('seed 004: newMessage broadcasts message to everyone, user-joined to the others', async () => {
    const a = await connect('201', 'ann');
    const b = await connect('202', 'ben');
    await a.waitFor('user-joined', (d) => d.userId === 202 && d.message === 'A user joined the chat');
    assert.equal(b.of('user-joined').filter((d) => d.userId === 202).length, 0);
    b.send({ event: 'newMessage', data: 'hi all' });
    assert.equal((await a.waitFor('message')).data, 'hi all');
    assert.equal((await b.waitFor('message')).data, 'hi all');
    await a.close();
    await b.close();
  });

  it('a user with two connections goes offline only when the last one closes', async () => {
    const watcher = await connect('301', 'watch');
    const d1 = await connect('302', 'dual');
    const d2 = await connect('302', 'dual');
    await watcher.waitFor('user_online', (d) => d.userId === 302);
    await h.sleep(100);
    assert.equal(watcher.of('user_online').filter((d) => d.userId === 302).length, 1);
    await d1.close();
    await h.sleep(150);
    assert.equal(watcher.of('user_offline').filter((d) => d.userId === 302).length, 0);
    await d2.close();
    await watcher.waitFor('user_offline', (d) => d.userId === 302);
    await watcher.close();
  });
});

describe('bad input gets a clear error and nothing else breaks', () => {
  it('refuses bad tokens with 401 before any upgrade', async () => {
    const bad = {
      missing: '',
      garbage: 'token=abc.def.ghi',
      wrongKey: `token=${h.token('1', 'x', {}, 'another-secret-of-sufficient-length-xx')}`,
      expired: `token=${h.token('1', 'x', { exp: Math.floor(Date.now() / 1000) - 10 })}`,
      noExp: `token=${h.token('1', 'x', { exp: undefined })}`,
      stringExp: `token=${h.token('1', 'x', { exp: String(Math.floor(Date.now() / 1000) + 100) })}`,
      futureNbf: `token=${h.token('1', 'x', { nbf: Math.floor(Date.now() / 1000) + 100 })}`,
      algNone: `token=${h.token('1', 'x', {}, h.SECRET, { alg: 'none', typ: 'JWT' })}`,
    };
    for (const [name, q] of Object.entries(bad)) {
      await assert.rejects(ChatClient.connect(`${url}?${q}`), (e) => {
        assert.equal(e.status, 401, name);
        assert.equal(JSON.parse(e.body).code, 'UNAUTHORIZED', name);
        return true;
      });
    }
    // A 16 KiB token does not even fit the request head.
    await assert.rejects(ChatClient.connect(`${url}?token=${'a'.repeat(16384)}`), (e) => e.status === 431);
  });

  it('accepts the token from the Authorization header and the Authentication cookie', async () => {
    const a = await ChatClient.connect(url, { headers: { Authorization: `Bearer ${h.token('401', 'hdr')}` } });
    const b = await ChatClient.connect(url, { headers: { Cookie: `Authentication=${h.token('402', 'cookie')}` } });
    assert.ok(await a.request('get_online_users'));
    await a.close();
    await b.close();
  });

  it('refuses a cross-site Origin with 403, allows localhost', async () => {
    await assert.rejects(ChatClient.connect(`${url}?token=${h.token('1', 'x')}`, { headers: { Origin: 'https://evil.example' } }),
      (e) => e.status === 403);
    const ok = await ChatClient.connect(`${url}?token=${h.token('1', 'x')}`, { headers: { Origin: `http://localhost:${gw.port}` } });
    await ok.close();
  });

  it('answers malformed handshakes with 400, 426 and 431', async () => {
    const v8 = await rawHttp(gw.port, 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
      + 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n');
    assert.equal(v8.status, 426);
    assert.match(v8.raw, /Sec-WebSocket-Version: 13/);
    const nokey = await rawHttp(gw.port, 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
      + 'Sec-WebSocket-Version: 13\r\n\r\n');
    assert.equal(nokey.status, 400);
    assert.equal((await rawHttp(gw.port, 'GARBAGE\r\n\r\n')).status, 400);
    assert.equal((await rawHttp(gw.port, `GET / HTTP/1.1\r\nX-Big: ${'x'.repeat(9000)}\r\n\r\n`)).status, 431);
    let many = 'GET / HTTP/1.1\r\n';
    for (let i = 0; i < 80; i++) many += `X-H${i}: v\r\n`;
    assert.equal((await rawHttp(gw.port, `${many}\r\n`)).status, 431);
  });

  it('keeps the connection open after invalid JSON, unknown events and invalid payloads', async () => {
    const c = await connect('501', 'val');
    c.send('{not json');
    const e1 = await c.waitFor('error', (d, m) => m.id === undefined);
    assert.equal(e1.data.code, 'VALIDATION_ERROR');
    await assert.rejects(c.request('no_such_event', {}), { code: 'UNKNOWN_EVENT' });
    await assert.rejects(c.request('join_room', { roomId: 'bad room!' }), { code: 'VALIDATION_ERROR' });
    await assert.rejects(c.request('join_room', {}), { code: 'VALIDATION_ERROR' });
    await c.request('join_room', { roomId: 'val' });
    await assert.rejects(c.request('send_message', { roomId: 'val', text: '   ' }), { code: 'VALIDATION_ERROR' });
    await assert.rejects(c.request('send_message', { roomId: 'val', text: 'x'.repeat(1001) }), { code: 'VALIDATION_ERROR' });
    await assert.rejects(c.request('send_message', { roomId: 'val', text: 5 }), { code: 'VALIDATION_ERROR' });
    await assert.rejects(c.request('send_message', { roomId: 'other', text: 'x' }), { code: 'FORBIDDEN' });
    await assert.rejects(c.request('typing', { roomId: 'val', isTyping: 'yes' }), { code: 'VALIDATION_ERROR' });
    await assert.rejects(c.request('history', { roomId: 'val', limit: 500 }), { code: 'VALIDATION_ERROR' });
    // Still fine, and fire-and-forget events with an id get exactly one ack {}.
    assert.deepEqual(await c.request('typing', { roomId: 'val', isTyping: false }), {});
    const ok = await c.request('send_message', { roomId: 'val', text: 'still here 🎉', extra: 'ignored' });
    assert.equal(ok.sent, true);
    await h.sleep(100);
    const acks = c.events.filter((m) => m.event === 'ack' || m.event === 'error');
    const ids = acks.filter((m) => m.id !== undefined).map((m) => m.id);
    assert.equal(new Set(ids).size, ids.length, 'one reply per request id');
    await c.close();
  });

  it('rate-limits a flood with RATE_LIMITED and keeps serving others', async () => {
    const flood = await connect('601', 'flood');
    const calm = await connect('602', 'calm');
    const replies = [];
    for (let i = 0; i < 120; i++) replies.push(flood.request('typing', { roomId: 'nowhere', isTyping: true }).catch((e) => e.code));
    const codes = await Promise.all(replies);
    const limited = codes.filter((c) => c === 'RATE_LIMITED').length;
    assert.ok(limited >= 60, `only ${limited} of 120 were rate limited`);
    assert.ok(codes.filter((c) => c === 'FORBIDDEN').length >= 30, 'the burst was served');
    assert.ok(await calm.request('get_online_users'));
    await h.sleep(300);
    assert.ok(await flood.request('get_online_users'), 'the bucket refills');
    await flood.close();
    await calm.close();
  });

  it('closes protocol violations with the right code, others unaffected', async () => {
    const bystander = await connect('701', 'by');
    const q = `/ws?token=${h.token('702', 'raw')}`;
    const cases = [
      ['unmasked frame', encodeFrame(1, '{}', { mask: false }), 1002],
      ['reserved bits', encodeFrame(1, '{}', { rsv: 4 }), 1002],
      ['reserved opcode', encodeFrame(3, ''), 1002],
      ['continuation first', encodeFrame(0, 'x'), 1002],
      ['fragmented ping', encodeFrame(9, 'x', { fin: false }), 1002],
      ['invalid utf-8', encodeFrame(1, Buffer.from([0x7b, 0xc3, 0x28, 0x7d])), 1007],
      ['frame too big', encodeFrame(1, Buffer.alloc(20000, 0x61)), 1009],
      ['binary message', encodeFrame(2, Buffer.from([1, 2, 3])), 1003],
    ];
    for (const [name, bytes, code] of cases) {
      const rs = await RawSocket.connect(gw.port, q);
      rs.write(bytes);
      const f = await rs.waitClose();
      assert.ok(f, `${name}: no close frame`);
      assert.equal(f.code, code, name);
      await rs.endPromise;
      rs.destroy();
    }
    // A message built from many small fragments past the message limit.
    const rs = await RawSocket.connect(gw.port, q);
    rs.write(encodeFrame(1, 'a'.repeat(1000), { fin: false }));
    for (let i = 0; i < 40; i++) rs.write(encodeFrame(0, 'a'.repeat(1000), { fin: false }));
    assert.equal((await rs.waitClose()).code, 1009);
    rs.destroy();
    assert.ok(await bystander.request('get_online_users'));
    await bystander.close();
  });

  it('answers pings, echoes the close code, and closes clients that stop answering pings', async () => {
    const q = `/ws?token=${h.token('801', 'pinger')}`;
    const rs = await RawSocket.connect(gw.port, q);
    rs.write(encodeFrame(9, 'abc'));
    const pong = await rs.waitFrame((f) => f.opcode === 10);
    assert.equal(pong.payload.toString(), 'abc');
    // The server pings; this client never answers and sends nothing: closed after
    // ping interval + timeout (400 + 400 ms).
    const ping = await rs.waitFrame((f) => f.opcode === 9, 2000);
    assert.ok(ping);
    const t0 = Date.now();
    await rs.endPromise;
    assert.ok(Date.now() - t0 < 2000, 'closed after the pong timeout');

    const rs2 = await RawSocket.connect(gw.port, q);
    const closePayload = Buffer.alloc(2);
    closePayload.writeUInt16BE(4001);
    rs2.write(encodeFrame(8, closePayload));
    assert.equal((await rs2.waitClose()).code, 4001);
    await rs2.endPromise;
  });

  it('closes connections that never finish the handshake', async () => {
    const s = net.connect(gw.port, '127.0.0.1');
    await new Promise((r) => s.on('connect', r));
    s.write('GET /ws HTTP/1.1\r\nHost: x\r\n');
    const t0 = Date.now();
    await new Promise((r) => s.on('close', r));
    const dt = Date.now() - t0;
    assert.ok(dt >= 500 && dt < 3000, `closed after ${dt} ms`);
  });

});

describe('slow consumers', () => {
  it('disconnects a client that does not read, with bounded memory', async () => {
    // A gateway of its own: no rate limit in the way, default ping interval.
    const g = await h.startGateway({ env: { CHAT_MAX_OUTBUF: '256k', CHAT_RATE_LIMIT: '100000', CHAT_RATE_BURST: '100000' } });
    const u = `ws://127.0.0.1:${g.port}/ws`;
    const { workers } = h.gatewayPids(g);
    const slow = await RawSocket.connect(g.port, `/ws?token=${h.token('901', 'slow')}`);
    slow.sendText(JSON.stringify({ event: 'join_room', data: { roomId: 'firehose' }, id: 1 }));
    await slow.waitFrame((f) => f.opcode === 1 && f.payload.toString().includes('"joined"'));
    slow.s.pause(); // stops reading: kernel buffers fill, then the server's queue
    const sender = await ChatClient.connect(`${u}?token=${h.token('902', 'fast')}`);
    await sender.request('join_room', { roomId: 'firehose' });
    const rss0 = h.rssKiB(workers[0]);
    const big = 'x'.repeat(1000);
    const metric = async () => Number((/^chat_slow_consumers_total (\d+)/m.exec((await h.httpGet(g.port, '/metrics')).body) || [])[1]);
    let cut = false;
    for (let round = 0; round < 400 && !cut; round++) {
      await Promise.all(Array.from({ length: 100 }, () => sender.request('send_message', { roomId: 'firehose', text: big })));
      cut = (await metric()) > 0;
    }
    assert.ok(cut, 'the slow consumer was disconnected');
    const rss1 = h.rssKiB(workers[0]);
    // (ASan keeps freed memory in quarantine: RSS says nothing under the sanitizer build.)
    if (!h.sanitized) assert.ok(rss1 - rss0 < 16 * 1024, `worker RSS grew by ${rss1 - rss0} KiB`);
    // The sender is unaffected.
    assert.equal((await sender.request('send_message', { roomId: 'firehose', text: 'after' })).sent, true);
    slow.s.resume();
    await slow.endPromise;
    await sender.close();
    await g.stop();
  });
});

describe('HTTP side', () => {
  it('serves health, readiness and Prometheus metrics', async () => {
    const hz = await h.httpGet(gw.port, '/healthz');
    assert.equal(hz.status, 200);
    const rz = await h.httpGet(gw.port, '/readyz');
    assert.equal(rz.status, 200);
    assert.equal(rz.json.ready, true);
    const m = await h.httpGet(gw.port, '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.headers['content-type'], /text\/plain/);
    assert.match(m.body, /^chat_events_in_total\{event="send_message"\} [1-9]/m);
    assert.match(m.body, /^chat_errors_total\{code="RATE_LIMITED"\} [1-9]/m);
    assert.match(m.body, /^chat_deliver_latency_seconds_count \d+/m);
    const nf = await h.httpGet(gw.port, '/nope');
    assert.equal(nf.status, 404);
    assert.equal(nf.json.code, 'NOT_FOUND');
  });
});

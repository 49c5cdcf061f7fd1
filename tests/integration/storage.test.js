'use strict';
// Issue 4: PostgreSQL is the source of truth. Real PostgreSQL and Redis, two instances.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const h = require('../lib/harness');
const { ChatClient } = require('../lib/clients');

let cl;
let dbName;
const conn = (i, uid, name = uid) => ChatClient.connect(`${cl.url(i)}?token=${h.token(uid, name)}`);
const sql = (q) => cl.pg.psql(dbName, q);

before(async () => {
  cl = await h.startCluster({ instances: 2, workers: 2, env: { CHAT_RATE_LIMIT: '1000', CHAT_RATE_BURST: '1000' } });
  dbName = cl.db.split('/').pop();
});
after(h.stopAll);

describe('history and recovery', () => {
  it('serves history on join, newest 50, oldest first, and pages backwards', async () => {
    const a = await conn(0, 'hist-a');
    await a.request('join_room', { roomId: 'hist' });
    for (let i = 1; i <= 60; i++) await a.request('send_message', { roomId: 'hist', text: `m${i}` });
    const b = await conn(1, 'hist-b');
    const j = await b.request('join_room', { roomId: 'hist' });
    assert.equal(j.messages.length, 50);
    assert.equal(j.messages[0].text, 'm11');
    assert.equal(j.messages[49].text, 'm60');
    assert.deepEqual(Object.keys(j.messages[0]), ['id', 'seq', 'text', 'roomId', 'userId', 'username', 'timestamp']);
    const p1 = await b.request('history', { roomId: 'hist', before: j.messages[0].seq, limit: 7 });
    assert.deepEqual(p1.messages.map((m) => m.text), ['m4', 'm5', 'm6', 'm7', 'm8', 'm9', 'm10']);
    assert.equal(p1.hasMore, true);
    const p2 = await b.request('history', { roomId: 'hist', before: p1.messages[0].seq });
    assert.deepEqual(p2.messages.map((m) => m.text), ['m1', 'm2', 'm3']);
    assert.equal(p2.hasMore, false);
    // HTTP API: the same, with the user's JWT.
    const r = await h.httpGet(cl.port(1), '/api/rooms/hist/messages?limit=2', { Authorization: `Bearer ${h.token('hist-b', 'hist-b')}` });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.messages.map((m) => m.text), ['m59', 'm60']);
    assert.equal((await h.httpGet(cl.port(1), '/api/rooms/hist/messages')).status, 401);
    await a.close();
    await b.close();
  });

  it('recovers with since after a disconnect while others kept sending; a gap can be filled', async () => {
    const a = await conn(0, 'rec-a');
    const b = await conn(1, 'rec-b');
    await a.request('join_room', { roomId: 'rec' });
    const jb = await b.request('join_room', { roomId: 'rec' });
    assert.deepEqual(jb.messages, []);
    const first = await a.request('send_message', { roomId: 'rec', text: 'before' });
    await b.waitFor('new_message', (d) => d.seq === first.seq);
    await b.terminate();
    const sent = [];
    for (let i = 0; i < 20; i++) sent.push(await a.request('send_message', { roomId: 'rec', text: `while away ${i}` }));
    const b2 = await conn(1, 'rec-b');
    const rj = await b2.request('join_room', { roomId: 'rec', since: first.seq });
    assert.equal(rj.truncated, false);
    assert.deepEqual(rj.messages.map((m) => m.seq), sent.map((s) => s.seq));
    // A client that received seq n+2 after n fetches n+1 with history.
    const gap = await b2.request('history', { roomId: 'rec', before: sent[2].seq, limit: 1 });
    assert.equal(gap.messages[0].seq, sent[1].seq);
    // Live messages continue after the recovered ones, nothing twice.
    const next = await a.request('send_message', { roomId: 'rec', text: 'after' });
    await b2.waitFor('new_message', (d) => d.seq === next.seq);
    await h.sleep(200);
    assert.equal(b2.of('new_message').length, 1);
    // since caps at 1000 with truncated.
    await a.close();
    await b2.close();
  });

  it('caps since at 1000 messages with truncated: true', async () => {
    sql(`INSERT INTO rooms (id, last_seq) VALUES ('bulk', 1200);
         INSERT INTO messages (room_id, seq, user_id, body) SELECT 'bulk', g, 'seed', 'b' || g FROM generate_series(1, 1200) g;`);
    const c = await conn(0, 'bulk-reader');
    const j = await c.request('join_room', { roomId: 'bulk', since: 100 });
    assert.equal(j.truncated, true);
    assert.equal(j.messages.length, 1000);
    assert.equal(j.messages[0].seq, 101);
    assert.equal(j.messages[999].seq, 1100);
    const j2 = await c.request('join_room', { roomId: 'bulk', since: 1100 });
    assert.equal(j2.truncated, false);
    assert.equal(j2.messages.length, 100);
    await c.close();
  });

  // Found by the chaos run (issue 8): 1000 messages of 1000 characters make a since reply
  // larger than the outbound cap (CHAT_MAX_OUTBUF, 1 MiB here); the connection was closed as
  // a slow consumer on every attempt and the client could never recover.
  it('keeps a since reply within the outbound cap: truncated, and paging gets the rest', async () => {
    sql(`INSERT INTO rooms (id, last_seq) VALUES ('bigsince', 1000);
         INSERT INTO messages (room_id, seq, user_id, body)
         SELECT 'bigsince', g, 'seed', lpad(g::text, 1000, 'x') FROM generate_series(1, 1000) g;`);
    const c = await conn(0, 'big-reader');
    const seqs = [];
    let since = 0;
    let pages = 0;
    for (;;) {
      const j = await c.request('join_room', { roomId: 'bigsince', since });
      pages++;
      assert.ok(j.messages.length > 0 || !j.truncated, 'a truncated page is never empty');
      for (const m of j.messages) { seqs.push(m.seq); since = m.seq; }
      if (!j.truncated) break;
      assert.ok(pages < 20, 'paging ends');
    }
    assert.ok(pages > 1, 'the first reply was cut to fit');
    assert.deepEqual(seqs, Array.from({ length: 1000 }, (_, i) => i + 1));
    assert.equal(c.closed, null, 'still connected');
    // Still a member, live messages flow.
    const a = await c.request('send_message', { roomId: 'bigsince', text: 'live' });
    await c.waitFor('new_message', (d) => d.seq === a.seq);
    await c.close();
  });
});

describe('access control', () => {
  it('refuses a private room without an ACL row and allows it with one; banned users are refused', async () => {
    sql(`INSERT INTO rooms (id, is_private, owner_id) VALUES ('secret', true, 'boss');
         INSERT INTO room_acl (room_id, user_id, role) VALUES ('secret', 'boss', 'owner'), ('secret', 'friend', 'member');
         INSERT INTO rooms (id) VALUES ('open');
         INSERT INTO room_acl (room_id, user_id, role) VALUES ('open', 'troll', 'banned'), ('secret', 'exfriend', 'banned');`);
    const stranger = await conn(0, 'stranger');
    const friend = await conn(1, 'friend');
    const troll = await conn(0, 'troll');
    const exfriend = await conn(1, 'exfriend');
    await assert.rejects(stranger.request('join_room', { roomId: 'secret' }), { code: 'FORBIDDEN' });
    await assert.rejects(stranger.request('send_message', { roomId: 'secret', text: 'let me in' }), { code: 'FORBIDDEN' });
    await assert.rejects(stranger.request('history', { roomId: 'secret' }), { code: 'FORBIDDEN' });
    const r = await h.httpGet(cl.port(0), '/api/rooms/secret/messages', { Authorization: `Bearer ${h.token('stranger', 'stranger')}` });
    assert.equal(r.status, 403);
    assert.equal((await friend.request('join_room', { roomId: 'secret' })).joined, 'secret');
    await friend.request('send_message', { roomId: 'secret', text: 'members only' });
    await assert.rejects(troll.request('join_room', { roomId: 'open' }), { code: 'FORBIDDEN' });
    await assert.rejects(exfriend.request('join_room', { roomId: 'secret' }), { code: 'FORBIDDEN' });
    await h.sleep(200);
    assert.equal(stranger.of('new_message').length, 0);
    for (const c of [stranger, friend, troll, exfriend]) await c.close();
  });

  it('auto-creates unknown rooms as public, owned by the joiner', async () => {
    const c = await conn(0, 'founder');
    await c.request('join_room', { roomId: 'brand-new' });
    assert.equal(sql(`SELECT is_private::text || ',' || owner_id FROM rooms WHERE id = 'brand-new'`), 'false,founder');
    assert.equal(sql(`SELECT role FROM room_acl WHERE room_id = 'brand-new' AND user_id = 'founder'`), 'owner');
    await c.close();
  });

  it('keeps direct messages private to their two parties', async () => {
    const ann = await conn(0, 'dm-ann');
    const bob = await conn(1, 'dm-bob');
    const eve = await conn(0, 'dm-eve');
    await ann.request('direct_message', { recipientId: 'dm-bob', text: 'secret plan' });
    await bob.waitFor('direct_message', (d) => d.text === 'secret plan');
    const hb = await bob.request('dm_history', { userId: 'dm-ann' });
    assert.deepEqual(hb.messages.map((m) => m.text), ['secret plan']);
    assert.equal(hb.messages[0].recipientId, 'dm-bob');
    assert.equal(hb.messages[0].senderId, 'dm-ann');
    // Eve can only ever see her own conversations.
    assert.deepEqual((await eve.request('dm_history', { userId: 'dm-ann' })).messages, []);
    assert.deepEqual((await eve.request('dm_history', { userId: 'dm-bob' })).messages, []);
    await h.sleep(200);
    assert.equal(eve.of('direct_message').length, 0);
    for (const c of [ann, bob, eve]) await c.close();
  });
});

describe('writes', () => {
  it('makes a resend with the same clientMsgId idempotent: one row, one delivery, same ids', async () => {
    const a = await conn(0, 'idem-a');
    const b = await conn(1, 'idem-b');
    await a.request('join_room', { roomId: 'idem' });
    await b.request('join_room', { roomId: 'idem' });
    const first = await a.request('send_message', { roomId: 'idem', text: 'once', clientMsgId: 'c-123' });
    const again = await a.request('send_message', { roomId: 'idem', text: 'different text', clientMsgId: 'c-123' });
    assert.equal(again.messageId, first.messageId);
    assert.equal(again.seq, first.seq);
    // Across rooms and DMs too.
    const dm = await a.request('direct_message', { recipientId: 'idem-b', text: 'x', clientMsgId: 'c-123' });
    assert.equal(dm.messageId, first.messageId);
    await h.sleep(300);
    assert.equal(b.of('new_message').length, 1);
    assert.equal(b.of('new_message')[0].text, 'once');
    assert.equal(b.of('direct_message').length, 0);
    assert.equal(sql(`SELECT count(*) FROM messages WHERE client_msg_id = 'c-123'`), '1');
    // Concurrent duplicates from two connections of the same user: still one row.
    const a2 = await conn(1, 'idem-a');
    const [x, y] = await Promise.all([
      a.request('send_message', { roomId: 'idem', text: 'race', clientMsgId: 'c-race' }),
      a2.request('join_room', { roomId: 'idem' }).then(() => a2.request('send_message', { roomId: 'idem', text: 'race', clientMsgId: 'c-race' })),
    ]);
    assert.equal(x.messageId, y.messageId);
    assert.equal(sql(`SELECT count(*) FROM messages WHERE client_msg_id = 'c-race'`), '1');
    for (const c of [a, b, a2]) await c.close();
  });

  it('stores and returns injection-shaped, binary-looking and 4-byte UTF-8 text verbatim', async () => {
    const a = await conn(0, 'verbatim');
    await a.request('join_room', { roomId: 'verbatim' });
    const texts = [
      "'); DROP TABLE messages;--",
      'Robert"); DELETE FROM users WHERE ("1"="1',
      '\\x00\\xff\\u0000 not a NUL \u0001\u0002\u001f\u007f',
      '😀🙈 𝄞 𠜎 — 4-byte and astral',
      '{"event":"ack","id":1}',
      '<script>alert(1)</script>',
    ];
    for (const t of texts) await a.request('send_message', { roomId: 'verbatim', text: t });
    const got = (await a.request('history', { roomId: 'verbatim' })).messages.map((m) => m.text);
    assert.deepEqual(got, texts);
    const rows = sql(`SELECT body FROM messages WHERE room_id = 'verbatim' ORDER BY seq`).split('\n');
    assert.equal(rows[0], texts[0]);
    assert.equal(rows[3], texts[3]);
    assert.equal(sql(`SELECT count(*) FROM messages`) > 0, true);
    await a.close();
  });

  it('documents a psql query that prints a room history in order with usernames', async () => {
    const a = await conn(0, 'doc-user', 'Doc User');
    await a.request('join_room', { roomId: 'documented' });
    await a.request('send_message', { roomId: 'documented', text: 'first' });
    await a.request('send_message', { roomId: 'documented', text: 'second' });
    await a.close();
    const readme = require('node:fs').readFileSync(`${h.ROOT}/README.md`, 'utf8');
    const m = /```sql\n(SELECT[^`]*room_history[^`]*)```/.exec(readme);
    assert.ok(m, 'README has the history query');
    // Exactly as documented: the query on stdin, the room as a psql variable.
    const out = execFileSync('psql', [cl.db, '-At', '-F', '|', '-v', 'room=documented'], { input: m[1] })
      .toString().trim().split('\n');
    assert.equal(out.length, 2);
    assert.match(out[0], /\|Doc User\|first$/);
    assert.match(out[1], /\|Doc User\|second$/);
  });

  it('upserts users from the token claims, keeping the username current', async () => {
    const a = await conn(0, 'renamer', 'Old Name');
    await h.waitFor(() => sql(`SELECT username FROM users WHERE id = 'renamer'`) === 'Old Name', { what: 'user row' });
    await a.close();
    const b = await conn(1, 'renamer', 'New Name');
    await h.waitFor(() => sql(`SELECT username FROM users WHERE id = 'renamer'`) === 'New Name', { what: 'renamed' });
    await b.close();
  });
});

describe('batched writes (chat_send_messages / chat_send_dms, CHAT_DB_BATCH, CHAT_DB_MAX_PENDING)', () => {
  // One call per batch: the rows' results must be what sending them one by one gives.
  it('gives every row of a batch its own result: seqs in input order, unknown rooms, repeated clientMsgIds', () => {
    const rows = (q) => sql(q).split('\n').map((l) => l.split('|'));
    sql(`INSERT INTO rooms (id) VALUES ('bx-a'), ('bx-b')`);
    // idx|id|seq|dup|kind|body|room|err (created_ms checked apart)
    const q = (rooms, users, bodies, cmids) => rows(`SELECT idx, id, seq, dup, kind, body, room, err, created_ms
      FROM chat_send_messages('{${rooms}}', '{${users}}', '{${bodies}}', '{${cmids}}')`);
    const r1 = q('bx-a,bx-b,bx-a,bx-nope,bx-a', 'bxu1,bxu2,bxu1,bxu1,bxu3', 't1,t2,t3,t4,t5', 'NULL,NULL,NULL,NULL,NULL');
    assert.deepEqual(r1.map((r) => [r[0], r[2], r[3], r[7]]),
      [['1', '1', 'f', ''], ['2', '1', 'f', ''], ['3', '2', 'f', ''], ['4', '', 'f', 'not_found'], ['5', '3', 'f', '']]);
    // A clientMsgId repeated inside the batch (in another room), and one on an unknown room
    // (claims nothing: its id is free afterwards).
    const r2 = q('bx-a,bx-b,bx-a,bx-nope,bx-b', 'bxu1,bxu1,bxu1,bxu1,bxu2', 'x1,x2,x3,x4,x5', 'k1,k1,k2,k3,k1');
    assert.deepEqual(r2.map((r) => r.slice(2, 8)), [
      ['4', 'f', 'r', '', '', ''],
      ['4', 't', 'r', 'x1', 'bx-a', ''],
      ['5', 'f', 'r', '', '', ''],
      ['', 'f', 'r', '', '', 'not_found'],
      ['2', 'f', 'r', '', '', ''],
    ]);
    assert.equal(r2[1][1], r2[0][1], 'the repeat returns the first row\'s id');
    assert.equal(r2[1][8], r2[0][8], 'and its timestamp');
    // Repeats of earlier batches, a DM claim seen from the room function and the reverse.
    const r3 = q('bx-b,bx-a', 'bxu1,bxu1', 'y1,y2', 'k2,k3');
    assert.deepEqual(r3.map((r) => r.slice(2, 8)), [['5', 't', 'r', 'x3', 'bx-a', ''], ['6', 'f', 'r', '', '', '']]);
    const d = rows(`SELECT idx, id, dup, kind, body FROM chat_send_dms('{bxu1,bxu1,bxu2,bxu1}', '{bxu2,bxu3,bxu1,bxu2}',
      '{d1,d2,d3,d4}', '{k9,k1,NULL,k9}')`);
    assert.deepEqual(d.map((r) => [r[0], r[2], r[3], r[4]]),
      [['1', 'f', 'd', ''], ['2', 't', 'r', 'x1'], ['3', 'f', 'd', ''], ['4', 't', 'd', 'd1']]);
    assert.equal(d[1][1], r2[0][1]);
    assert.equal(d[3][1], d[0][1]);
    const r4 = q('bx-b', 'bxu1', 'z', 'k9');
    assert.deepEqual(r4[0].slice(1, 8), [d[0][1], '', 't', 'd', 'd1', '', '']);
    assert.equal(sql(`SELECT string_agg(room_id || ':' || seq || ':' || body, ' ' ORDER BY id) FROM messages
      WHERE room_id LIKE 'bx-%'`), 'bx-a:1:t1 bx-b:1:t2 bx-a:2:t3 bx-a:3:t5 bx-a:4:x1 bx-a:5:x3 bx-b:2:x5 bx-a:6:y2');
    assert.equal(sql(`SELECT count(*) FROM client_msg_ids WHERE user_id IN ('bxu1', 'bxu2') AND message_id IS NULL`), '0');
    assert.equal(sql(`SELECT last_seq FROM rooms WHERE id = 'bx-a'`), '6');
    assert.equal(sql(`SELECT count(*) FROM chat_send_messages('{}', '{}', '{}', '{}')`), '0');
    // One row without a clientMsgId takes a shorter path: same results.
    assert.deepEqual(q('bx-b', 'bxu1', 'solo', 'NULL')[0].slice(2, 8), ['3', 'f', 'r', '', '', '']);
    assert.deepEqual(q('bx-nope', 'bxu1', 'solo', 'NULL')[0].slice(1, 8), ['', '', 'f', 'r', '', '', 'not_found']);
    const solo = rows(`SELECT idx, id, dup, kind, body, created_ms FROM chat_send_dms('{bxu1}', '{bxu2}', '{solo}', '{NULL}')`)[0];
    assert.deepEqual([solo[0], solo[2], solo[3], solo[4]], ['1', 'f', 'd', '']);
    assert.equal(sql(`SELECT body FROM direct_messages WHERE id = ${solo[1]}`), 'solo');
    assert.ok(Math.abs(Number(solo[5]) - Date.now()) < 60000);
  });

  it('refuses sends at once beyond CHAT_DB_MAX_PENDING while the database stalls, and acks the queued ones in order after', async () => {
    const one = await h.startCluster({
      instances: 1, workers: 1, pg: cl.pg, dbUrl: cl.db, redis: cl.redis,
      env: { CHAT_RATE_LIMIT: '1000', CHAT_RATE_BURST: '1000', CHAT_DB_BATCH: '3', CHAT_DB_MAX_PENDING: '10' },
    });
    const a = await ChatClient.connect(`${one.url(0)}?token=${h.token('stall-a', 'stall-a')}`);
    await a.request('join_room', { roomId: 'stall' });
    // Stall the writes: another session holds the room's row lock.
    const locker = spawn('psql', ['-h', '127.0.0.1', '-p', String(cl.pg.port), '-U', 'postgres', '-d', dbName, '-q'],
      { stdio: ['pipe', 'ignore', 'inherit'] });
    locker.stdin.write(`BEGIN; SELECT 1 FROM rooms WHERE id = 'stall' FOR UPDATE;\n`);
    await h.waitFor(() => sql(`SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
      WHERE c.relname = 'rooms' AND l.mode = 'RowShareLock' AND l.granted AND l.pid <> pg_backend_pid()`) !== '0',
    { what: 'row lock held' });
    try {
      const first = a.request('send_message', { roomId: 'stall', text: 's0' }, 20000);
      await h.sleep(300); // s0 is in flight, blocked on the lock
      const rest = [];
      for (let i = 1; i <= 20; i++) {
        rest.push(a.request('send_message', { roomId: 'stall', text: `s${i}` }, 20000).then(
          (ack) => ({ ack }), (err) => ({ err, at: Date.now() })));
      }
      const t0 = Date.now();
      // 1 in flight + 9 queued = 10; the other 11 are refused without waiting for the database.
      await h.waitFor(() => a.events.filter((m) => m.event === 'error').length === 11, { what: '11 refusals', timeout: 3000 });
      assert.ok(Date.now() - t0 < 3000);
      const errs = a.events.filter((m) => m.event === 'error').map((m) => m.data);
      for (const e of errs) {
        assert.equal(e.code, 'UNAVAILABLE');
        assert.match(e.message, /busy/);
      }
      assert.equal(sql(`SELECT count(*) FROM messages WHERE room_id = 'stall'`), '0');
      locker.stdin.end('COMMIT;\n');
      const acks = [await first, ...(await Promise.all(rest))];
      const ok = acks.map((x, i) => (i === 0 ? { ack: x } : x)).filter((x) => x.ack);
      assert.equal(ok.length, 10);
      // Queued in send order, stored in send order, in calls of at most 3 rows.
      assert.deepEqual(ok.map((x) => x.ack.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.equal(sql(`SELECT string_agg(body, ',' ORDER BY seq) FROM messages WHERE room_id = 'stall'`),
        's0,s1,s2,s3,s4,s5,s6,s7,s8,s9');
      const m = (await h.httpGet(one.port(0), '/metrics')).body;
      assert.match(m, /^chat_db_busy_total 11$/m);
      // Nothing is left behind: the next send goes straight through.
      assert.equal((await a.request('send_message', { roomId: 'stall', text: 'after' })).seq, 11);
    } finally {
      if (locker.exitCode === null) locker.kill();
      await a.close();
      for (const g of one.gateways) await g.stop();
      for (const b of one.brokers) await b.stop();
    }
  });
});

'use strict';
// Issues 3 and 4: faults. Workers, brokers, Redis and PostgreSQL are killed under clients;
// nothing acked is lost, healthy clients stay connected, and the cluster heals by itself.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');
const { ChatClient } = require('../lib/clients');

let cl;
let dbName;
const conn = (i, uid) => ChatClient.connect(`${cl.url(i)}?token=${h.token(uid, uid)}`);

before(async () => {
  cl = await h.startCluster({
    instances: 2, workers: 2,
    env: { CHAT_RATE_LIMIT: '1000', CHAT_RATE_BURST: '1000' },
    brokerEnv: { CHAT_PRESENCE_TTL: '6' },
  });
  dbName = cl.db.split('/').pop();
});
after(h.stopAll);

async function members(room, n, prefix) {
  const cs = [];
  for (let i = 0; i < n; i++) {
    const c = await conn(i % 2, `${prefix}${i}`);
    c.uid = `${prefix}${i}`;
    c.instance = i % 2;
    await c.request('join_room', { roomId: room });
    cs.push(c);
  }
  return cs;
}

// Send from `from` and wait until every client in `to` received it.
async function roundTrip(from, to, room, text, timeout = 5000) {
  const a = await from.request('send_message', { roomId: room, text });
  await Promise.all(to.map((c) => c.waitFor('new_message', (d) => d.seq === a.seq, timeout)));
  return a;
}

describe('process faults', () => {
  it('kill -9 of a worker: re-forked within a second, clients of other workers untouched', async () => {
    const cs = await members('wk', 8, 'wk');
    const gw = cl.gateways[0];
    const before = h.gatewayPids(gw).workers;
    // The victim: the worker serving the first client of instance 0.
    const victimName = h.workerOf(gw, 'wk0');
    const started = [...gw.out.matchAll(/\[[^\]/]*\/(w\d+)\] worker_started pid=(\d+)/g)];
    const victim = Number(started.filter((m) => m[1] === victimName).pop()[2]);
    assert.ok(before.includes(victim));
    const healthy = cs.filter((c) => c.instance === 1 || h.workerOf(gw, c.uid) !== victimName);
    process.kill(victim, 'SIGKILL');
    const t0 = Date.now();
    await h.waitFor(() => {
      const now = h.gatewayPids(gw).workers;
      return now.length === before.length && !now.includes(victim);
    }, { timeout: 3000, what: 're-forked worker' });
    assert.ok(Date.now() - t0 < 1500, `re-forked after ${Date.now() - t0} ms`);
    await h.waitHttp(gw.port, '/readyz', 5000);
    // Clients of the dead worker were dropped; everyone else still chats.
    const alive = healthy.filter((c) => !c.closed);
    assert.ok(alive.length >= 4, `${alive.length} healthy clients left`);
    for (const c of alive) assert.equal(c.closed, null, `${c.uid} was disconnected`);
    await roundTrip(alive[0], alive, 'wk', 'after the worker died');
    for (const c of cs) await c.close();
  });

  it('kill -9 of the broker: restarted, delivery resumes within 2 s, nobody disconnected', async () => {
    const cs = await members('brk', 6, 'brk');
    await roundTrip(cs[0], cs, 'brk', 'before');
    const b = cl.brokers[0];
    const pid = b.pid();
    process.kill(pid, 'SIGKILL');
    const t0 = Date.now();
    await h.waitFor(() => b.pid() !== pid, { what: 'broker restart' });
    // Delivery across both instances works again (retry until it does).
    let ok = false;
    while (!ok && Date.now() - t0 < 2000) {
      try {
        await roundTrip(cs[1], cs, 'brk', `after ${Date.now() - t0}`, 400);
        ok = true;
      } catch (_) { /* not yet */ }
    }
    assert.ok(ok, 'delivery resumed within 2 s');
    for (const c of cs) assert.equal(c.closed, null, `${c.uid} was disconnected`);
    for (const c of cs) await c.close();
  });

  it('SIGSTOP/SIGCONT of the broker loses nothing', async () => {
    const cs = await members('stop', 4, 'stp');
    const b = cl.brokers[1];
    process.kill(b.pid(), 'SIGSTOP');
    const acks = [];
    for (let i = 0; i < 10; i++) acks.push(await cs[1].request('send_message', { roomId: 'stop', text: `frozen ${i}` }).catch((e) => e));
    process.kill(b.pid(), 'SIGCONT');
    const ok = acks.filter((a) => a.sent);
    for (const a of ok) await Promise.all(cs.map((c) => c.waitFor('new_message', (d) => d.seq === a.seq, 5000)));
    for (const c of cs) await c.close();
  });

  it('while Redis is down, sends get UNAVAILABLE; after a restart delivery resumes', async () => {
    const cs = await members('rds', 4, 'rds');
    await roundTrip(cs[0], cs, 'rds', 'before');
    await cl.redis.stop('SIGKILL');
    await h.waitFor(async () => (await h.httpGet(cl.port(0), '/readyz')).status === 503, { what: 'readyz 503' });
    await assert.rejects(cs[0].request('send_message', { roomId: 'rds', text: 'lost?' }), { code: 'UNAVAILABLE' });
    for (const c of cs) assert.equal(c.closed, null);
    await cl.redis.restart();
    await h.waitFor(async () => (await h.httpGet(cl.port(0), '/readyz')).status === 200
      && (await h.httpGet(cl.port(1), '/readyz')).status === 200, { what: 'ready again', timeout: 10000 });
    await roundTrip(cs[3], cs, 'rds', 'after');
    for (const c of cs) await c.close();
  });

  it('CLIENT KILL TYPE pubsub: re-subscribed, and what was published meanwhile is recovered', async () => {
    const cs = await members('kill', 4, 'kil');
    await roundTrip(cs[0], cs, 'kill', 'before');
    cl.redis.cli('CLIENT', 'KILL', 'TYPE', 'pubsub');
    const sent = [];
    for (let i = 0; i < 5; i++) sent.push(await cs[0].request('send_message', { roomId: 'kill', text: `k${i}` }).catch(() => null));
    for (const a of sent.filter(Boolean)) {
      await Promise.all(cs.map((c) => c.waitFor('new_message', (d) => d.seq === a.seq, 5000)));
    }
    for (const c of cs) {
      const seqs = c.of('new_message').map((m) => m.seq);
      assert.equal(new Set(seqs).size, seqs.length, 'no duplicates');
    }
    for (const c of cs) await c.close();
  });
});

describe('database faults', () => {
  it('pg_ctl stop -m immediate while clients send: every acked message is stored, none acked unsaved', async () => {
    const cs = await members('pgdown', 4, 'pgd');
    const acked = [];
    const failed = [];
    let sending = true;
    const loops = cs.map(async (c, k) => {
      let i = 0;
      while (sending) {
        const cmid = `${c.uid}-${i++}`;
        try {
          const a = await c.request('send_message', { roomId: 'pgdown', text: cmid, clientMsgId: cmid });
          acked.push({ ...a, cmid });
        } catch (e) {
          failed.push(e.code);
          await h.sleep(50);
        }
        if (k === 0 && i % 10 === 0) await h.sleep(1);
      }
    });
    await h.sleep(500);
    cl.pg.stop('immediate');
    await h.sleep(1000);
    cl.pg.start();
    await h.waitFor(async () => (await h.httpGet(cl.port(0), '/readyz')).status === 200
      && (await h.httpGet(cl.port(1), '/readyz')).status === 200, { what: 'gateways recover', timeout: 15000 });
    const n0 = acked.length;
    await h.waitFor(() => acked.length > n0 + 10, { what: 'sends succeed again', timeout: 10000 });
    sending = false;
    await Promise.all(loops);
    assert.ok(failed.length > 0 && failed.every((c) => c === 'UNAVAILABLE'), `failures: ${[...new Set(failed)]}`);
    const stored = new Set(cl.pg.psql(dbName, "SELECT client_msg_id FROM messages WHERE room_id = 'pgdown'").split('\n'));
    const missing = acked.filter((a) => !stored.has(a.cmid));
    assert.deepEqual(missing, [], 'every acked message is in the table');
    for (const c of cs) assert.equal(c.closed, null, 'clients stayed connected');
    for (const c of cs) await c.close();
  });
});

describe('instance death', () => {
  it('kill -9 of a whole instance: its users go offline for the others', async () => {
    const extra = await h.startCluster({
      instances: 1, workers: 1, redis: cl.redis, pg: cl.pg, brokerEnv: { CHAT_PRESENCE_TTL: '6' },
    });
    const watcher = await conn(0, 'watcher-x');
    const doomed = await ChatClient.connect(`${extra.url(0)}?token=${h.token('doomed', 'doomed')}`);
    await watcher.waitFor('user_online', (d) => d.userId === 'doomed');
    const t0 = Date.now();
    // A host dying: the broker goes first. (Killing the workers first lets the broker see
    // them go and run the OFFLINE script in Redis; if it then dies before the reply comes
    // back, the transition is done but its user_offline is never published, and the
    // reaper finds nothing left to report. A known race, recorded in issue 8's note.)
    extra.brokers[0].stopped = true;
    process.kill(extra.brokers[0].pid(), 'SIGKILL');
    for (const p of h.gatewayPids(extra.gateways[0]).workers) process.kill(p, 'SIGKILL');
    extra.gateways[0].killGroup('SIGKILL');
    await watcher.waitFor('user_offline', (d) => d.userId === 'doomed', 30000).catch((e) => {
      const tail = cl.brokers.map((b) => b.out().split('\n').slice(-12).join('\n')).join('\n---\n');
      throw new Error(`${e.message}\n--- brokers ---\n${tail}\n--- redis ---\n${cl.redis.cli('ZRANGE', 'chat:presence:instances', '0', '-1', 'WITHSCORES')}`);
    });
    const dt = Date.now() - t0;
    assert.ok(dt < 30000, `offline after ${dt} ms`);
    assert.ok(!(await watcher.request('get_online_users')).some((u) => u.userId === 'doomed'));
    await watcher.close();
    doomed.terminate();
  });
  it('a broker killed between its OFFLINE script and the reply: user_offline still goes out', async () => {
    // The script runs in Redis; the broker never hears back. The event must not depend on
    // the reply: the reaper later finds nothing left to report for this instance.
    const proxy = await h.startTcpProxy(cl.redis.port);
    const extra = await h.startCluster({
      instances: 1, workers: 1, redis: cl.redis, pg: cl.pg, redisUrl: proxy.url,
      brokerEnv: { CHAT_PRESENCE_TTL: '6' },
    });
    const watcher = await conn(0, 'watcher-y');
    const doomed = await ChatClient.connect(`${extra.url(0)}?token=${h.token('doomed2', 'doomed2')}`);
    await watcher.waitFor('user_online', (d) => d.userId === 'doomed2');
    proxy.hold(true); // Redis -> broker: nothing gets through from here on
    extra.gateways[0].killGroup('SIGKILL');
    await proxy.sent(/doomed2/); // the OFFLINE script went out
    await h.waitFor(() => cl.redis.cli('HEXISTS', 'chat:online', 'doomed2') === '0', { what: 'OFFLINE ran' });
    extra.brokers[0].stopped = true;
    process.kill(extra.brokers[0].pid(), 'SIGKILL');
    await watcher.waitFor('user_offline', (d) => d.userId === 'doomed2', 10000);
    assert.ok(!(await watcher.request('get_online_users')).some((u) => u.userId === 'doomed2'));
    await watcher.close();
    doomed.terminate();
    proxy.close();
  });
});

describe('presence ordering', () => {
  it('user_online goes out only once the user can be reached, even with a slow SUBSCRIBE', async () => {
    // A service that reacts to user_online by pushing to the user (plain Redis, no database
    // on the way) must not publish before the user's host subscribed to its channel. The
    // proxy makes that host's SUBSCRIBE reach Redis 500 ms late.
    const proxy = await h.startTcpProxy(cl.redis.port);
    const extra = await h.startCluster({
      instances: 1, workers: 1, redis: cl.redis, pg: cl.pg, redisUrl: proxy.url,
    });
    const net = require('node:net');
    const resp = (...a) => `*${a.length}\r\n${a.map((x) => `$${Buffer.byteLength(x)}\r\n${x}\r\n`).join('')}`;
    const pub = net.connect(cl.redis.port, '127.0.0.1');
    const sub = net.connect(cl.redis.port, '127.0.0.1');
    let seen = '';
    sub.on('data', (d) => {
      seen += d.toString();
      for (const m of seen.matchAll(/"user_online","data":\{"userId":"(slowsub\d)"/g)) {
        pub.write(resp('PUBLISH', `chat:user:${m[1]}`, `{"event":"notification","data":{"to":"${m[1]}"}}`));
      }
      seen = seen.slice(-200).replace(/user_online/g, '');
    });
    sub.write(resp('SUBSCRIBE', 'chat:all'));
    await h.sleep(100);
    proxy.lag(/SUBSCRIBE/, 500);
    for (const uid of ['slowsub1', 'slowsub2']) {
      const c = await ChatClient.connect(`${extra.url(0)}?token=${h.token(uid, uid)}`);
      await c.waitFor('notification', (d) => d.to === uid, 3000);
      await c.close();
    }
    pub.destroy();
    sub.destroy();
  });
});

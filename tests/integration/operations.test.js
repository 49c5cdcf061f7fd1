'use strict';
// Issue 6: deploy and operate. The process topology behind real haproxy, readiness,
// metrics, graceful drain under load, the HTTP API, chatctl, JSON logs, and the deploy
// files' validation.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const h = require('../lib/harness');
const { ChatClient } = require('../lib/clients');
const sio = require('../lib/sio');

let cl;
let lb;
let dbName;
const API = { Authorization: 'Bearer test-api-key', 'Content-Type': 'application/json' };

before(async () => {
  cl = await h.startCluster({
    instances: 2, workers: 2,
    env: { CHAT_RATE_LIMIT: '1000', CHAT_RATE_BURST: '1000', CHAT_DRAIN_SECONDS: '6' },
  });
  dbName = cl.db.split('/').pop();
  lb = await h.startHaproxy(cl);
});
after(h.stopAll);

function metric(body, name) {
  const re = new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} ([0-9.e+-]+)$`, 'm');
  const m = re.exec(body);
  return m ? Number(m[1]) : NaN;
}

describe('deploy files', () => {
  it('docker-compose.yml passes `docker-compose config`', () => {
    execFileSync('docker-compose', ['-f', path.join(h.ROOT, 'docker-compose.yml'), 'config', '-q'],
      { env: { ...process.env, CHAT_JWT_SECRET: 'x'.repeat(40) } });
  });

  it('deploy/nginx.conf and the haproxy configuration pass their checkers', () => {
    const conf = fs.readFileSync(path.join(h.ROOT, 'deploy', 'nginx.conf'), 'utf8')
      .replace(/chat-a:3000/g, '127.0.0.1:1').replace(/chat-b:3000/g, '127.0.0.1:2');
    const dir = h.tmpdir('nginx-');
    fs.writeFileSync(path.join(dir, 'nginx.conf'), conf.replace('worker_processes auto;', `worker_processes auto;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;`));
    execFileSync('nginx', ['-t', '-q', '-p', dir, '-c', path.join(dir, 'nginx.conf')]);
    const cfg = execFileSync(path.join(h.ROOT, 'scripts', 'haproxy-config'), ['3000', 'a=127.0.0.1:1']);
    fs.writeFileSync(path.join(dir, 'h.cfg'), cfg);
    execFileSync('haproxy', ['-c', '-q', '-f', path.join(dir, 'h.cfg')]);
  });
});

describe('behind haproxy', () => {
  it('Socket.IO (polling and upgrade) and raw WebSocket clients chat through one port, across instances', async () => {
    const base = `http://127.0.0.1:${lb.port}`;
    const poller = sio.connect(base, h.token('lb-poll', 'poller'), { transports: ['polling'] });
    const upg = sio.connect(base, h.token('lb-upg', 'upgrader'));
    await poller.ready;
    await upg.ready;
    const raws = [];
    for (let i = 0; i < 4; i++) raws.push(await ChatClient.connect(`ws://127.0.0.1:${lb.port}/ws?token=${h.token(`lb-raw${i}`, `raw${i}`)}`));
    // haproxy spread the connections over both instances.
    await h.waitFor(() => cl.gateways.every((g) => /user=lb-raw/.test(g.out)), { what: 'raw clients on both instances' });
    for (const c of [poller, upg]) await c.request('join_room', { roomId: 'lb' });
    for (const c of raws) await c.request('join_room', { roomId: 'lb' });
    // Many polling round trips: every one reached the instance holding the session.
    for (let i = 0; i < 5; i++) {
      const a = await poller.request('send_message', { roomId: 'lb', text: `poll ${i}` });
      await Promise.all(raws.map((r) => r.waitFor('new_message', (d) => d.id === a.messageId)));
      await upg.waitFor('new_message', (d) => d.id === a.messageId);
    }
    const b = await raws[3].request('send_message', { roomId: 'lb', text: 'from raw' });
    await poller.waitFor('new_message', (d) => d.id === b.messageId);
    assert.equal(poller.io.engine.transport.name, 'polling');
    poller.disconnect();
    upg.disconnect();
    for (const r of raws) await r.close();
  });

  it('serves the web client at / through the load balancer', async () => {
    const r = await h.httpGet(lb.port, '/');
    if (fs.existsSync(path.join(h.ROOT, 'web', 'index.html'))) {
      assert.equal(r.status, 200);
      assert.match(r.headers['content-type'], /text\/html/);
      assert.match(r.headers['content-security-policy'], /default-src 'self'/);
    } else {
      assert.equal(r.status, 404);
    }
  });
});

describe('health and metrics', () => {
  it('turns /readyz 503 while Redis or PostgreSQL is down, and 200 when they return', async () => {
    const ready = async (i) => (await h.httpGet(cl.port(i), '/readyz'));
    assert.equal((await ready(0)).status, 200);
    await cl.redis.stop('SIGKILL');
    await h.waitFor(async () => (await ready(0)).status === 503 && (await ready(1)).status === 503, { what: 'redis down' });
    assert.equal((await ready(0)).json.redis, false);
    await cl.redis.restart();
    await h.waitFor(async () => (await ready(0)).status === 200 && (await ready(1)).status === 200, { what: 'redis back', timeout: 15000 });
    cl.pg.stop('immediate');
    await h.waitFor(async () => (await ready(1)).status === 503, { what: 'pg down', timeout: 15000 });
    assert.equal((await ready(1)).json.database, false);
    cl.pg.start();
    await h.waitFor(async () => (await ready(0)).status === 200 && (await ready(1)).status === 200, { what: 'pg back', timeout: 20000 });
  });

  it('counts known traffic in /metrics', async () => {
    const before = (await h.httpGet(cl.port(0), '/metrics')).body;
    const a = await ChatClient.connect(`${cl.url(0)}?token=${h.token('met-a', 'm')}`);
    const b = await ChatClient.connect(`${cl.url(0)}?token=${h.token('met-b', 'm')}`);
    await a.request('join_room', { roomId: 'metrics' });
    await b.request('join_room', { roomId: 'metrics' });
    for (let i = 0; i < 5; i++) await a.request('send_message', { roomId: 'metrics', text: `m${i}` });
    await b.waitFor('new_message', (d) => d.text === 'm4');
    await assert.rejects(a.request('send_message', { roomId: 'metrics', text: '' }), { code: 'VALIDATION_ERROR' });
    const after2 = (await h.httpGet(cl.port(0), '/metrics')).body;
    const d = (n) => metric(after2, n) - metric(before, n);
    assert.equal(d('chat_events_in_total{event="send_message"}'), 6);
    assert.equal(d('chat_acked_sends_total'), 5);
    assert.equal(d('chat_errors_total{code="VALIDATION_ERROR"}'), 1);
    assert.ok(d('chat_fanout_deliveries_total') >= 10, 'each message to both members');
    assert.ok(d('chat_events_out_total{event="new_message"}') >= 10);
    assert.ok(d('chat_deliver_latency_seconds_count') >= 5);
    assert.ok(d('chat_db_latency_seconds_count') >= 5);
    assert.ok(metric(after2, 'chat_connections{protocol="websocket"}') >= 2);
    // The broker reports Redis latency with its status, every second.
    await h.waitFor(async () => metric((await h.httpGet(cl.port(0), '/metrics')).body, 'chat_redis_latency_seconds_count') >= 1,
      { what: 'a Redis latency sample' });
    assert.match(after2, /^# TYPE chat_deliver_latency_seconds histogram$/m);
    assert.match(after2, /^chat_outbound_queued_bytes \d+$/m);
    await a.close();
    await b.close();
  });
});

describe('graceful drain', () => {
  it('SIGTERM under load: readiness fails, clients move to the other instance, nothing acked is lost', async () => {
    const extra = await h.startCluster({
      instances: 1, workers: 2, redis: cl.redis, pg: cl.pg, dbUrl: cl.db,
      env: { CHAT_RATE_LIMIT: '1000', CHAT_RATE_BURST: '1000', CHAT_DRAIN_SECONDS: '5' },
    });
    // A third instance of the same cluster (same Redis and database), drained under load.
    const target = extra.gateways[0];
    const acked = [];
    const drained = []; /* how each sender learned to move: a close code or UNAVAILABLE */
    let running = true;
    const receiver = await ChatClient.connect(`${cl.url(1)}?token=${h.token('drain-rx', 'rx')}`);
    await receiver.request('join_room', { roomId: 'drain' });
    const senders = await Promise.all([0, 1, 2, 3].map(async (k) => {
      let c = await ChatClient.connect(`ws://127.0.0.1:${target.port}/ws?token=${h.token(`drain-${k}`, 'tx')}`);
      await c.request('join_room', { roomId: 'drain' });
      const loop = (async () => {
        let i = 0;
        while (running) {
          const cmid = `d${k}-${i}`;
          try {
            acked.push({ ...(await c.request('send_message', { roomId: 'drain', text: cmid, clientMsgId: cmid })), cmid });
            i++;
          } catch (e) {
            // UNAVAILABLE (draining) or the close: reconnect to the other instance and retry
            // the same clientMsgId, as a real client does.
            if (c.closed) drained.push(c.closed.code);
            else if (e.code === 'UNAVAILABLE') drained.push('UNAVAILABLE');
            if (c.closed || e.code === 'UNAVAILABLE') {
              if (!c.closed) await c.close();
              c = await ChatClient.connect(`${cl.url(0)}?token=${h.token(`drain-${k}`, 'tx')}`);
              await c.request('join_room', { roomId: 'drain' });
            }
          }
        }
        await c.close();
      })();
      return { loop };
    }));
    await h.sleep(500);
    const t0 = Date.now();
    target.kill('SIGTERM');
    await h.waitFor(async () => (await h.httpGet(target.port, '/readyz').catch(() => ({ status: 0 }))).status !== 200,
      { what: 'readyz fails on SIGTERM', timeout: 2000 });
    const exit = await target.exitPromise;
    const took = Date.now() - t0;
    assert.equal(exit.code, 0);
    assert.ok(took < 8000, `drained in ${took} ms`);
    await h.sleep(500);
    running = false;
    await Promise.all(senders.map((s) => s.loop));
    assert.equal(drained.length, 4, `every sender moved: ${drained}`);
    assert.ok(drained.every((c) => c === 1001 || c === 'UNAVAILABLE'), `told to move by ${drained}`);
    const stored = new Set(cl.pg.psql(dbName, "SELECT client_msg_id FROM messages WHERE room_id = 'drain'").split('\n'));
    const missing = acked.filter((a) => !stored.has(a.cmid));
    assert.deepEqual(missing, []);
    // And the receiver (another instance all along) got every acked message, once.
    await h.waitFor(() => acked.every((a) => receiver.of('new_message').some((m) => m.id === a.messageId)),
      { what: 'receiver got every acked message', timeout: 10000 });
    const ids = receiver.of('new_message').map((m) => m.id);
    assert.equal(new Set(ids).size, ids.length, 'no duplicates');
    await receiver.close();
    await extra.brokers[0].stop();
  });
});

describe('HTTP API', () => {
  it('checks keys and tokens and answers JSON errors', async () => {
    const post = (p, body, headers = API) => h.httpRequest({ port: cl.port(0), path: p, method: 'POST', headers, body });
    assert.equal((await post('/api/rooms/general/events', { event: 'x', data: 1 }, { Authorization: 'Bearer wrong' })).status, 401);
    assert.equal((await post('/api/rooms/general/events', { event: 'x', data: 1 }, {})).status, 401);
    const bad = await post('/api/rooms/general/events', '{not json');
    assert.equal(bad.status, 400);
    assert.equal(bad.json.code, 'VALIDATION_ERROR');
    assert.equal((await post('/api/rooms/bad%20room/events', { event: 'x' })).status, 404);
    assert.equal((await post('/api/nothing/here/events', { event: 'x' })).status, 404);
    const c = await ChatClient.connect(`${cl.url(1)}?token=${h.token('api-u', 'u')}`);
    await c.request('join_room', { roomId: 'api-room' });
    const ok = await post('/api/rooms/api-room/events', { event: 'room_notice', data: { n: 1 } });
    assert.equal(ok.status, 202);
    assert.deepEqual((await c.waitFor('room_notice')).data, { n: 1 });
    const get = (tok) => h.httpGet(cl.port(0), '/api/rooms/api-room/messages?limit=5', tok ? { Authorization: `Bearer ${tok}` } : {});
    assert.equal((await get(null)).status, 401);
    assert.equal((await get(h.token('api-u', 'u', {}, 'a-different-secret-of-enough-length-xx'))).status, 401);
    assert.equal((await get(h.token('api-u', 'u'))).status, 200);
    assert.equal((await h.httpGet(cl.port(0), '/api/rooms/api-room/messages?limit=500', { Authorization: `Bearer ${h.token('api-u', 'u')}` })).status, 400);
    await c.close();
  });
});

describe('chatctl', () => {
  const ctl = (...args) => execFileSync(h.BIN.chatctl, args, {
    env: { ...process.env, CHAT_DATABASE_URL: cl.db, CHAT_REDIS_URL: cl.redis.url, CHAT_JWT_SECRET: h.SECRET },
  }).toString();
  const ctlFails = (...args) => {
    try { ctl(...args); } catch (e) { return e.stderr.toString(); }
    throw new Error(`chatctl ${args.join(' ')} succeeded`);
  };

  it('mints tokens the gateway accepts, manages rooms and ACLs, prints history', async () => {
    const tok = ctl('token', 'ctl-user', '--username', 'Ctl User').trim();
    const c = await ChatClient.connect(`${cl.url(0)}?token=${tok}`);
    assert.match(ctl('room', 'create', 'ctl-private', '--private', '--owner', 'ctl-owner'), /created private room ctl-private/);
    assert.match(ctlFails('room', 'create', 'ctl-private'), /already exists/);
    assert.match(ctlFails('room', 'create', 'bad room'), /invalid room id/);
    await assert.rejects(c.request('join_room', { roomId: 'ctl-private' }), { code: 'FORBIDDEN' });
    assert.match(ctl('acl', 'grant', 'ctl-private', 'ctl-user', 'member'), /ctl-user is member in ctl-private/);
    assert.match(ctlFails('acl', 'grant', 'ctl-private', 'x', 'emperor'), /unknown role/);
    assert.match(ctlFails('acl', 'grant', 'no-such-room', 'x', 'member'), /no room/);
    assert.match(ctl('acl', 'list', 'ctl-private'), /ctl-user\s+Ctl User\s+member/);
    await c.request('join_room', { roomId: 'ctl-private' });
    await c.request('send_message', { roomId: 'ctl-private', text: 'hello from a token chatctl made' });
    assert.match(ctl('history', 'ctl-private'), /1\s+\S+ \S+\s+Ctl User\s+hello from a token chatctl made/);
    assert.match(ctl('room', 'list'), /ctl-private\s+private\s+ctl-owner\s+1/);
    assert.match(ctl('acl', 'revoke', 'ctl-private', 'ctl-user'), /revoked/);
    assert.match(ctlFails('acl', 'revoke', 'ctl-private', 'ctl-user'), /no ACL row/);
    assert.match(ctl('--help'), /tail ROOM/);
    await c.close();
  });

  it('tails a room live through Redis', async () => {
    const tail = spawn(h.BIN.chatctl, ['tail', 'ctl-tail'], { env: { ...process.env, CHAT_REDIS_URL: cl.redis.url } });
    let out = '';
    tail.stdout.on('data', (d) => { out += d; });
    await new Promise((r) => tail.stderr.once('data', r)); // "tailing ..."
    const c = await ChatClient.connect(`${cl.url(1)}?token=${h.token('tailer', 'Tailer')}`);
    await c.request('join_room', { roomId: 'ctl-tail' });
    await c.request('send_message', { roomId: 'ctl-tail', text: 'seen by tail' });
    await h.waitFor(() => /Tailer: seen by tail/.test(out), { what: 'tail output' });
    tail.kill('SIGINT');
    await c.close();
  });
});

describe('logs', () => {
  it('CHAT_LOG_FORMAT=json: one JSON object per line with instance, worker and user', async () => {
    const g = await h.startGateway({ env: { CHAT_LOG_FORMAT: 'json', CHAT_INSTANCE_ID: 'jsonlog' } });
    const c = await ChatClient.connect(`ws://127.0.0.1:${g.port}/ws?token=${h.token('logged', 'L')}`);
    await assert.rejects(c.request('nope', {}), { code: 'UNKNOWN_EVENT' });
    await c.close();
    await h.sleep(200);
    const lines = g.out.trim().split('\n').map((l) => JSON.parse(l));
    const open = lines.find((l) => l.event === 'conn_open');
    assert.equal(open.instance, 'jsonlog');
    assert.equal(open.worker, 0);
    assert.equal(open.user, 'logged');
    assert.ok(lines.find((l) => l.event === 'conn_close' && l.user === 'logged'));
    assert.ok(lines.find((l) => l.event === 'request_error' && l.code === 'UNKNOWN_EVENT' && l.user === 'logged'));
    await g.stop();
  });
});

'use strict';
// The cluster of a chaos run, and the faults injected into it. Built on tests/lib/harness.js
// (same processes, same throwaway Redis and PostgreSQL), with two differences: a gateway
// can be started again on its port with its configuration after a drain, and PostgreSQL is
// stopped and started without blocking the event loop the clients run on.
const { execFile } = require('node:child_process');
const path = require('node:path');
const h = require('../lib/harness');

const PG_BIN = '/usr/lib/postgresql/15/bin';
const asRoot = process.getuid && process.getuid() === 0;

function run(cmd, args, timeout = 60000) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout, maxBuffer: 256 << 20 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr: String(stderr) }));
      else resolve(String(stdout));
    });
  });
}

function pgCtl(pg, args) {
  const bin = path.join(PG_BIN, 'pg_ctl');
  return asRoot ? run('runuser', ['-u', 'postgres', '--', bin, ...args]) : run(bin, args);
}

function psql(pg, db, sql) {
  return run('psql', ['-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', '-d', db, '-v', 'ON_ERROR_STOP=1', '-At', '-c', sql]);
}

async function startChaosCluster({ workers = 2, env = {} } = {}) {
  const cl = { brokers: [], gateways: [], ids: [], envs: [], retired: [] };
  cl.redis = await h.startRedis();
  cl.pg = await h.startPostgres();
  cl.db = await cl.pg.createDb();
  cl.dbName = cl.db.split('/').pop();
  const dir = h.tmpdir('chat-chaos-');
  for (let i = 0; i < 2; i++) {
    const id = `chaos${String.fromCharCode(97 + i)}`;
    cl.ids.push(id);
    cl.brokers.push(await h.startBroker({
      socket: path.join(dir, `${id}.sock`), redisUrl: cl.redis.url, instanceId: id,
      env: { CHAT_PRESENCE_GRACE: '1' },
    }));
  }
  for (let i = 0; i < 2; i++) {
    const genv = {
      CHAT_BROKER_SOCKET: path.join(dir, `${cl.ids[i]}.sock`),
      CHAT_INSTANCE_ID: cl.ids[i],
      CHAT_DATABASE_URL: cl.db,
      CHAT_API_KEY: 'test-api-key',
      ...env,
    };
    cl.envs.push(genv);
    cl.gateways.push(await h.startGateway({ workers, env: genv }));
  }
  cl.workers = workers;
  cl.instances = cl.gateways.map((g) => ({ ws: `ws://127.0.0.1:${g.port}`, http: `http://127.0.0.1:${g.port}` }));
  await waitReady(cl, 15000);
  cl.psql = (sql) => psql(cl.pg, cl.dbName, sql);
  return cl;
}

async function readyz(port) {
  try { return (await h.httpGet(port, '/readyz')).status === 200; } catch (_) { return false; }
}

function waitReady(cl, timeout = 20000) {
  return h.waitFor(async () => (await readyz(cl.gateways[0].port)) && (await readyz(cl.gateways[1].port)),
    { timeout, interval: 100, what: 'both gateways ready' });
}

function workerPids(gw) {
  try { return h.gatewayPids(gw).workers; } catch (_) { return []; }
}

// Each fault: injects, waits until the effect is visible, heals (or lets the supervisor
// heal), and returns what happened ({ok, detail}). `ctx` = {cl, rng, inst, slow, flood}.
const FAULTS = {
  async worker_kill({ cl, inst, rng }) {
    const gw = cl.gateways[inst];
    const before = workerPids(gw);
    const victim = before[Math.floor(rng() * before.length)];
    // Frozen for half a second first, so that it dies with requests in flight (sends
    // that are never answered, perhaps committed): the client's resend path is exercised.
    process.kill(victim, 'SIGSTOP');
    await h.sleep(500);
    process.kill(victim, 'SIGKILL');
    await h.waitFor(() => {
      const now = workerPids(gw);
      return now.length === before.length && !now.includes(victim);
    }, { timeout: 5000, what: 're-forked worker' });
    return { ok: true, detail: `SIGSTOP 0.5 s, then kill -9 worker pid ${victim} of ${cl.ids[inst]}; re-forked` };
  },

  async broker_kill({ cl, inst }) {
    const b = cl.brokers[inst];
    const pid = b.pid();
    process.kill(pid, 'SIGKILL');
    await h.waitFor(() => b.pid() !== pid, { timeout: 5000, what: 'broker restart' });
    return { ok: true, detail: `kill -9 broker pid ${pid} of ${cl.ids[inst]}; restarted as ${b.pid()}` };
  },

  async broker_stop({ cl, inst }) {
    const b = cl.brokers[inst];
    const pid = b.pid();
    process.kill(pid, 'SIGSTOP');
    await h.sleep(3000);
    process.kill(pid, 'SIGCONT');
    return { ok: true, detail: `SIGSTOP broker pid ${pid} of ${cl.ids[inst]} for 3 s, SIGCONT` };
  },

  async redis_kill({ cl }) {
    const port = cl.redis.port;
    await cl.redis.stop('SIGKILL');
    let saw503 = false;
    const t0 = Date.now();
    while (Date.now() - t0 < 1500) {
      if (!(await readyz(cl.gateways[0].port))) saw503 = true;
      await h.sleep(100);
    }
    cl.redis = await h.startRedis({ port });
    return { ok: saw503, detail: `kill -9 redis, down 1.5 s (readyz 503 seen: ${saw503}), restarted on ${port}` };
  },

  async pubsub_kill({ cl }) {
    const out = await run('redis-cli', ['-p', String(cl.redis.port), 'CLIENT', 'KILL', 'TYPE', 'pubsub']);
    const n = Number(out.trim());
    return { ok: n >= 1, detail: `CLIENT KILL TYPE pubsub: ${n} connections killed` };
  },

  async pg_restart({ cl }) {
    const pg = cl.pg;
    await pgCtl(pg, ['-D', pg.data, '-m', 'immediate', '-w', 'stop']);
    await h.sleep(1500);
    await pgCtl(pg, ['-D', pg.data, '-o', `-p ${pg.port} -k ${pg.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300`,
      '-l', path.join(pg.dir, 'log'), '-w', '-t', '30', 'start']);
    return { ok: true, detail: 'pg_ctl stop -m immediate, down 1.5 s, started again' };
  },

  // SIGTERM: the instance drains (stops accepting, finishes in-flight acks, tells clients
  // to reconnect, exits); then it is started again on the same port.
  async drain({ cl, inst }) {
    const gw = cl.gateways[inst];
    const t0 = Date.now();
    gw.kill('SIGTERM');
    const killer = setTimeout(() => gw.killGroup('SIGKILL'), 20000);
    const ex = await gw.exitPromise;
    clearTimeout(killer);
    const took = Date.now() - t0;
    cl.retired.push(gw);
    cl.gateways[inst] = await h.startGateway({ port: gw.port, workers: cl.workers, env: cl.envs[inst] });
    const clean = ex.code === 0;
    return { ok: clean, detail: `SIGTERM ${cl.ids[inst]}: exited ${JSON.stringify(ex)} after ${took} ms; started again on ${gw.port}` };
  },

  // The slow client stops reading; a sender floods its room with large messages until the
  // gateway closes it at the outbound cap (it logs slow_consumer); then it reads again,
  // sees the connection end, reconnects and recovers like everyone else.
  async slow_client({ cl, slow, flood }) {
    const conn = slow.conn;
    const inst = slow.inst;
    const gw = cl.gateways[inst];
    const re = new RegExp(`slow_consumer [^\\n]*user=${slow.uid} `, 'g');
    const cuts = () => (gw.out.match(re) || []).length;
    const before = cuts();
    slow.paused = true;
    conn.pause();
    const t0 = Date.now();
    const stopFlood = flood.start();
    let cut = false;
    try {
      await h.waitFor(() => cuts() > before, { timeout: 30000, interval: 100, what: 'slow consumer cut' });
      cut = true;
    } catch (_) { /* reported below */ }
    const floodStats = await stopFlood();
    conn.resume();
    slow.paused = false;
    const closedBy = await new Promise((resolve) => {
      if (conn.closed) { resolve(slow.log.filter((e) => e.ev === 'close').pop()); return; }
      const t = setInterval(() => {
        if (conn.closed) { clearInterval(t); resolve(slow.log.filter((e) => e.ev === 'close').pop()); }
      }, 50);
      setTimeout(() => { clearInterval(t); resolve(null); }, 10000);
    });
    const ok = cut && closedBy && closedBy.by === 'server';
    return {
      ok,
      detail: `slow client ${slow.uid} on ${cl.ids[inst]} stopped reading; flood of ${floodStats.sent} messages (${floodStats.bytes} bytes) for ${Date.now() - t0} ms; `
        + `server cut it at the outbound cap: ${cut}; connection ended by ${closedBy ? closedBy.by : 'nobody'}`,
    };
  },
};

module.exports = { startChaosCluster, waitReady, readyz, FAULTS, psql, run };

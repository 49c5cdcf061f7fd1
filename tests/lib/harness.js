'use strict';
// Test harness: starts the real processes (gateway, broker, Redis, PostgreSQL) on free
// loopback ports and gives tests real clients. Every process started here is stopped by
// stopAll(), which each test file registers with `after`.
const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');

const ROOT = path.resolve(__dirname, '..', '..');
const BUILD = process.env.CHAT_BUILD_DIR || path.join(ROOT, 'build');
const BIN = {
  gateway: path.join(BUILD, 'gateway', 'chat-gateway'),
  broker: path.join(BUILD, 'broker', 'chat-broker'),
  chatctl: path.join(BUILD, 'tools', 'chatctl'),
};
const SECRET = 'test-secret-0123456789-0123456789-abcdef';
const procs = new Set();
const started = []; // every process of this test file, for the sanitizer scan
const tmpdirs = new Set();

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

function tmpdir(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpdirs.add(d);
  return d;
}

// A managed child process with its output kept for assertions and failure reports.
function start(name, cmd, args, opts = {}) {
  const child = spawn(cmd, args, {
    env: { ...process.env, ...(opts.env || {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const p = { name, child, out: '', exited: null };
  const keep = (d) => { p.out += d.toString(); if (p.out.length > 4e6) p.out = p.out.slice(-2e6); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  p.exitPromise = new Promise((res) => child.on('exit', (code, sig) => { p.exited = { code, sig }; procs.delete(p); res(p.exited); }));
  procs.add(p);
  started.push(p);
  p.kill = (sig = 'SIGTERM') => { try { process.kill(child.pid, sig); } catch (_) { /* gone */ } };
  p.killGroup = (sig = 'SIGKILL') => { try { process.kill(-child.pid, sig); } catch (_) { /* gone */ } };
  p.stop = async (sig = 'SIGTERM', ms = 8000) => {
    if (p.exited) return p.exited;
    p.kill(sig);
    const t = setTimeout(() => p.killGroup('SIGKILL'), ms);
    const r = await p.exitPromise;
    clearTimeout(t);
    return r;
  };
  return p;
}

const SANITIZER = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|==\d+== (Invalid|Conditional jump|[0-9,]+ bytes in [0-9,]+ blocks are definitely lost)/;

// Under valgrind (scripts/valgrind) each process logs to its own file,
// CHAT_TEST_WRAPPER="valgrind ... -q --log-file=DIR/%p.log". With -q a log holds only
// reports: any line that is not a known benign warning fails the test file. Checked logs
// are moved to DIR/checked/ so that the next test file starts clean.
const VG_LOG = /--log-file=(\S+)/.exec(process.env.CHAT_TEST_WRAPPER || '');
const VG_DIR = VG_LOG ? path.dirname(VG_LOG[1]) : null;
const VG_BENIGN = /^==\d+== (Warning: (set address range perms|noted but unhandled ioctl|client switching stacks|unimplemented fcntl)|\s+(This could cause|to suppress|further instances|Use --)|$)/;
function valgrindReports() {
  if (!VG_DIR || !fs.existsSync(VG_DIR)) return [];
  const checked = path.join(VG_DIR, 'checked');
  fs.mkdirSync(checked, { recursive: true });
  const bad = [];
  for (const f of fs.readdirSync(VG_DIR)) {
    const full = path.join(VG_DIR, f);
    if (!f.endsWith('.log') || !fs.statSync(full).isFile()) continue;
    const text = fs.readFileSync(full, 'utf8');
    if (text.split('\n').some((l) => l.trim() && !VG_BENIGN.test(l))) bad.push({ file: f, text });
    fs.renameSync(full, path.join(checked, `${path.basename(process.argv[1] || 'test', '.js')}.${f}`));
  }
  return bad;
}

// Stops every process, then fails the test file if any of them reported a sanitizer or
// valgrind error (workers re-forked after a crash would otherwise hide it).
async function stopAll() {
  for (const b of brokerHandles) b.stopped = true;
  brokerHandles.clear();
  for (const x of proxies) x.close();
  proxies.clear();
  await Promise.all([...procs].map((p) => p.stop('SIGTERM', 15000)));
  for (const pg of pgProcs) pg.stop('immediate');
  pgProcs.clear();
  for (const d of tmpdirs) { try { fs.rmSync(d, { recursive: true, force: true }); } catch (_) { /* ignore */ } }
  tmpdirs.clear();
  const bad = started.filter((p) => SANITIZER.test(p.out));
  started.length = 0;
  if (bad.length) {
    const p = bad[0];
    const i = p.out.search(SANITIZER);
    throw new Error(`${p.name} reported a memory error:\n${p.out.slice(Math.max(0, i - 200), i + 6000)}`);
  }
  const vg = valgrindReports();
  if (vg.length) {
    throw new Error(`valgrind reported errors in ${vg.length} process(es) (logs in ${VG_DIR}/checked/):\n`
      + vg.map((r) => `--- ${r.file}\n${r.text.slice(0, 6000)}`).join('\n'));
  }
}

function httpGet(port, p, headers = {}, host = '127.0.0.1') {
  return httpRequest({ port, path: p, method: 'GET', headers, host });
}

function httpRequest({ port, path: p, method = 'GET', headers = {}, body, host = '127.0.0.1' }) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, path: p, method, headers, agent: false }, (res) => {
      let data = '';
      res.on('data', (d) => { data += d; });
      res.on('end', () => {
        let json;
        try { json = JSON.parse(data); } catch (_) { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, body: data, json });
      });
    });
    req.on('error', reject);
    req.setTimeout(10000, () => req.destroy(new Error('timeout')));
    if (body !== undefined) req.write(typeof body === 'string' ? body : JSON.stringify(body));
    req.end();
  });
}

async function waitFor(fn, { timeout = 10000, interval = 50, what = 'condition' } = {}) {
  const t0 = Date.now();
  let last;
  for (;;) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    if (Date.now() - t0 > timeout) throw new Error(`timed out waiting for ${what}: ${last && last.message ? last.message : last}`);
    await sleep(interval);
  }
}

async function waitHttp(port, p = '/healthz', timeout = 10000) {
  return waitFor(async () => (await httpGet(port, p)).status === 200, { timeout, what: `GET ${p} on ${port}` });
}

function b64u(x) { return Buffer.from(x).toString('base64url'); }

// An HS256 token; `claims` overrides (set exp: undefined to drop it).
function token(sub, username, claims = {}, secret = SECRET, header = { alg: 'HS256', typ: 'JWT' }) {
  const body = { sub, username, exp: Math.floor(Date.now() / 1000) + 3600, ...claims };
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  const h = b64u(JSON.stringify(header));
  const p = b64u(JSON.stringify(body));
  if (header.alg === 'none') return `${h}.${p}.`;
  const s = crypto.createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${s}`;
}

// ---- processes ----

async function startGateway(opts = {}) {
  const port = opts.port || await freePort();
  const env = {
    CHAT_PORT: String(port),
    CHAT_HOST: '127.0.0.1',
    CHAT_JWT_SECRET: SECRET,
    CHAT_WORKERS: String(opts.workers || 1),
    CHAT_LOG_LEVEL: 'info',
    CHAT_STATIC_DIR: path.join(ROOT, 'web'),
    ...(opts.env || {}),
  };
  // opts.prefix: a command that execs the rest (e.g. prlimit ... --), before any wrapper.
  const wrap = [...(opts.prefix || []), ...(process.env.CHAT_TEST_WRAPPER ? process.env.CHAT_TEST_WRAPPER.split(' ') : [])];
  const cmd = wrap.length ? wrap[0] : BIN.gateway;
  const args = wrap.length ? [...wrap.slice(1), BIN.gateway] : [];
  const p = start(`gateway:${port}`, cmd, [...args, ...(opts.args || [])], { env });
  p.port = port;
  if (opts.wait !== false) {
    try {
      await waitHttp(port, '/healthz', opts.timeout || 15000);
    } catch (e) {
      throw new Error(`${e.message}\n--- gateway output ---\n${p.out}`);
    }
  }
  return p;
}

// ---- Redis, PostgreSQL, broker, cluster ----

async function startRedis(opts = {}) {
  const port = opts.port || await freePort();
  const r = start(`redis:${port}`, 'redis-server', ['--port', String(port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--protected-mode', 'no']);
  r.port = port;
  r.url = `redis://127.0.0.1:${port}`;
  r.cli = (...args) => execFileSync('redis-cli', ['-p', String(port), ...args]).toString().trim();
  await waitFor(() => { try { return r.cli('PING') === 'PONG'; } catch (_) { return false; } }, { what: 'redis' });
  r.restart = async () => {
    await r.stop('SIGKILL');
    const again = await startRedis({ port });
    Object.assign(r, { child: again.child, exitPromise: again.exitPromise, out: again.out, exited: null });
    r.kill = again.kill; r.killGroup = again.killGroup; r.stop = again.stop;
    return r;
  };
  return r;
}

// A TCP proxy in front of a server, to hold back what the server sends: hold(true) buffers
// every server -> client byte until hold(false); sent(re) resolves once the bytes clients
// sent since the last hold() match re; lag(re, ms) delays by ms each client -> server chunk
// that matches re (and what follows it on that connection).
const proxies = new Set();
async function startTcpProxy(targetPort) {
  const net = require('node:net');
  const proxy = { held: false, socks: new Set(), waiters: [], upstream: '' };
  const flush = (pair) => { while (!proxy.held && pair.queue.length) pair.client.write(pair.queue.shift()); };
  const server = net.createServer((client) => {
    const server2 = net.connect(targetPort, '127.0.0.1');
    const pair = { client, queue: [], chain: Promise.resolve() };
    proxy.socks.add(pair);
    client.on('data', (d) => {
      const text = d.toString('latin1');
      if (proxy.lagging && proxy.lagging.re.test(text)) {
        const { ms } = proxy.lagging;
        pair.chain = pair.chain.then(() => sleep(ms));
      }
      pair.chain = pair.chain.then(() => server2.write(d));
      proxy.upstream = (proxy.upstream + d.toString('latin1')).slice(-65536);
      proxy.waiters = proxy.waiters.filter((w) => !(w.re.test(proxy.upstream) && (w.resolve(), true)));
    });
    server2.on('data', (d) => { pair.queue.push(d); flush(pair); });
    const end = () => { client.destroy(); server2.destroy(); proxy.socks.delete(pair); };
    client.on('close', end); server2.on('close', end);
    client.on('error', end); server2.on('error', end);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.port = server.address().port;
  proxy.url = `redis://127.0.0.1:${proxy.port}`;
  proxy.hold = (on) => { proxy.held = on; proxy.upstream = ''; for (const pair of proxy.socks) flush(pair); };
  proxy.sent = (re, timeout = 10000) => (re.test(proxy.upstream) ? Promise.resolve()
    : new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`proxy: nothing matching ${re} sent`)), timeout);
      proxy.waiters.push({ re, resolve: () => { clearTimeout(t); resolve(); } });
    }));
  proxy.lag = (re, ms) => { proxy.lagging = re ? { re, ms } : null; };
  proxy.close = () => { for (const pair of proxy.socks) pair.client.destroy(); server.close(); proxies.delete(proxy); };
  proxies.add(proxy);
  return proxy;
}

const PG_BIN = '/usr/lib/postgresql/15/bin';
const asRoot = process.getuid && process.getuid() === 0;
function pgRun(bin, args, opts = {}) {
  const cmd = asRoot ? 'runuser' : path.join(PG_BIN, bin);
  const full = asRoot ? ['-u', 'postgres', '--', path.join(PG_BIN, bin), ...args] : args;
  return execFileSync(cmd, full, { stdio: ['ignore', 'pipe', 'pipe'], ...opts }).toString();
}

// A throwaway PostgreSQL cluster (as the postgres user when we are root) with a migrated
// template database; createDb() clones it in milliseconds.
async function startPostgres() {
  const port = await freePort();
  const dir = tmpdir('chat-pg-');
  if (asRoot) execFileSync('chown', ['postgres', dir]);
  const data = path.join(dir, 'data');
  pgRun('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale', 'C']);
  const pg = {
    port, dir, data,
    url: (db) => `postgresql://postgres@127.0.0.1:${port}/${db}`,
    start() {
      pgRun('pg_ctl', ['-D', data, '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300`,
        '-l', path.join(dir, 'log'), '-w', '-t', '30', 'start']);
    },
    stop(mode = 'fast') { try { pgRun('pg_ctl', ['-D', data, '-m', mode, '-w', 'stop']); } catch (_) { /* already */ } },
    psql(db, sql) {
      return execFileSync('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', db,
        '-v', 'ON_ERROR_STOP=1', '-At', '-c', sql]).toString().trim();
    },
    dbs: 0,
    async createDb() {
      const name = `chat_${++pg.dbs}`;
      pg.psql('postgres', `CREATE DATABASE ${name} TEMPLATE chat_template`);
      return pg.url(name);
    },
  };
  pg.start();
  pgProcs.add(pg);
  pg.psql('postgres', 'CREATE DATABASE chat_template');
  execFileSync(BIN.chatctl, ['migrate', '--database-url', pg.url('chat_template')], { stdio: 'pipe' });
  return pg;
}
const pgProcs = new Set();
const brokerHandles = new Set();
let instanceCounter = 0;

// A chat-broker, restarted like a service manager would when it dies (unless stopped).
async function startBroker(opts) {
  const sock = opts.socket;
  const env = {
    CHAT_BROKER_SOCKET: sock, CHAT_REDIS_URL: opts.redisUrl, CHAT_INSTANCE_ID: opts.instanceId,
    CHAT_LOG_LEVEL: 'info', ...(opts.env || {}),
  };
  const wrap = process.env.CHAT_TEST_WRAPPER ? process.env.CHAT_TEST_WRAPPER.split(' ') : [];
  const handle = { restarts: 0, stopped: false, out: () => handle.proc.out };
  brokerHandles.add(handle);
  const launch = () => {
    handle.proc = start(`broker:${opts.instanceId}`, wrap.length ? wrap[0] : BIN.broker,
      wrap.length ? [...wrap.slice(1), BIN.broker] : [], { env });
    handle.proc.exitPromise.then(() => {
      if (handle.stopped) return;
      handle.restarts++;
      setTimeout(() => { if (!handle.stopped) launch(); }, 100);
    });
  };
  launch();
  handle.pid = () => handle.proc.child.pid;
  handle.stop = async () => { handle.stopped = true; await handle.proc.stop(); };
  await waitFor(() => fs.existsSync(sock), { what: `broker socket ${sock}` });
  return handle;
}

// instances x workers: Redis, PostgreSQL (unless db: false), one broker and one gateway per
// instance on consecutive ports. redisUrl: where the brokers find Redis (a proxy, say).
async function startCluster(opts = {}) {
  const n = opts.instances || 2;
  const cl = { brokers: [], gateways: [], ids: [] };
  cl.redis = opts.redis || await startRedis();
  if (opts.db !== false) {
    cl.pg = opts.pg || await startPostgres();
    cl.db = opts.dbUrl || await cl.pg.createDb(); // dbUrl: join another cluster's database
  }
  const dir = tmpdir('chat-sock-');
  for (let i = 0; i < n; i++) {
    const id = `inst${String.fromCharCode(97 + instanceCounter++)}`; // unique per test file
    cl.ids.push(id);
    cl.brokers.push(await startBroker({
      socket: path.join(dir, `${id}.sock`), redisUrl: opts.redisUrl || cl.redis.url, instanceId: id,
      env: { CHAT_PRESENCE_GRACE: '1', ...(opts.brokerEnv || {}) },
    }));
  }
  for (let i = 0; i < n; i++) {
    cl.gateways.push(await startGateway({
      workers: opts.workers || 2,
      env: {
        CHAT_BROKER_SOCKET: path.join(dir, `${cl.ids[i]}.sock`),
        CHAT_INSTANCE_ID: cl.ids[i],
        ...(cl.db ? { CHAT_DATABASE_URL: cl.db } : {}),
        CHAT_API_KEY: 'test-api-key',
        ...(opts.env || {}),
      },
    }));
  }
  cl.url = (i, p = '/ws') => `ws://127.0.0.1:${cl.gateways[i].port}${p}`;
  cl.port = (i) => cl.gateways[i].port;
  await Promise.all(cl.gateways.map((g) => waitHttp(g.port, '/readyz', 15000)));
  return cl;
}

// haproxy in front of a cluster, configured by scripts/haproxy-config (deploy/haproxy.cfg).
async function startHaproxy(cl, opts = {}) {
  const port = opts.port || await freePort();
  const dir = tmpdir('chat-haproxy-');
  const cfg = path.join(dir, 'haproxy.cfg');
  const servers = cl.ids.map((id, i) => `${id}=127.0.0.1:${cl.port(i)}`);
  fs.writeFileSync(cfg, execFileSync(path.join(ROOT, 'scripts', 'haproxy-config'), [String(port), ...servers]));
  const p = start(`haproxy:${port}`, 'haproxy', ['-f', cfg, '-db']);
  p.port = port;
  await waitFor(async () => (await httpGet(port, '/healthz')).status === 200, { what: 'haproxy' });
  return p;
}

// Which worker of the gateway logged conn_open for this user: "w0", "w1"...
function workerOf(gw, user) {
  const re = new RegExp(`\\[[^\\]]*/(w\\d+)\\] conn_open [^\\n]*user=${user} `, 'g');
  const m = [...gw.out.matchAll(re)];
  return m.length ? m[m.length - 1][1] : null;
}

function gatewayPids(gw) {
  // Master pid plus its children (workers).
  const out = execFileSync('ps', ['-o', 'pid=', '--ppid', String(gw.child.pid)]).toString();
  return { master: gw.child.pid, workers: out.split(/\s+/).filter(Boolean).map(Number) };
}

function rssKiB(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(s)[1]);
  } catch (_) { return 0; }
}

function fdCount(pid) {
  try { return fs.readdirSync(`/proc/${pid}/fd`).length; } catch (_) { return -1; }
}

// Under ASan/valgrind, memory and timing assertions are relaxed (not the functional ones).
// CHAT_VALGRIND=1 (scripts/valgrind) implies it; `valgrind` tells tests to wait longer.
const valgrind = !!process.env.CHAT_VALGRIND;
const sanitized = !!process.env.CHAT_SANITIZED || valgrind;

module.exports = {
  sanitized, valgrind, ROOT, BUILD, BIN, SECRET, sleep, freePort, tmpdir, start, stopAll, httpGet, httpRequest,
  waitFor, waitHttp, token, startGateway, gatewayPids, rssKiB, fdCount, procs,
  startRedis, startPostgres, startBroker, startCluster, workerOf, startHaproxy, startTcpProxy,
};

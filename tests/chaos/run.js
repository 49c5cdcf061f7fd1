#!/usr/bin/env node
'use strict';
// The no-loss chaos run (issue 8). Starts a real cluster (2 instances x 2 workers, a broker
// per instance, Redis, PostgreSQL), connects many logging clients in several rooms on both
// instances, injects every fault of cluster.js while they chat, lets the cluster settle,
// then compares the client logs with the messages table (checker.js) and writes the report.
//
// Usage: node tests/chaos/run.js [--seconds N] [--short] [--out DIR] [--clients N] [--seed N]
//   --seconds N  length of the fault phase (default 90; faults repeat in shuffled rounds)
//   --short      one fault of each kind, fewer clients (the scripts/test run)
//   --out DIR    where to write report.json, report.txt, the client logs, the table and the
//                server logs (default .run/chaos/<UTC time>)
// Exit status: 0 pass, 1 an anomaly or a fault without effect, 2 the run itself failed.
const fs = require('node:fs');
const path = require('node:path');
const h = require('../lib/harness');
const { ChaosClient, sleep } = require('./client');
const { startChaosCluster, waitReady, FAULTS } = require('./cluster');
const { check, render } = require('./checker');

const KINDS = ['worker_kill', 'broker_kill', 'broker_stop', 'redis_kill', 'pubsub_kill', 'pg_restart', 'drain', 'slow_client'];
const ROOMS = ['lobby', 'dev', 'ops', 'random', 'sales', 'support'].map((r) => `chaos-${r}`);
const FIREHOSE = 'chaos-firehose';

function parseArgs(argv) {
  const o = { seconds: 90, short: false, out: null, clients: null, seed: Date.now() % 1e9 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) throw new Error(`${a} needs a value`); return argv[++i]; };
    if (a === '--seconds') o.seconds = Number(val());
    else if (a === '--short') o.short = true;
    else if (a === '--out') o.out = val();
    else if (a === '--clients') o.clients = Number(val());
    else if (a === '--seed') o.seed = Number(val());
    else if (a === '-h' || a === '--help') { o.help = true; }
    else throw new Error(`unknown argument: ${a}`);
  }
  if (!(o.seconds > 0)) throw new Error('--seconds wants a positive number');
  if (o.clients === null) o.clients = o.short ? 30 : 48;
  if (!(o.clients >= 8)) throw new Error('--clients: at least 8');
  return o;
}

// mulberry32: a seeded generator, so a run's choices can be repeated with --seed.
function rngOf(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle(arr, rng) {
  const a = [...arr];
  for (let i = a.length - 1; i > 0; i--) { const j = Math.floor(rng() * (i + 1)); [a[i], a[j]] = [a[j], a[i]]; }
  return a;
}

const say = (s) => process.stderr.write(`[chaos ${new Date().toISOString().slice(11, 19)}] ${s}\n`);

async function main() {
  const opt = parseArgs(process.argv.slice(2));
  if (opt.help) { process.stdout.write(fs.readFileSync(__filename, 'utf8').split('\n').slice(2, 13).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n'); return 0; }
  const out = path.resolve(opt.out || path.join(h.ROOT, '.run', 'chaos', new Date().toISOString().replace(/[:.]/g, '').slice(0, 15) + 'Z'));
  fs.mkdirSync(path.join(out, 'logs'), { recursive: true });
  const rng = rngOf(opt.seed);
  const T0 = Date.now();
  say(`${opt.short ? 'short run' : `${opt.seconds} s run`}, ${opt.clients} clients, seed ${opt.seed}, report in ${out}`);

  // ---- cluster ----
  const cl = await startChaosCluster({
    workers: 2,
    env: {
      CHAT_RATE_LIMIT: '1000', CHAT_RATE_BURST: '2000', // the flood sender is fast
      CHAT_MAX_OUTBUF: '256k', // the slow client is cut sooner (the minimum for 64k messages)
      CHAT_DRAIN_SECONDS: '4',
    },
  });
  say(`cluster up: ${cl.ids.map((id, i) => `${id} :${cl.gateways[i].port}`).join(', ')}, redis :${cl.redis.port}, postgres :${cl.pg.port}`);

  // ---- clients ----
  const clients = [];
  const mk = (uid, kind, home, rooms, extra = {}) => {
    const c = new ChaosClient({
      uid, token: h.token(uid, `user ${uid}`), kind, home, instances: cl.instances, rooms, rng, goHome: true, ...extra,
    });
    clients.push(c);
    return c;
  };
  const nSio = Math.max(2, Math.round(opt.clients / 6));
  for (let k = 0; k < opt.clients; k++) {
    // Two rooms each (three for every fourth client), chosen so that every room has
    // members of both home instances; a third of them on Socket.IO, half of those polling.
    const rooms = [ROOMS[k % 6], ROOMS[(k + 3) % 6]];
    if (k % 4 === 1) rooms.push(ROOMS[(k + 1) % 6]);
    if (k < 2) rooms.push(FIREHOSE); // observers of the flood, one per instance
    const fromEnd = opt.clients - k;
    const kind = fromEnd <= nSio / 2 ? 'sio-poll' : fromEnd <= nSio ? 'sio-up' : fromEnd <= 2 * nSio ? 'sio' : 'ws';
    mk(`c${String(k).padStart(2, '0')}`, kind, k % 2, rooms);
  }
  const slow = mk('slow', 'ws', 0, [FIREHOSE], { goHome: false });
  const fh = mk('flood', 'ws', 1, [FIREHOSE]);
  const regular = clients.filter((c) => c !== slow && c !== fh);
  const runs = clients.map((c) => c.run());
  await h.waitFor(() => clients.every((c) => c.ready), { timeout: 30000, what: 'every client connected and joined' });
  const nk = (k) => regular.filter((c) => c.kind === k).length;
  say(`${clients.length} clients joined (${nk('ws')} raw WebSocket; Socket.IO: ${nk('sio')} websocket, ${nk('sio-up')} polling+upgrade, ${nk('sio-poll')} polling only; a slow reader, a flood sender)`);

  // The flood used by the slow-client fault: 16 concurrent senders of ~1 KB messages.
  const flood = {
    start() {
      let on = true;
      const st = { sent: 0, bytes: 0 };
      const big = 'x'.repeat(960); // with the clientMsgId prefix, within the 1000-character limit
      const loops = Array.from({ length: 16 }, async () => {
        while (on) {
          if (await fh.send(FIREHOSE, big, Date.now() + 15000)) { st.sent++; st.bytes += big.length; }
        }
      });
      return async () => { on = false; await Promise.all(loops); return st; };
    },
  };

  // ---- steady load ----
  const windows = [{ name: 'baseline', kind: 'none', t0: Date.now() }];
  let sendingOn = true;
  let sendDeadline = Infinity;
  const intervalMs = 400; // per client: about 2.5 messages/s
  const loops = regular.map((c) => c.sendLoop(intervalMs, () => sendingOn && !c.stopped, () => sendDeadline));
  await sleep(3000);

  // ---- faults ----
  const faults = [];
  const runEnd = Date.now() + opt.seconds * 1000;
  const counts = Object.fromEntries(KINDS.map((k) => [k, 0]));
  let schedule = [];
  let nTargeted = 0; // faults aimed at one instance alternate between the two
  for (;;) {
    const allDone = KINDS.every((k) => counts[k] > 0);
    if (allDone && (opt.short || Date.now() >= runEnd)) break;
    if (!schedule.length) schedule = shuffle(KINDS, rng);
    const kind = schedule.shift();
    const targeted = ['worker_kill', 'broker_kill', 'broker_stop', 'drain'].includes(kind);
    const inst = targeted ? (nTargeted++ + opt.seed) % 2 : 0;
    counts[kind]++;
    if (kind === 'slow_client') await h.waitFor(() => slow.ready, { timeout: 20000, what: 'slow client ready' }).catch(() => {});
    const w = { name: `${kind}`, kind, t0: Date.now() };
    if (targeted) w.note = cl.ids[inst];
    windows.push(w);
    let res;
    try {
      res = await FAULTS[kind]({ cl, inst, rng, slow, flood });
    } catch (e) {
      res = { ok: false, detail: `fault failed: ${e.message}` };
    }
    const f = { kind, instance: targeted ? cl.ids[inst] : null, t0: w.t0, injectedMs: Date.now() - w.t0, ...res };
    try {
      await waitReady(cl, 30000);
      f.healedMs = Date.now() - w.t0;
    } catch (e) {
      f.ok = false;
      f.detail += `; cluster not ready again within 30 s`;
    }
    faults.push(f);
    say(`${f.ok ? 'ok ' : 'BAD'} ${kind}: ${f.detail} (ready again after ${f.healedMs} ms)`);
    await sleep(opt.short ? 2500 : 2500 + 2000 * rng());
  }

  // ---- quiesce: no new sends; pending ones are retried until acked; everyone catches up ----
  windows.push({ name: 'quiesce', kind: 'none', t0: Date.now() });
  sendingOn = false;
  sendDeadline = Date.now() + 20000;
  await Promise.all(loops);
  say('sends settled; waiting for every client to catch up with the table');
  let lastRooms = {};
  const caughtUp = async () => {
    const rows = (await cl.psql(`SELECT id || ' ' || last_seq FROM rooms WHERE id LIKE 'chaos-%'`)).split('\n').filter(Boolean);
    lastRooms = Object.fromEntries(rows.map((l) => { const [r, s] = l.split(' '); return [r, Number(s)]; }));
    return clients.every((c) => c.ready && c.rooms.every((r) => (c.lastSeq.get(r) || 0) >= (lastRooms[r] || 0)));
  };
  let settled = true;
  await h.waitFor(caughtUp, { timeout: 30000, interval: 500, what: 'clients caught up' }).catch(() => { settled = false; });
  await sleep(500); // anything still in flight (a duplicate would show up now)
  for (const c of clients) c.final = { joined: c.ready && c.conn && !c.conn.closed ? [...c.joined] : [], inst: c.inst };
  for (const c of clients) c.stop();
  await Promise.race([Promise.all(runs), sleep(5000)]);
  const tEnd = Date.now();

  // ---- the table ----
  const dbRows = (await cl.psql(`SELECT json_build_object('id', id, 'room', room_id, 'seq', seq, 'user', user_id, 'cmid', client_msg_id, 'ms', chat_ms(created_at))::text FROM messages WHERE room_id LIKE 'chaos-%' ORDER BY room_id, seq`))
    .split('\n').filter(Boolean).map((l) => JSON.parse(l));

  // ---- logs of the servers (warnings worth reading next to the report) ----
  const serverNotes = {};
  const procsOut = [
    ...cl.retired.map((g, i) => [`gateway-retired-${i}`, g.out]),
    ...cl.gateways.map((g, i) => [`gateway-${cl.ids[i]}`, g.out]),
    ...cl.brokers.map((b, i) => [`broker-${cl.ids[i]}`, b.out()]),
  ];
  for (const [name, text] of procsOut) {
    fs.writeFileSync(path.join(out, 'logs', `${name}.log`), text);
    for (const m of text.matchAll(/\] (room_gap_overflow|room_gap_skipped|room_catch_up_failed|slow_consumer|worker_died|drain_deadline)\b/g)) {
      serverNotes[m[1]] = (serverNotes[m[1]] || 0) + 1;
    }
  }

  // ---- check ----
  const input = {
    clients: clients.map((c) => ({ uid: c.uid, kind: c.kind, home: c.home, rooms: c.rooms, final: c.final, log: c.log })),
    db: dbRows,
    windows,
    rooms: [...ROOMS, FIREHOSE],
  };
  fs.writeFileSync(path.join(out, 'clients.jsonl'), input.clients.map((c) => JSON.stringify(c)).join('\n') + '\n');
  fs.writeFileSync(path.join(out, 'db.jsonl'), dbRows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  fs.writeFileSync(path.join(out, 'windows.json'), JSON.stringify(windows));
  const rep = check(input);
  const missingKinds = KINDS.filter((k) => !faults.some((f) => f.kind === k && f.ok));
  const badFaults = faults.filter((f) => !f.ok);
  rep.faults = faults;
  rep.faultsWithoutEffect = badFaults.length;
  rep.kindsNotProven = missingKinds;
  rep.settled = settled;
  rep.serverNotes = serverNotes;
  rep.seed = opt.seed;
  rep.mode = opt.short ? 'short' : 'long';
  rep.durationMs = { total: tEnd - T0, faultPhase: windows[windows.length - 1].t0 - windows[1].t0 };
  rep.clientsByKind = clients.reduce((a, c) => { a[c.kind] = (a[c.kind] || 0) + 1; return a; }, {});
  rep.passChecks = rep.pass;
  rep.pass = rep.pass && badFaults.length === 0 && missingKinds.length === 0;
  const summary = [
    `mode ${rep.mode}, seed ${opt.seed}, ${clients.length} clients ${JSON.stringify(rep.clientsByKind)}, rooms ${input.rooms.length}`,
    `duration ${(rep.durationMs.total / 1000).toFixed(1)} s in all (fault phase ${(rep.durationMs.faultPhase / 1000).toFixed(1)} s), caught up at the end: ${settled}`,
    `faults injected ${faults.length}: ${KINDS.map((k) => `${k}=${faults.filter((f) => f.kind === k).length}`).join(' ')}; without effect: ${badFaults.length}${missingKinds.length ? `; kinds not proven: ${missingKinds.join(' ')}` : ''}`,
    `server log notes: ${JSON.stringify(serverNotes)}`,
  ].join('\n');
  let text = render(rep, { summary });
  text += '\nfaults:\n' + faults.map((f) => `  ${f.ok ? 'ok ' : 'BAD'} +${((f.t0 - windows[0].t0) / 1000).toFixed(1)}s ${f.kind}: ${f.detail}; ready again after ${f.healedMs} ms`).join('\n') + '\n';
  fs.writeFileSync(path.join(out, 'report.json'), JSON.stringify(rep, null, 1));
  fs.writeFileSync(path.join(out, 'report.txt'), text);
  process.stdout.write(text);
  say(`report: ${path.join(out, 'report.txt')}`);
  return rep.pass ? 0 : 1;
}

let code = 2;
const cleanup = async () => { try { await h.stopAll(); } catch (e) { say(`stopAll: ${e.message}`); if (code === 0) code = 1; } };
process.on('SIGINT', async () => { say('interrupted'); await cleanup(); process.exit(130); });
process.on('SIGTERM', async () => { await cleanup(); process.exit(143); });
main().then(async (c) => { code = c; await cleanup(); process.exit(code); }, async (e) => {
  say(`run failed: ${e.stack || e}`);
  await cleanup();
  process.exit(2);
});

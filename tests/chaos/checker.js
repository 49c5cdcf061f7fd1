'use strict';
// The no-loss checker: compares what the chaos clients logged with what PostgreSQL holds,
// Jepsen-style. Pure (no I/O): check(input) -> report. The rules are documented in
// docs/RELIABILITY.md ("No-loss under faults"); the same words are used here.
//
// input = {
//   clients: [{ uid, kind, home, rooms: [roomId], final: { joined: [roomId] } | null,
//               log: [entry] }],   // entries in the order the client saw them (see below)
//   db: [{ id, room, seq, user, cmid, ms }],      // every row of `messages` in the run's rooms
//   windows: [{ name, kind, t0 }],                 // fault windows, by start time (ms)
//   rooms: [roomId],
// }
// Log entries ({t, ev, s = session number, ...}):
//   open   {inst}                       a connection (session s) is ready to talk
//   close  {code, by}                   session s ended (by: 'server' | 'client')
//   join   {room, since, page, items: [[id, seq, cmid, user], ...], truncated}
//          a join_room ack; page: a later join of the same room in the same session,
//          sent to continue a truncated recovery
//   msg    {room, id, seq, cmid, user}  a live new_message
//   send   {cmid, room, attempt}        a send_message request
//   ack    {cmid, id, seq}              its success ack
//   err    {cmid, code}                 its error reply (UNAVAILABLE, RATE_LIMITED...)
//   timeout{cmid}                       no reply within the client's timeout, or the
//                                       connection closed first (code DISCONNECTED)
//   fail   {inst, why}                  a connection attempt that failed

const CLASSES = ['lost', 'duplicated', 'out_of_order', 'unexpected', 'ack_unsaved', 'unrecovered'];
const MAX_EXAMPLES = 20;

function check(input) {
  const { clients, db, rooms } = input;
  const windows = [...(input.windows || [])].sort((a, b) => a.t0 - b.t0);
  if (!windows.length || windows[0].t0 > -Infinity) windows.unshift({ name: 'setup', kind: 'none', t0: -Infinity });
  const winOf = (t) => {
    let i = 0;
    while (i + 1 < windows.length && windows[i + 1].t0 <= t) i++;
    return i;
  };
  const roomSet = new Set(rooms);
  const byId = new Map();
  const byCmid = new Map();
  const roomRows = new Map();
  const anomalies = Object.fromEntries(CLASSES.map((c) => [c, []]));
  const counts = Object.fromEntries(CLASSES.map((c) => [c, 0]));
  const win = windows.map((w) => ({
    name: w.name, kind: w.kind, t0: w.t0, note: w.note,
    sends: 0, retries: 0, acks: 0, errors: 0, timeouts: 0, reconnects: 0, deliveries: 0, committed: 0,
    anomalies: Object.fromEntries(CLASSES.map((c) => [c, 0])),
  }));
  const flag = (cls, t, detail) => {
    counts[cls]++;
    win[winOf(t)].anomalies[cls]++;
    if (anomalies[cls].length < MAX_EXAMPLES) anomalies[cls].push(detail);
  };

  for (const r of db) {
    byId.set(r.id, r);
    const key = `${r.user}\u0000${r.cmid}`;
    if (r.cmid != null) {
      if (byCmid.has(key)) flag('duplicated', r.ms, { what: 'two rows for one clientMsgId', user: r.user, cmid: r.cmid, ids: [byCmid.get(key).id, r.id] });
      else byCmid.set(key, r);
    }
    if (!roomRows.has(r.room)) roomRows.set(r.room, []);
    roomRows.get(r.room).push(r);
    win[winOf(r.ms)].committed++;
  }
  for (const [room, rows] of roomRows) {
    rows.sort((a, b) => a.seq - b.seq);
    for (let i = 1; i < rows.length; i++) {
      if (rows[i].seq === rows[i - 1].seq) flag('duplicated', rows[i].ms, { what: 'two rows with one seq', room, seq: rows[i].seq });
    }
  }
  const roomMax = (room) => { const rows = roomRows.get(room) || []; return rows.length ? rows[rows.length - 1].seq : 0; };

  // A delivered item must be a stored row, identical in room, seq, sender and clientMsgId.
  const matches = (item, room, t, c, s, via) => {
    const row = byId.get(item.id);
    if (!row || row.room !== room || row.seq !== item.seq || row.user !== item.user || row.cmid !== item.cmid) {
      flag('unexpected', t, { client: c.uid, session: s, via, room, delivered: item, stored: row || null });
      return false;
    }
    return true;
  };

  const totals = {
    clients: clients.length, sessions: 0, reconnects: 0, connect_failures: 0, sends: 0, messages_sent: 0,
    retries: 0, acks: 0, errors: {}, timeouts: 0, deliveries_live: 0, deliveries_recovered: 0,
    history_items: 0, refetched: 0, recovery_joins: 0, recovery_pages: 0, db_rows: db.length,
    committed_unacked: 0, resends_of_committed: 0, server_closes: 0, client_closes: 0,
  };
  const acked = new Set(); // user \0 cmid with a success ack
  const sentKeys = new Set();
  const attemptsOf = new Map();
  const lastAttempt = new Map();
  const owed = []; // per client, what the loss rule needs after every ack is known

  for (const c of clients) {
    const received = new Map(); // room -> Map(seq -> id), over every session
    const base = new Map(); // room -> seq below which nothing is owed (first join's snapshot)
    const maxSeen = new Map();
    let streams = new Map(); // this session: room -> { ids: Set, max, since }
    let session = null;
    const seenRecv = (room) => { if (!received.has(room)) received.set(room, new Map()); return received.get(room); };
    const see = (room, seq, id) => {
      seenRecv(room).set(seq, id);
      if (!(maxSeen.get(room) >= seq)) maxSeen.set(room, seq);
    };
    for (const e of c.log) {
      const w = win[winOf(e.t)];
      switch (e.ev) {
        case 'open':
          totals.sessions++;
          if (session !== null) { totals.reconnects++; w.reconnects++; }
          session = e.s;
          streams = new Map();
          break;
        case 'close':
          if (e.by === 'server') totals.server_closes++; else totals.client_closes++;
          break;
        case 'fail':
          totals.connect_failures++;
          break;
        case 'join': {
          if (!roomSet.has(e.room)) break;
          const items = e.items.map(([id, seq, cmid, user]) => ({ id, seq, cmid, user }));
          if (e.page || streams.has(e.room)) {
            // A page of a truncated recovery: asked for explicitly, so items the live
            // stream brought or is about to bring may come twice. Only checked against
            // the table.
            totals.recovery_pages++;
            const st = streams.get(e.room);
            for (const it of items) {
              if (!matches(it, e.room, e.t, c, e.s, 'page')) continue;
              if (seenRecv(e.room).has(it.seq)) totals.refetched++;
              else { totals.deliveries_recovered++; w.deliveries++; }
              if (st) st.paged.add(it.id);
              see(e.room, it.seq, it.id);
            }
            break;
          }
          const st = { ids: new Set(), paged: new Set(), max: e.since == null ? -Infinity : e.since, since: e.since };
          streams.set(e.room, st);
          if (e.since == null) {
            // A first join: the newest history, not deliveries. Nothing at or below its
            // newest seq is owed to this client.
            if (!base.has(e.room)) base.set(e.room, items.length ? items[items.length - 1].seq : 0);
            totals.history_items += items.length;
          } else {
            totals.recovery_joins++;
          }
          let prev = e.since == null ? -Infinity : e.since;
          for (const it of items) {
            if (!matches(it, e.room, e.t, c, e.s, 'join')) continue;
            if (it.seq <= prev) {
              const dup = st.ids.has(it.id) || (e.since != null && seenRecv(e.room).get(it.seq) === it.id);
              flag(dup ? 'duplicated' : 'out_of_order', e.t, { client: c.uid, session: e.s, room: e.room, via: 'join', since: e.since, seq: it.seq, after: prev });
              continue;
            }
            prev = it.seq;
            st.ids.add(it.id);
            st.max = it.seq;
            if (e.since != null) { totals.deliveries_recovered++; w.deliveries++; }
            see(e.room, it.seq, it.id);
          }
          break;
        }
        case 'msg': {
          if (!roomSet.has(e.room)) break;
          const it = { id: e.id, seq: e.seq, cmid: e.cmid, user: e.user };
          if (!matches(it, e.room, e.t, c, e.s, 'live')) break;
          totals.deliveries_live++;
          w.deliveries++;
          const st = streams.get(e.room);
          if (!st) {
            flag('unexpected', e.t, { client: c.uid, session: e.s, room: e.room, seq: e.seq, what: 'live message for a room this session has not joined' });
            break;
          }
          if (st.ids.has(e.id)) {
            flag('duplicated', e.t, { client: c.uid, session: e.s, room: e.room, seq: e.seq, what: 'delivered twice in one session' });
            break;
          }
          if (e.seq <= st.max) {
            const again = seenRecv(e.room).get(e.seq) === e.id;
            flag(again ? 'duplicated' : 'out_of_order', e.t, {
              client: c.uid, session: e.s, room: e.room, seq: e.seq, after: st.max,
              what: again ? 'delivered again after a recovery that had it (seq <= since)' : 'seq lower than one delivered before in this session',
            });
            if (!again) see(e.room, e.seq, e.id);
            break;
          }
          if (st.paged.has(e.id)) {
            totals.refetched++; // a page of this session had it already (asked for)
          } else if (seenRecv(e.room).get(e.seq) === e.id) {
            flag('duplicated', e.t, { client: c.uid, session: e.s, room: e.room, seq: e.seq, what: 'delivered again in a later session' });
            break;
          }
          st.ids.add(e.id);
          st.max = e.seq;
          see(e.room, e.seq, e.id);
          break;
        }
        case 'send': {
          totals.sends++;
          w.sends++;
          const key = `${c.uid}\u0000${e.cmid}`;
          if (e.attempt > 1) { totals.retries++; w.retries++; }
          if (!sentKeys.has(key)) { sentKeys.add(key); totals.messages_sent++; }
          attemptsOf.set(key, (attemptsOf.get(key) || 0) + 1);
          lastAttempt.set(key, e.t);
          break;
        }
        case 'ack': {
          totals.acks++;
          w.acks++;
          const key = `${c.uid}\u0000${e.cmid}`;
          acked.add(key);
          const row = byCmid.get(key);
          if (!row) flag('ack_unsaved', e.t, { client: c.uid, cmid: e.cmid, ack: { id: e.id, seq: e.seq }, what: 'acked clientMsgId has no row' });
          else if (row.id !== e.id || row.seq !== e.seq) {
            flag('ack_unsaved', e.t, { client: c.uid, cmid: e.cmid, ack: { id: e.id, seq: e.seq }, stored: { id: row.id, seq: row.seq }, what: 'ack names another row' });
          }
          break;
        }
        case 'err':
          totals.errors[e.code] = (totals.errors[e.code] || 0) + 1;
          w.errors++;
          break;
        case 'timeout':
          totals.timeouts++;
          w.timeouts++;
          break;
        default:
          break;
      }
    }

    owed.push({ c, base, maxSeen, seenRecv });
  }

  for (const { c, base, maxSeen, seenRecv } of owed) {
    // Loss: every stored message of a room above the client's first snapshot, up to the
    // room's last seq when the client ended the run joined to it (it had every chance to get
    // it live or by recovery), else up to the newest seq it ever saw there.
    const finalJoined = new Set((c.final && c.final.joined) || []);
    for (const room of c.rooms) {
      if (!roomSet.has(room)) continue;
      if (!base.has(room)) {
        flag('unrecovered', Infinity, { client: c.uid, room, what: 'never joined the room' });
        continue;
      }
      const from = base.get(room);
      const joinedAtEnd = finalJoined.has(room);
      if (!joinedAtEnd) flag('unrecovered', Infinity, { client: c.uid, room, what: 'not connected and joined at the end of the run' });
      const upto = joinedAtEnd ? roomMax(room) : (maxSeen.get(room) || 0);
      const got = seenRecv(room);
      for (const row of roomRows.get(room) || []) {
        if (row.seq <= from || row.seq > upto) continue;
        if (got.get(row.seq) === row.id) continue;
        const key = `${row.user}\u0000${row.cmid}`;
        flag('lost', row.ms, { client: c.uid, kind: c.kind, room, seq: row.seq, id: row.id, cmid: row.cmid, acked: acked.has(key), committedAt: row.ms });
      }
    }
  }
  for (const r of db) if (r.cmid != null && !acked.has(`${r.user}\u0000${r.cmid}`)) totals.committed_unacked++;
  // Resends of a message that was already committed (its first attempt got an error, a
  // timeout or a lost connection after the insert): the idempotent path at work.
  for (const [key, t] of lastAttempt) {
    const row = byCmid.get(key);
    if (row && attemptsOf.get(key) > 1 && row.ms < t) totals.resends_of_committed++;
  }
  // A row no client ever sent (text/clientMsgId from nowhere).
  for (const r of db) {
    if (!sentKeys.has(`${r.user}\u0000${r.cmid}`)) flag('unexpected', r.ms, { what: 'stored row that no client sent', row: r });
  }
  const pass = CLASSES.every((k) => counts[k] === 0);
  return { pass, counts, anomalies, totals, windows: win, roomMax: Object.fromEntries([...roomRows.keys()].map((r) => [r, roomMax(r)])) };
}

// Plain-text rendering of a report.
function render(rep, meta = {}) {
  const L = [];
  const pad = (s, n) => String(s).padStart(n);
  L.push(`chaos run: ${rep.pass ? 'PASS' : 'FAIL'}`);
  if (meta.summary) L.push(meta.summary);
  const t = rep.totals;
  L.push(`clients ${t.clients}, sessions ${t.sessions} (reconnects ${t.reconnects}, failed connection attempts ${t.connect_failures}; closed by server ${t.server_closes}, by client ${t.client_closes})`);
  L.push(`messages sent ${t.messages_sent} (send requests ${t.sends}, retries ${t.retries}), acks ${t.acks}, errors ${JSON.stringify(t.errors)}, timeouts/disconnected ${t.timeouts}`);
  L.push(`rows in PostgreSQL ${t.db_rows} (committed but never acked to the sender: ${t.committed_unacked}; resends of an already committed message: ${t.resends_of_committed})`);
  L.push(`deliveries: live ${t.deliveries_live}, by recovery (join with since) ${t.deliveries_recovered} in ${t.recovery_joins} recovery joins + ${t.recovery_pages} pages (refetched on request ${t.refetched}); history on first join ${t.history_items}`);
  L.push('');
  L.push('anomalies: ' + CLASSES.map((k) => `${k} ${rep.counts[k]}`).join(', '));
  L.push('');
  L.push(`${'window'.padEnd(22)} ${pad('sends', 6)} ${pad('retry', 6)} ${pad('acks', 6)} ${pad('errors', 6)} ${pad('t/o', 5)} ${pad('reconn', 6)} ${pad('commits', 7)} ${pad('deliv', 7)}  anomalies`);
  for (const w of rep.windows) {
    const an = CLASSES.filter((k) => w.anomalies[k]).map((k) => `${k}=${w.anomalies[k]}`).join(' ') || '0';
    L.push(`${(w.name + (w.note ? ` (${w.note})` : '')).slice(0, 22).padEnd(22)} ${pad(w.sends, 6)} ${pad(w.retries, 6)} ${pad(w.acks, 6)} ${pad(w.errors, 6)} ${pad(w.timeouts, 5)} ${pad(w.reconnects, 6)} ${pad(w.committed, 7)} ${pad(w.deliveries, 7)}  ${an}`);
  }
  for (const k of CLASSES) {
    if (!rep.anomalies[k].length) continue;
    L.push('');
    L.push(`${k} (first ${rep.anomalies[k].length} of ${rep.counts[k]}):`);
    for (const a of rep.anomalies[k]) L.push(`  ${JSON.stringify(a)}`);
  }
  return L.join('\n') + '\n';
}

module.exports = { check, render, CLASSES };

// Re-check a finished run from its files: node tests/chaos/checker.js DIR
// (DIR holds clients.jsonl, db.jsonl, windows.json as written by run.js). Exit 1 on an anomaly.
if (require.main === module) {
  const fs = require('node:fs');
  const path = require('node:path');
  const dir = process.argv[2];
  if (!dir) { process.stderr.write('usage: node tests/chaos/checker.js RUN_DIR\n'); process.exit(2); }
  const lines = (f) => fs.readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const clients = lines('clients.jsonl');
  const rooms = [...new Set(clients.flatMap((c) => c.rooms))];
  const rep = check({ clients, db: lines('db.jsonl'), windows: JSON.parse(fs.readFileSync(path.join(dir, 'windows.json'), 'utf8')), rooms });
  process.stdout.write(render(rep, { summary: `re-checked ${dir}` }));
  process.exit(rep.pass ? 0 : 1);
}

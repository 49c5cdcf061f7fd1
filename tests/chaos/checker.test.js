'use strict';
// The checker's rules on small hand-made logs: a clean history passes, and each anomaly
// class is reported (so a chaos run that passes is not a checker that cannot fail).
// Run: cd tests && node --test chaos/checker.test.js (scripts/chaos runs it first).
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { check } = require('./checker');

const R = 'room';
// Rows 1..5 of one room, sent by "a" (cmids a.1..a.5), committed at t = 100 * seq.
const rows = () => [1, 2, 3, 4, 5].map((seq) => ({ id: 100 + seq, room: R, seq, user: 'a', cmid: `a.${seq}`, ms: 100 * seq }));
const item = (seq) => [100 + seq, seq, `a.${seq}`, 'a'];
const msg = (s, seq, t = 1000 + seq) => ({ t, ev: 'msg', s, room: R, id: 100 + seq, seq, cmid: `a.${seq}`, user: 'a' });

// Sender "a": sends and acks all five. Receiver "b": the log under test.
function run(bLog, { db = rows(), bFinal = { joined: [R] }, aExtra = [] } = {}) {
  const aLog = [{ t: 0, ev: 'open', s: 1 }, { t: 1, ev: 'join', s: 1, room: R, since: null, page: false, items: [] }];
  for (const r of rows()) {
    aLog.push({ t: r.ms - 1, ev: 'send', s: 1, cmid: r.cmid, room: R, attempt: 1 });
    aLog.push({ t: r.ms, ev: 'ack', s: 1, cmid: r.cmid, id: r.id, seq: r.seq });
    aLog.push({ ...msg(1, r.seq), t: r.ms + 1 });
  }
  aLog.push(...aExtra);
  return check({
    rooms: [R],
    db,
    windows: [{ name: 'f1', kind: 'worker_kill', t0: 250 }],
    clients: [
      { uid: 'a', kind: 'ws', rooms: [R], final: { joined: [R] }, log: aLog },
      { uid: 'b', kind: 'ws', rooms: [R], final: bFinal, log: bLog },
    ],
  });
}

const open = (s, t = s) => ({ t, ev: 'open', s });
const join = (s, since, items, extra = {}) => ({ t: 10 + s, ev: 'join', s, room: R, since, page: false, items, truncated: false, ...extra });

describe('chaos checker', () => {
  it('passes a history with a reconnect and a since recovery', () => {
    const rep = run([open(1), join(1, null, []), msg(1, 1), msg(1, 2), { t: 300, ev: 'close', s: 1, by: 'server' },
      open(2, 400), join(2, 2, [item(3), item(4)]), msg(2, 5)]);
    assert.equal(rep.pass, true, JSON.stringify(rep.counts));
    assert.equal(rep.totals.deliveries_recovered, 2);
    assert.equal(rep.totals.reconnects, 1);
  });

  it('reports a message never delivered (lost), whether or not the client reconnected', () => {
    let rep = run([open(1), join(1, null, []), msg(1, 1), msg(1, 2), msg(1, 4), msg(1, 5)]);
    assert.equal(rep.counts.lost, 1);
    assert.equal(rep.anomalies.lost[0].seq, 3);
    assert.equal(rep.anomalies.lost[0].acked, true);
    assert.equal(rep.windows.find((w) => w.name === 'f1').anomalies.lost, 1, 'attributed to the window of its commit');
    // The recovery skipped seq 3 (since = 3 although only 2 was seen).
    rep = run([open(1), join(1, null, []), msg(1, 1), msg(1, 2), open(2, 400), join(2, 3, [item(4)]), msg(2, 5)]);
    assert.equal(rep.counts.lost, 1);
    // Not delivered at the end while joined: lost up to the room's last seq.
    rep = run([open(1), join(1, null, []), msg(1, 1), msg(1, 2), msg(1, 3)]);
    assert.equal(rep.counts.lost, 2);
  });

  it('owes a client that ended disconnected only what lies below the newest seq it saw', () => {
    const rep = run([open(1), join(1, null, []), msg(1, 1), msg(1, 2), { t: 300, ev: 'close', s: 1, by: 'server' }], { bFinal: { joined: [] } });
    assert.equal(rep.counts.lost, 0);
    assert.equal(rep.counts.unrecovered, 1);
  });

  it('reports duplicates within a session and live re-deliveries after a recovery', () => {
    let rep = run([open(1), join(1, null, []), msg(1, 1), msg(1, 2), msg(1, 2), msg(1, 3), msg(1, 4), msg(1, 5)]);
    assert.equal(rep.counts.duplicated, 1);
    // The ack of the recovery join had 3; the live stream must not send it again.
    rep = run([open(1), join(1, null, []), msg(1, 1), msg(1, 2), open(2, 400), join(2, 2, [item(3)]), msg(2, 3), msg(2, 4), msg(2, 5)]);
    assert.equal(rep.counts.duplicated, 1);
    // A recovery join returning what its since excludes.
    rep = run([open(1), join(1, null, []), msg(1, 1), msg(1, 2), open(2, 400), join(2, 2, [item(2), item(3)]), msg(2, 4), msg(2, 5)]);
    assert.equal(rep.counts.duplicated, 1);
    // Two rows for one clientMsgId.
    const db = rows();
    db.push({ id: 200, room: R, seq: 6, user: 'a', cmid: 'a.5', ms: 600 });
    rep = run([open(1), join(1, null, []), msg(1, 1), msg(1, 2), msg(1, 3), msg(1, 4), msg(1, 5), { ...msg(1, 6), id: 200, cmid: 'a.5' }], { db });
    assert.ok(rep.counts.duplicated >= 1);
  });

  it('allows a page of a truncated recovery to repeat what the live stream brought', () => {
    const rep = run([open(1), join(1, null, []), msg(1, 1), open(2, 400), join(2, 1, [item(2)], { truncated: true }), msg(2, 4), msg(2, 5),
      { ...join(2, 2, [item(3), item(4), item(5)]), page: true, t: 500 }]);
    assert.equal(rep.pass, true, JSON.stringify(rep.anomalies));
    assert.equal(rep.totals.refetched, 2);
  });

  it('reports a seq lower than one already delivered in the session (out of order)', () => {
    const rep = run([open(1), join(1, null, []), msg(1, 1), msg(1, 3), msg(1, 2), msg(1, 4), msg(1, 5)]);
    assert.equal(rep.counts.out_of_order, 1);
    assert.equal(rep.counts.lost, 0);
  });

  it('reports deliveries that are not in the table, or differ from it (unexpected)', () => {
    let rep = run([open(1), join(1, null, []), msg(1, 1), msg(1, 2), msg(1, 3), msg(1, 4), msg(1, 5), { ...msg(1, 6), id: 999 }]);
    assert.equal(rep.counts.unexpected, 1);
    rep = run([open(1), join(1, null, []), msg(1, 1), { ...msg(1, 2), cmid: 'a.9' }, msg(1, 3), msg(1, 4), msg(1, 5)]);
    assert.equal(rep.counts.unexpected, 1);
    // A live message for a room this session never joined.
    rep = run([open(1), join(1, null, []), msg(1, 1), msg(1, 2), open(2, 400), msg(2, 3), join(2, 3, [item(4), item(5)])]);
    assert.equal(rep.counts.unexpected, 1);
  });

  it('reports acks for clientMsgIds that have no row, or another row (ack_unsaved)', () => {
    const full = [open(1), join(1, null, []), msg(1, 1), msg(1, 2), msg(1, 3), msg(1, 4), msg(1, 5)];
    let rep = run(full, { aExtra: [{ t: 900, ev: 'ack', s: 1, cmid: 'a.77', id: 300, seq: 9 }] });
    assert.equal(rep.counts.ack_unsaved, 1);
    rep = run(full, { aExtra: [{ t: 900, ev: 'ack', s: 1, cmid: 'a.1', id: 102, seq: 2 }] });
    assert.equal(rep.counts.ack_unsaved, 1);
  });
});

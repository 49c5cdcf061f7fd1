'use strict';
// Issue 7: the load generator's own correctness. A small scenario against a real cluster
// must count every expected delivery exactly once (loss 0, no duplicates), and report
// positive, ordered latency percentiles.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const path = require('node:path');
const h = require('../lib/harness');

const LOADGEN = path.join(h.BUILD, 'bench', 'load', 'loadgen');
let cl;

before(async () => {
  cl = await h.startCluster({
    instances: 2, workers: 2,
    env: { CHAT_RATE_LIMIT: '100000', CHAT_RATE_BURST: '100000', CHAT_PRESENCE_EVENTS: 'none' },
  });
});
after(h.stopAll);

// Asynchronous, so this process keeps reading the gateways' log pipes while loadgen runs.
async function run(args) {
  const pids = cl.gateways.map((g) => `tree:${g.child.pid}`).join(',');
  const { stdout } = await promisify(execFile)(LOADGEN, [
    '--target', `127.0.0.1:${cl.port(0)},127.0.0.1:${cl.port(1)}`, '--secret', h.SECRET,
    '--server-pids', pids, '--warmup', '0.5', '--drain', '2', '--settle', '0.2', ...args,
  ], { timeout: 60000 });
  return JSON.parse(stdout);
}

function checkLatency(l) {
  assert.ok(l.count > 0);
  assert.ok(l.p50 > 0, 'positive');
  assert.ok(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max, JSON.stringify(l));
}

describe('loadgen', () => {
  for (const proto of ['raw', 'sio']) {
    it(`fanout over ${proto}: every expected delivery counted once`, async () => {
      const r = await run(['--proto', proto, '--scenario', 'fanout', '--connections', '60', '--room-size', '10',
        '--rate', '200', '--duration', '2', '--procs', '2']);
      assert.equal(r.connected, 60);
      assert.ok(r.sent > 300, `sent ${r.sent}`);
      assert.equal(r.ack_errors, 0);
      assert.equal(r.acked, r.sent);
      assert.equal(r.expected, r.acked * 10);
      assert.equal(r.lost, 0);
      assert.equal(r.delivered, r.expected);
      assert.equal(r.duplicates, 0);
      assert.equal(r.out_of_order, 0);
      checkLatency(r.latency_us);
      checkLatency(r.ack_latency_us);
      assert.ok(r.server.pids >= 6, 'masters and workers of both gateways');
      assert.ok(r.server.cpu_seconds > 0);
    });
  }

  it('direct messages: one delivery each', async () => {
    const r = await run(['--scenario', 'dm', '--connections', '40', '--rate', '100', '--duration', '2']);
    assert.equal(r.lost, 0);
    assert.equal(r.delivered, r.acked);
    checkLatency(r.latency_us);
  });

  it('idle: reports memory per connection', async () => {
    const r = await run(['--scenario', 'idle', '--connections', '500', '--duration', '0.5']);
    assert.equal(r.connected, 500);
    assert.ok(r.server.rss_kib_connected >= r.server.rss_kib_base);
  });
});

'use strict';
// Issue 9: the demo web client served at / (web/), in a real headless browser: Debian's
// Chromium driven by playwright-core (never a downloaded browser). Two users on two
// different instances of a real cluster (Redis, PostgreSQL, two brokers, two gateways):
// alice on instance 0, bob on instance 1 through a TCP proxy that the test can cut, which
// is a real connection loss for the page (its WebSocket dies, reconnects fail until the
// proxy comes back). Every assertion is on what the page shows. A second part runs the page
// against a scripted server for what a real cluster does not do on demand (a seq gap in the
// live stream, a lost ack).
//
//   cd tests && node --test e2e/
//   CHAT_E2E_SCREENSHOTS=1 node --test e2e/    # also refresh docs/screenshots/*.png
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { WebSocketServer } = require('ws');
const h = require('../lib/harness');

const CHROMIUM = process.env.CHAT_CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.CHAT_E2E_SCREENSHOTS === '1' ? path.join(h.ROOT, 'docs', 'screenshots') : null;
const T = 10000; // longest wait for one DOM condition
const CSP = "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; " +
  "script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

// A TCP proxy in front of a gateway: cut() drops every connection and refuses new ones
// (accept, then close) until restore().
class CutProxy {
  static async start(targetPort) {
    const p = new CutProxy(targetPort);
    await new Promise((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    p.port = p.server.address().port;
    return p;
  }

  constructor(targetPort) {
    this.down = false;
    this.socks = new Set();
    this.server = net.createServer((client) => {
      if (this.down) { client.destroy(); return; }
      const upstream = net.connect(targetPort, '127.0.0.1');
      for (const [a, b] of [[client, upstream], [upstream, client]]) {
        this.socks.add(a);
        a.on('error', () => {});
        a.on('close', () => { this.socks.delete(a); b.destroy(); });
        a.pipe(b);
      }
    });
  }

  cut() { this.down = true; for (const s of this.socks) s.destroy(); }
  restore() { this.down = false; }
  close() { this.cut(); return new Promise((r) => this.server.close(r)); }
}

// A scripted stand-in for the gateway (web/ over HTTP, the protocol over `ws`) for what a
// real cluster never does on purpose: a seq gap in the live stream, a send whose ack is lost.
class FakeGateway {
  static async start() {
    const f = new FakeGateway();
    await new Promise((resolve) => f.server.listen(0, '127.0.0.1', resolve));
    f.port = f.server.address().port;
    return f;
  }

  constructor() {
    this.got = []; // every request the page sent, in order
    this.waiters = [];
    this.connections = 0;
    const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };
    this.server = http.createServer((req, res) => {
      const file = path.join(h.ROOT, 'web', req.url === '/' ? 'index.html' : path.basename(req.url.split('?')[0]));
      if (!fs.existsSync(file)) { res.writeHead(404).end(); return; }
      res.writeHead(200, { 'Content-Type': types[path.extname(file)] || 'application/octet-stream', 'Content-Security-Policy': CSP });
      res.end(fs.readFileSync(file));
    });
    this.wss = new WebSocketServer({ server: this.server, path: '/ws' });
    this.wss.on('connection', (ws) => {
      this.ws = ws;
      this.connections++;
      ws.on('message', (raw) => {
        const m = JSON.parse(raw.toString());
        if (m.event === 'get_online_users') { this.reply(m, [{ userId: 'zoe', username: 'zoe' }]); return; }
        if (m.event === 'typing') { this.reply(m, {}); return; }
        this.got.push(m);
        for (const w of [...this.waiters]) {
          if (w.event === m.event) { this.waiters.splice(this.waiters.indexOf(w), 1); w.resolve(m); }
        }
      });
      for (const w of [...this.waiters]) if (w.event === 'connection') { this.waiters.splice(this.waiters.indexOf(w), 1); w.resolve(); }
    });
  }

  // The next request of this event (already received and not yet taken, or to come).
  next(event) {
    const i = this.got.findIndex((m) => m.event === event && !m.taken);
    if (i >= 0) { this.got[i].taken = true; return Promise.resolve(this.got[i]); }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${event} from the page`)), T);
      this.waiters.push({ event, resolve: (m) => { clearTimeout(timer); m.taken = true; resolve(m); } });
    });
  }

  connection(n) {
    if (this.connections >= n) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ event: 'connection', resolve: () => (this.connections >= n ? resolve() : this.connection(n).then(resolve)) }));
  }

  reply(m, data) { this.ws.send(JSON.stringify({ event: 'ack', id: m.id, data })); }
  push(event, data) { this.ws.send(JSON.stringify({ event, data })); }
  drop() { this.ws.terminate(); }
  close() { for (const c of this.wss.clients) c.terminate(); this.wss.close(); return new Promise((r) => this.server.close(r)); }
}

const fakeMsg = (seq, text = `m${seq}`, user = 'zoe') => ({
  id: 1000 + seq, seq, text, roomId: 'gap', userId: user, username: user, timestamp: new Date().toISOString(),
});

let cl;
let browser;
let proxy;
const users = {}; // name -> {ctx, page, log}

before(async () => {
  cl = await h.startCluster({ instances: 2, workers: 2, env: { CHAT_DEV_TOKENS: '1' } });
  proxy = await CutProxy.start(cl.port(1));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  if (SHOTS) fs.mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  if (browser) await browser.close();
  if (proxy) await proxy.close();
  await h.stopAll();
});

// A browser context per user (own localStorage); console errors, page errors and CSP
// violations are recorded from the first script on.
async function newUser(name, viewport = { width: 1000, height: 640 }) {
  const ctx = await browser.newContext({ viewport });
  await ctx.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation',
      (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const page = await ctx.newPage();
  const log = { console: [], pageErrors: [] };
  page.on('console', (m) => { if (m.type() === 'error') log.console.push(m.text()); });
  page.on('pageerror', (e) => log.pageErrors.push(e.message));
  users[name] = { ctx, page, log };
  return users[name];
}

async function shot(page, name) {
  if (SHOTS) await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

// Longer than T: the gateway may leave an HTTP response unsent until the connection's 10 s
// idle timeout when another connection closes in the same loop turn (a gateway bug, reported
// with this test); the browser then retries, and a page load takes 10 s longer.
const connected = (page) => page.locator('#status[data-state="connected"]').waitFor({ timeout: 2 * T + 5000 });

async function signIn(page, port, name) {
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.locator('#signin-dev').waitFor({ state: 'visible', timeout: T });
  await page.fill('#signin-name', name);
  await page.click('#signin-form button[type="submit"]');
  await connected(page);
  assert.equal(await page.textContent('#me-name'), name);
}

async function joinRoom(page, room, status = 'joined') {
  await page.fill('#join-input', room);
  await page.press('#join-input', 'Enter');
  await page.locator(`#room-list li[data-key="r:${room}"][data-status="${status}"]`).waitFor({ timeout: T });
}

async function openConv(page, key) {
  await page.click(`li[data-key="${key}"] button`);
  await page.locator(`li.active[data-key="${key}"]`).waitFor({ state: 'attached', timeout: T });
}

async function send(page, text) {
  await page.fill('#composer-input', text);
  await page.press('#composer-input', 'Enter');
}

// The messages of the open pane, as shown: [{seq, id, author, text}] (not the outbox).
function shown(page) {
  return page.$$eval('#conv-slot ol.messages:not(.outbox) > li.msg', (lis) => lis.map((li) => ({
    seq: li.dataset.seq ? Number(li.dataset.seq) : null,
    id: Number(li.dataset.id),
    author: li.querySelector('.author').textContent,
    text: li.querySelector('.text').textContent,
  })));
}

// Wait until the open pane shows a message with exactly this text.
function waitMessage(page, text) {
  return page.waitForFunction((t) => [...document.querySelectorAll('#conv-slot ol.messages:not(.outbox) > li.msg .text')]
    .some((e) => e.textContent === t), text, { timeout: T });
}

const badge = (page, key) => page.locator(`li[data-key="${key}"] .badge`);

function noErrors(u, what) {
  assert.deepEqual(u.log.console, [], `${what}: console errors`);
  assert.deepEqual(u.log.pageErrors, [], `${what}: page errors`);
}

describe('web client', () => {
  it('serves the static files with the CSP, no-cache and an ETag, without inline code', async () => {
    const r = await h.httpGet(cl.port(0), '/');
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^text\/html/);
    assert.equal(r.headers['content-security-policy'], CSP);
    assert.equal(r.headers['cache-control'], 'no-cache');
    assert.ok(r.headers.etag, 'ETag');
    assert.equal((await h.httpGet(cl.port(0), '/', { 'If-None-Match': r.headers.etag })).status, 304);
    // Nothing the CSP would refuse: no inline scripts, styles or handlers.
    assert.doesNotMatch(r.body, /<script(?![^>]*\bsrc=)[^>]*>/i);
    assert.doesNotMatch(r.body, /<style|\sstyle=|\son[a-z]+=/i);
    for (const [file, type] of [['/app.js', /^text\/javascript/], ['/style.css', /^text\/css/], ['/icon.svg', /^image\/svg\+xml/]]) {
      const f = await h.httpGet(cl.port(0), file);
      assert.equal(f.status, 200, file);
      assert.match(f.headers['content-type'], type, file);
      assert.equal(f.headers['content-security-policy'], CSP, file);
    }
    const js = fs.readFileSync(path.join(h.ROOT, 'web', 'app.js'), 'utf8');
    assert.doesNotMatch(js, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function/);
    assert.doesNotMatch(js, /socket\.io/i);
  });

  it('signs in with a development token, with no console error or CSP violation', async () => {
    const { page } = await newUser('alice');
    await page.goto(`http://127.0.0.1:${cl.port(0)}/`);
    await page.locator('#signin-dev').waitFor({ state: 'visible', timeout: T });
    assert.equal(await page.isVisible('#signin-token'), false);
    assert.equal(await page.getAttribute('#status', 'data-state'), 'idle');
    await shot(page, 'signin');
    // A bad name is refused in the page.
    await page.fill('#signin-name', 'no spaces');
    await page.click('#signin-form button[type="submit"]');
    await page.locator('#signin-error').waitFor({ state: 'visible', timeout: T });
    await page.fill('#signin-name', 'alice');
    await page.click('#signin-form button[type="submit"]');
    await connected(page);
    assert.equal(await page.textContent('#me-name'), 'alice');
    await page.locator('#online-list li[data-user-id="alice"]').waitFor({ timeout: T });
    noErrors(users.alice, 'alice on load');
    assert.deepEqual(await page.evaluate(() => window.__csp), []);
    // The policy is enforced (so "no violation" means something): an inline style is refused.
    await page.evaluate(() => { const d = document.createElement('div'); d.setAttribute('style', 'color: red'); document.body.appendChild(d); d.remove(); });
    await page.waitForFunction(() => window.__csp.length > 0, null, { timeout: T });
    await page.evaluate(() => { window.__csp = []; });
    users.alice.log.console.length = 0;
  });

  it('room messages, typing and presence between two instances', async () => {
    const alice = users.alice.page;
    await joinRoom(alice, 'general');
    const { page: bob } = await newUser('bob');
    await signIn(bob, proxy.port, 'bob'); // instance 1
    noErrors(users.bob, 'bob on load');
    assert.deepEqual(await bob.evaluate(() => window.__csp), []);
    await alice.locator('#online-list li[data-user-id="bob"]').waitFor({ timeout: T });
    await bob.locator('#online-list li[data-user-id="alice"]').waitFor({ timeout: T });

    await joinRoom(bob, 'general');
    await alice.locator('#conv-slot li.note', { hasText: 'bob joined #general' }).waitFor({ timeout: T });

    await send(alice, 'hello from alice');
    await waitMessage(bob, 'hello from alice');
    await send(bob, 'hi alice');
    await waitMessage(alice, 'hi alice');

    // Enter sends, Shift+Enter is a new line.
    await alice.fill('#composer-input', 'line one');
    await alice.press('#composer-input', 'Shift+Enter');
    await alice.locator('#composer-input').pressSequentially('line two');
    assert.equal(await alice.inputValue('#composer-input'), 'line one\nline two');
    await alice.press('#composer-input', 'Enter');
    await waitMessage(bob, 'line one\nline two');
    assert.equal(await alice.inputValue('#composer-input'), '');

    // Typing: shown to the other user, gone on send...
    await bob.locator('#composer-input').pressSequentially('typing to alice', { delay: 20 });
    await alice.locator('#typing', { hasText: 'bob is typing…' }).waitFor({ timeout: T });
    await shot(alice, 'room');
    await bob.press('#composer-input', 'Enter');
    await waitMessage(alice, 'typing to alice');
    await alice.waitForFunction(() => document.getElementById('typing').textContent === '', null, { timeout: T });
    // ...and after a pause (isTyping false after 3 s idle, well before the 7 s expiry).
    await bob.locator('#composer-input').pressSequentially('hmm', { delay: 20 });
    await alice.locator('#typing', { hasText: 'bob is typing…' }).waitFor({ timeout: T });
    const t0 = Date.now();
    await alice.waitForFunction(() => document.getElementById('typing').textContent === '', null, { timeout: T });
    assert.ok(Date.now() - t0 < 5500, `typing cleared after ${Date.now() - t0} ms`);
    await bob.fill('#composer-input', '');

    const a = await shown(alice);
    const b = await shown(bob);
    assert.deepEqual(b, a, 'both users see the same messages');
    assert.deepEqual(a.map((m) => m.text), ['hello from alice', 'hi alice', 'line one\nline two', 'typing to alice']);
  });

  it('direct messages in their own pane, and unread counts', async () => {
    const alice = users.alice.page;
    const bob = users.bob.page;
    // alice opens a DM pane by clicking bob.
    await alice.click('#online-list li[data-user-id="bob"] button');
    await alice.locator('li.active[data-key="d:bob"]').waitFor({ timeout: T });
    assert.equal(await alice.textContent('#pane-title'), 'bob');
    await send(alice, 'psst, bob');
    await waitMessage(alice, 'psst, bob');
    // bob, reading #general, gets an unread badge on a new DM entry.
    await badge(bob, 'd:alice').waitFor({ timeout: T });
    assert.equal(await badge(bob, 'd:alice').textContent(), '1');
    assert.equal(await bob.title(), '(1) chat');
    await openConv(bob, 'd:alice');
    await waitMessage(bob, 'psst, bob');
    assert.equal(await badge(bob, 'd:alice').count(), 0);
    await send(bob, 'hi alice, privately');
    await waitMessage(alice, 'hi alice, privately');
    await waitMessage(bob, 'hi alice, privately');
    assert.deepEqual((await shown(bob)).map((m) => [m.author, m.text]),
      [['alice', 'psst, bob'], ['bob', 'hi alice, privately']]);
    await shot(bob, 'dm');

    // Room messages while alice reads the DM: a count on #general, cleared on opening it.
    await openConv(bob, 'r:general');
    await send(bob, 'unread one');
    await send(bob, 'unread two');
    await waitMessage(bob, 'unread two');
    await alice.locator('li[data-key="r:general"] .badge', { hasText: '2' }).waitFor({ timeout: T });
    await openConv(alice, 'r:general');
    await waitMessage(alice, 'unread two');
    assert.equal(await badge(alice, 'r:general').count(), 0);
  });

  it('a private room is refused with FORBIDDEN and marked private', async () => {
    execFileSync(h.BIN.chatctl, ['room', 'create', 'secret', '--private', '1', '--owner', 'carol',
      '--database-url', cl.db], { stdio: 'pipe' });
    const alice = users.alice.page;
    await joinRoom(alice, 'secret', 'private');
    await alice.locator('#notices .notice.error', { hasText: 'Cannot join #secret: it is private' }).waitFor({ timeout: T });
    assert.match(await alice.textContent('#notices'), /FORBIDDEN/);
    assert.equal(await alice.textContent('li[data-key="r:secret"] .tag'), 'private');
    assert.match(await alice.textContent('#pane-blocked-text'), /private room/);
    assert.equal(await alice.isDisabled('#composer-input'), true);
    await openConv(alice, 'r:general');
  });

  it('older history loads when scrolling to the top', async () => {
    const n = 120;
    cl.pg.psql(new URL(cl.db).pathname.slice(1), `INSERT INTO rooms (id) VALUES ('archive');
      SELECT count(*) FROM chat_send_messages(array_fill('archive'::text, ARRAY[${n}]),
        array_fill('carol'::text, ARRAY[${n}]),
        ARRAY(SELECT 'old message ' || g FROM generate_series(1, ${n}) g),
        array_fill(NULL::text, ARRAY[${n}]))`);
    const alice = users.alice.page;
    await joinRoom(alice, 'archive');
    await waitMessage(alice, `old message ${n}`);
    assert.deepEqual((await shown(alice)).map((m) => m.seq), Array.from({ length: 50 }, (_, i) => n - 49 + i));
    for (let i = 0; i < 5 && !(await alice.isVisible('#older:has-text("beginning of #archive")')); i++) {
      const count = (await shown(alice)).length;
      await alice.evaluate(() => { document.getElementById('scroller').scrollTop = 0; });
      await alice.waitForFunction((c) => document.querySelectorAll('#conv-slot ol.messages:not(.outbox) > li.msg').length > c ||
        /beginning/.test(document.getElementById('older').textContent), count, { timeout: T });
    }
    await alice.locator('#older', { hasText: 'This is the beginning of #archive.' }).waitFor({ timeout: T });
    const all = await shown(alice);
    assert.deepEqual(all.map((m) => m.seq), Array.from({ length: n }, (_, i) => i + 1));
    assert.equal(all[0].text, 'old message 1');
    await openConv(alice, 'r:general');
  });

  it('after losing its connection, a client sees every missed message exactly once', async () => {
    const alice = users.alice.page;
    const bob = users.bob.page;
    await openConv(bob, 'r:general');
    proxy.cut();
    await bob.locator('#status[data-state="offline"]').waitFor({ timeout: T });
    await alice.locator('#online-list li[data-user-id="bob"]').waitFor({ state: 'detached', timeout: T });

    for (const t of ['missed 1', 'missed 2', 'missed 3']) await send(alice, t);
    await waitMessage(alice, 'missed 3');
    await openConv(alice, 'd:bob');
    await send(alice, 'missed dm');
    await waitMessage(alice, 'missed dm');
    await openConv(alice, 'r:general');
    // bob writes while offline: queued, sent once the connection is back.
    await send(bob, 'sent while offline');
    await bob.locator('#conv-slot ol.outbox li.msg', { hasText: 'sent while offline' }).waitFor({ timeout: T });
    assert.match(await bob.textContent('#conv-slot ol.outbox'), /waiting for the connection/);

    proxy.restore();
    await connected(bob); // automatic reconnect with backoff
    await alice.locator('#online-list li[data-user-id="bob"]').waitFor({ timeout: T });
    await waitMessage(bob, 'missed 3');
    await waitMessage(bob, 'sent while offline');
    await waitMessage(alice, 'sent while offline');
    await bob.waitForFunction(() => document.querySelectorAll('#conv-slot ol.outbox li').length === 0, null, { timeout: T });

    const a = await shown(alice);
    const b = await shown(bob);
    for (const t of ['missed 1', 'missed 2', 'missed 3', 'sent while offline']) {
      assert.equal(b.filter((m) => m.text === t).length, 1, `bob sees "${t}" once`);
      assert.equal(a.filter((m) => m.text === t).length, 1, `alice sees "${t}" once`);
    }
    const seqs = b.map((m) => m.seq);
    assert.deepEqual(seqs, [...new Set(seqs)].sort((x, y) => x - y), 'distinct seqs, in order');
    assert.deepEqual(b, a, 'bob and alice see the same room');

    // The DM sent while bob was away: an unread count, then shown once.
    await badge(bob, 'd:alice').waitFor({ timeout: T });
    await openConv(bob, 'd:alice');
    await waitMessage(bob, 'missed dm');
    assert.equal((await shown(bob)).filter((m) => m.text === 'missed dm').length, 1);
    await openConv(bob, 'r:general');
  });

  it('a reload restores the rooms and shows the history', async () => {
    const u = users.alice;
    const before = await shown(u.page);
    u.log.console.length = 0;
    await u.page.reload();
    await connected(u.page);
    await u.page.locator('li.active[data-key="r:general"][data-status="joined"]').waitFor({ timeout: T });
    await waitMessage(u.page, 'sent while offline');
    assert.deepEqual(await shown(u.page), before);
    for (const key of ['r:general', 'r:archive', 'd:bob']) await u.page.locator(`li[data-key="${key}"]`).waitFor({ timeout: T });
    noErrors(u, 'alice after a reload');
    assert.deepEqual(await u.page.evaluate(() => window.__csp), []);
  });

  it('is usable at phone width: one column, switching between the list and a conversation', async () => {
    const bob = users.bob.page;
    await bob.setViewportSize({ width: 375, height: 720 });
    // The open conversation fills the screen; the list is one tap away.
    assert.equal(await bob.isVisible('#pane'), true);
    assert.equal(await bob.isVisible('#sidebar'), false);
    assert.equal(await bob.isVisible('#back'), true);
    const width = await bob.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375, `no horizontal scrolling (${width}px)`);
    await shot(bob, 'phone');
    await bob.click('#back');
    assert.equal(await bob.isVisible('#sidebar'), true);
    assert.equal(await bob.isVisible('#pane'), false);
    // A message in the room bob is not looking at counts as unread in the list.
    await send(users.alice.page, 'seen from a phone');
    await bob.locator('li[data-key="r:general"] .badge', { hasText: '1' }).waitFor({ timeout: T });
    await openConv(bob, 'r:general');
    assert.equal(await bob.isVisible('#sidebar'), false);
    await waitMessage(bob, 'seen from a phone');
    assert.equal(await bob.locator('#composer-input').isVisible(), true);
  });

  it('without development tokens, explains how to provide one, and takes #token=', async () => {
    const gw = await h.startGateway({ workers: 1 }); // standalone, CHAT_DEV_TOKENS unset
    const { ctx, page: first } = await newUser('dave');
    await first.goto(`http://127.0.0.1:${gw.port}/`);
    await first.locator('#signin-token').waitFor({ state: 'visible', timeout: T });
    assert.equal(await first.isVisible('#signin-dev'), false);
    assert.match(await first.textContent('#signin-token'), /#token=/);
    await first.close();
    const page = await ctx.newPage();
    await page.goto(`http://127.0.0.1:${gw.port}/#token=${h.token('dave', 'dave')}`);
    await connected(page);
    assert.equal(await page.textContent('#me-name'), 'dave');
    assert.doesNotMatch(page.url(), /token=/, 'the token is removed from the address bar');
    await page.reload(); // kept in localStorage
    await connected(page);
    await page.click('#signout');
    await page.locator('#signin-token').waitFor({ state: 'visible', timeout: T });
    await gw.stop();
  });
});

describe('web client against a scripted server', () => {
  it('fills a seq gap with history, and retries an unacknowledged send with the same clientMsgId', async () => {
    const fake = await FakeGateway.start();
    try {
      const { page, log } = await newUser('yan');
      await page.goto(`http://127.0.0.1:${fake.port}/#token=${h.token('yan', 'yan')}`);
      await connected(page);
      await page.fill('#join-input', 'gap');
      await page.press('#join-input', 'Enter');
      const join = await fake.next('join_room');
      assert.deepEqual(join.data, { roomId: 'gap' });
      fake.reply(join, { joined: 'gap', messages: [fakeMsg(1), fakeMsg(2)] });
      await waitMessage(page, 'm2');

      // seq 5 after 2: the page asks for what is between.
      fake.push('new_message', fakeMsg(5));
      const hist = await fake.next('history');
      assert.deepEqual(hist.data, { roomId: 'gap', before: 5, limit: 2 });
      fake.reply(hist, { messages: [fakeMsg(3), fakeMsg(4)], hasMore: true });
      await waitMessage(page, 'm4');
      assert.deepEqual((await shown(page)).map((m) => m.seq), [1, 2, 3, 4, 5]);

      // A send whose ack never comes: the connection drops, the page reconnects, joins with
      // since = 5, and sends again with the same clientMsgId.
      await send(page, 'only once');
      const first = await fake.next('send_message');
      assert.match(first.data.clientMsgId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      fake.drop();
      await page.locator('#status[data-state="offline"]').waitFor({ timeout: T });
      await fake.connection(2);
      const rejoin = await fake.next('join_room');
      assert.deepEqual(rejoin.data, { roomId: 'gap', since: 5 });
      // The replay repeats 5 (dropped by seq) and brings 6.
      fake.reply(rejoin, { joined: 'gap', messages: [fakeMsg(5), fakeMsg(6)], truncated: false });
      const again = await fake.next('send_message');
      assert.deepEqual(again.data, first.data, 'the retry is the same request');
      fake.reply(again, { sent: true, messageId: 1007, seq: 7 });
      fake.push('new_message', fakeMsg(7, 'only once', 'yan'));
      await waitMessage(page, 'only once');
      await page.waitForFunction(() => document.querySelectorAll('#conv-slot ol.outbox li').length === 0, null, { timeout: T });
      assert.deepEqual((await shown(page)).map((m) => m.seq), [1, 2, 3, 4, 5, 6, 7]);
      assert.equal((await shown(page)).filter((m) => m.text === 'only once').length, 1);

      // User text is text: markup arrives as characters, nothing is parsed or run.
      const evil = '<img src=x onerror="window.__pwned=1"> & <b>bold</b>';
      fake.push('new_message', { ...fakeMsg(8, evil), username: '<i>zoe</i>' });
      await waitMessage(page, evil);
      assert.equal((await shown(page)).at(-1).author, '<i>zoe</i>');
      assert.equal(await page.locator('#conv-slot img, #conv-slot b, #conv-slot i').count(), 0);
      assert.equal(await page.evaluate(() => window.__pwned), undefined);

      // Errors are shown in the page.
      await send(page, 'too long');
      const bad = await fake.next('send_message');
      fake.ws.send(JSON.stringify({ event: 'error', id: bad.id, data: { message: 'text is too long', code: 'VALIDATION_ERROR' } }));
      await page.locator('#notices .notice.error', { hasText: 'text is too long (VALIDATION_ERROR)' }).waitFor({ timeout: T });
      await page.locator('#conv-slot ol.outbox li[data-state="failed"]', { hasText: 'too long' }).waitFor({ timeout: T });
      assert.deepEqual(log.pageErrors, []);
    } finally {
      await fake.close();
    }
  });
});

// Demo web client of the chat cluster: the product's raw WebSocket protocol
// ({"event","data","id"} at /ws?token=JWT), no framework, no build step, no network access
// beyond this origin. Every piece of user text goes into the page through textContent.
'use strict';

(() => {
  // ---------------------------------------------------------------- constants, helpers

  const TOKEN_KEY = 'chat.token';
  const STATE_KEY = 'chat.state.v1.'; // + user id: joined rooms, DM peers, open pane
  const ROOM_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
  const NAME_RE = /^[A-Za-z0-9_.-]{1,32}$/;
  const PAGE = 50; // history page size
  const REQUEST_TIMEOUT = 15000;
  const HEARTBEAT_MS = 25000; // an idle connection is checked with get_online_users
  const TYPING_IDLE_MS = 3000; // isTyping false after this pause
  const TYPING_REFRESH_MS = 4000; // isTyping true again while typing goes on
  const TYPING_EXPIRE_MS = 7000; // a remote "is typing" without refresh disappears
  const NOTICE_MS = 12000;
  const RETRYABLE = new Set(['DISCONNECTED', 'TIMEOUT', 'UNAVAILABLE', 'RATE_LIMITED', 'INTERNAL_ERROR']);

  const $ = (id) => document.getElementById(id);
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  const uid = (v) => (v === undefined || v === null ? '' : String(v));
  function newClientMsgId() {
    if (window.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }
  function fmtTime(ts) {
    const d = new Date(ts);
    if (Number.isNaN(d.getTime())) return '';
    const today = new Date();
    const sameDay = d.toDateString() === today.toDateString();
    const t = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    return sameDay ? t : `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${t}`;
  }
  function decodeJwt(token) {
    try {
      const part = token.split('.')[1];
      const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
      const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
      const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (_) {
      return null;
    }
  }
  function storageGet(k) { try { return localStorage.getItem(k); } catch (_) { return null; } }
  function storageSet(k, v) { try { localStorage.setItem(k, v); } catch (_) { /* private mode */ } }
  function storageDel(k) { try { localStorage.removeItem(k); } catch (_) { /* private mode */ } }

  // ---------------------------------------------------------------- notices (errors in the page)

  function notify(message, kind = 'error') {
    const box = $('notices');
    const n = el('div', `notice ${kind}`);
    n.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    n.appendChild(el('span', 'notice-text', message));
    const x = el('button', 'notice-close', '×');
    x.type = 'button';
    x.setAttribute('aria-label', 'Dismiss');
    x.addEventListener('click', () => n.remove());
    n.appendChild(x);
    box.appendChild(n);
    while (box.children.length > 4) box.firstChild.remove();
    setTimeout(() => n.remove(), NOTICE_MS);
  }
  function errText(e) {
    if (!e) return 'unknown error';
    return e.code && e.code !== 'DISCONNECTED' && e.code !== 'TIMEOUT' ? `${e.message} (${e.code})` : e.message;
  }

  // ---------------------------------------------------------------- state

  const S = {
    token: null,
    me: null, // {id, name}
    convs: new Map(), // 'r:<roomId>' | 'd:<userId>' -> conversation
    active: null, // key
    online: new Map(), // userId -> username
    known: new Map(), // userId -> username (everyone seen, for DM titles)
    view: 'list', // phone layout: 'list' or 'chat'
    restoring: true,
  };

  function roomKey(id) { return `r:${id}`; }
  function dmKey(id) { return `d:${id}`; }

  function makeConv(kind, id, title) {
    const c = {
      key: kind === 'room' ? roomKey(id) : dmKey(id),
      kind, id, title,
      status: kind === 'room' ? 'new' : 'ready', // room: new|joining|joined|private|error
      joinedOnce: false, // a later join asks for `since`
      lastSeq: 0, // rooms: every seq up to here is known (from the join on)
      keys: [], // sorted seqs (rooms) or ids (DMs)
      byKey: new Map(),
      nodes: new Map(),
      hasMore: false,
      loadingOlder: false,
      historyLoaded: kind === 'room',
      unread: 0,
      typing: new Map(), // userId -> {name, timer}
      outbox: [],
      pumping: false,
      blockedText: '',
      scrollTop: null, // remembered when another pane is shown; null: stick to the bottom
      listEl: el('ol', 'messages'),
      outboxEl: el('ol', 'messages outbox'),
    };
    c.listEl.dataset.conv = c.key;
    c.outboxEl.dataset.conv = c.key;
    S.convs.set(c.key, c);
    return c;
  }

  function saveState() {
    if (!S.me || S.restoring) return;
    const rooms = [];
    const dms = [];
    for (const c of S.convs.values()) {
      if (c.kind === 'room' && c.status !== 'private' && c.status !== 'error') rooms.push(c.id);
      if (c.kind === 'dm') dms.push({ id: c.id, name: c.title });
    }
    storageSet(STATE_KEY + S.me.id, JSON.stringify({ rooms, dms, active: S.active }));
  }

  // ---------------------------------------------------------------- the connection

  const C = {
    ws: null,
    open: false,
    nextId: 1,
    pending: new Map(),
    attempts: 0,
    timer: null,
    countdown: null,
    heartbeat: null,
    lastRx: 0,
    stopped: false,
  };

  function wsUrl() {
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    return `${proto}://${location.host}/ws?token=${encodeURIComponent(S.token)}`;
  }

  function setStatus(state, text) {
    const s = $('status');
    s.dataset.state = state;
    $('status-text').textContent = text;
    $('reconnect-now').hidden = state !== 'offline';
    document.body.dataset.conn = state;
  }

  function connect() {
    if (C.stopped) return;
    clearTimeout(C.timer);
    clearInterval(C.countdown);
    if (C.ws) return;
    setStatus('connecting', C.attempts ? 'Reconnecting…' : 'Connecting…');
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      notify(`Cannot open a WebSocket: ${e.message}`);
      scheduleReconnect();
      return;
    }
    C.ws = ws;
    ws.onopen = () => {
      if (ws !== C.ws) return;
      C.open = true;
      C.lastRx = Date.now();
      C.attempts = 0;
      setStatus('connected', 'Connected');
      startHeartbeat();
      onConnected();
    };
    ws.onmessage = (ev) => {
      if (ws !== C.ws) return;
      C.lastRx = Date.now();
      let m;
      try { m = JSON.parse(ev.data); } catch (_) { notify('The server sent something that is not JSON.'); return; }
      onFrame(m);
    };
    ws.onclose = (ev) => {
      if (ws !== C.ws) return;
      lost(ev.code === 1008 || ev.code === 4001 ? `refused: ${ev.reason || 'policy'}` : null, !C.open);
    };
    ws.onerror = () => { /* a close event follows */ };
  }

  // The socket is gone (closed by either side, or given up on): fail what waits for a
  // reply, then reconnect with backoff.
  function lost(reason, neverOpened) {
    const ws = C.ws;
    C.ws = null;
    const wasOpen = C.open;
    C.open = false;
    stopHeartbeat();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch (_) { /* already closed */ }
    }
    for (const [, p] of C.pending) {
      clearTimeout(p.timer);
      p.reject(Object.assign(new Error('connection lost'), { code: 'DISCONNECTED' }));
    }
    C.pending.clear();
    for (const c of S.convs.values()) {
      if (c.kind === 'room' && (c.status === 'joined' || c.status === 'joining')) c.status = 'joining';
      clearTypingAll(c);
    }
    stopTyping(false);
    renderNav();
    renderPane();
    if (reason) notify(`Connection ${reason}`);
    if (neverOpened && !wasOpen && C.attempts >= 3) {
      checkTokenExpiry();
      if (C.attempts === 3 && navigator.onLine !== false) {
        notify('Cannot reach the chat server. If this goes on, the token may be invalid: sign out and sign in again.', 'info');
      }
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (C.stopped) return;
    clearTimeout(C.timer);
    clearInterval(C.countdown);
    if (navigator.onLine === false) {
      setStatus('offline', 'Offline — waiting for the network');
      // Still retry slowly: onLine is only a hint.
    }
    const base = Math.min(15000, 500 * 2 ** Math.min(C.attempts, 5));
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    C.attempts++;
    const until = Date.now() + delay;
    const tick = () => {
      const s = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      if (navigator.onLine === false) setStatus('offline', `Offline — retrying in ${s} s`);
      else setStatus('offline', `Disconnected — reconnecting in ${s} s`);
    };
    tick();
    C.countdown = setInterval(tick, 1000);
    C.timer = setTimeout(() => { clearInterval(C.countdown); connect(); }, delay);
  }

  function reconnectNow() {
    C.attempts = Math.min(C.attempts, 1);
    if (C.ws) return;
    connect();
  }

  function startHeartbeat() {
    stopHeartbeat();
    C.heartbeat = setInterval(() => {
      if (!C.open || C.hbPending || Date.now() - C.lastRx < HEARTBEAT_MS) return;
      // get_online_users doubles as a liveness check (the server's pings are invisible
      // to page scripts) and refreshes the presence list.
      C.hbPending = true;
      refreshOnline(10000).finally(() => { C.hbPending = false; });
    }, 5000);
  }
  function stopHeartbeat() { clearInterval(C.heartbeat); C.heartbeat = null; }

  function request(event, data, timeout = REQUEST_TIMEOUT) {
    return new Promise((resolve, reject) => {
      if (!C.open || !C.ws) {
        reject(Object.assign(new Error('not connected'), { code: 'DISCONNECTED' }));
        return;
      }
      const id = C.nextId++;
      const timer = setTimeout(() => {
        if (!C.pending.has(id)) return;
        C.pending.delete(id);
        reject(Object.assign(new Error(`no reply to ${event}`), { code: 'TIMEOUT' }));
        // No reply at all: the connection is probably dead; start over.
        if (C.open && Date.now() - C.lastRx > timeout - 100) lost('timed out', false);
      }, timeout);
      C.pending.set(id, { resolve, reject, timer, event });
      const msg = { event, id };
      if (data !== undefined) msg.data = data;
      C.ws.send(JSON.stringify(msg));
    });
  }

  function onFrame(m) {
    if (!m || typeof m !== 'object') return;
    const { event, data } = m;
    if ((event === 'ack' || event === 'error') && m.id !== undefined && C.pending.has(m.id)) {
      const p = C.pending.get(m.id);
      C.pending.delete(m.id);
      clearTimeout(p.timer);
      if (event === 'ack') p.resolve(data);
      else p.reject(Object.assign(new Error((data && data.message) || 'error'), { code: data && data.code }));
      return;
    }
    switch (event) {
      case 'error':
        notify(`Server error: ${errText(Object.assign(new Error((data && data.message) || 'error'), { code: data && data.code }))}`);
        break;
      case 'new_message': onNewMessage(data); break;
      case 'direct_message': onDirectMessage(data); break;
      case 'user_typing': onTyping(data); break;
      case 'user_online': onPresence(data, true); break;
      case 'user_offline': onPresence(data, false); break;
      case 'user_joined_room': onRoomMember(data, true); break;
      case 'user_left_room': onRoomMember(data, false); break;
      default: break; // other pushes (seed events, custom API events) are not shown
    }
  }

  // After every (re)connection: presence, every room again with `since` = the last seq seen,
  // every DM conversation's newest page, then whatever waited in the outboxes.
  function onConnected() {
    refreshOnline();
    const joins = [];
    for (const c of S.convs.values()) {
      if (c.kind === 'room' && c.status !== 'private' && c.status !== 'error') joins.push(joinRoom(c));
      if (c.kind === 'dm') { syncDm(c); pump(c); }
    }
    Promise.allSettled(joins).then(() => { if (S.restoring) { S.restoring = false; saveState(); } });
  }

  // ---------------------------------------------------------------- presence

  async function refreshOnline(timeout) {
    try {
      const list = await request('get_online_users', undefined, timeout);
      S.online.clear();
      for (const u of Array.isArray(list) ? list : []) {
        S.online.set(uid(u.userId), u.username);
        S.known.set(uid(u.userId), u.username);
      }
      renderOnline();
      renderNav();
      renderPaneHead();
    } catch (e) {
      if (e.code !== 'DISCONNECTED' && e.code !== 'TIMEOUT') notify(`Could not load who is online: ${errText(e)}`);
    }
  }

  function onPresence(d, on) {
    if (!d) return;
    const id = uid(d.userId);
    if (on) {
      S.online.set(id, d.username);
      S.known.set(id, d.username);
    } else {
      S.online.delete(id);
      for (const c of S.convs.values()) clearTyping(c, id);
    }
    renderOnline();
    renderNav();
    renderPaneHead();
  }

  function onRoomMember(d, joined) {
    if (!d) return;
    const c = S.convs.get(roomKey(d.roomId));
    if (!c) return;
    S.known.set(uid(d.userId), d.username);
    if (!joined) clearTyping(c, uid(d.userId));
    const note = el('li', 'note', `${d.username} ${joined ? 'joined' : 'left'} #${d.roomId}`);
    const stick = isActive(c) && nearBottom();
    c.listEl.appendChild(note);
    if (stick) scrollToBottom();
  }

  // ---------------------------------------------------------------- rooms

  function getRoom(id) { return S.convs.get(roomKey(id)) || makeConv('room', id, `#${id}`); }

  async function joinRoom(c) {
    const since = c.joinedOnce ? c.lastSeq : undefined;
    c.status = 'joining';
    renderNav();
    if (isActive(c)) renderPane();
    try {
      const data = { roomId: c.id };
      if (since !== undefined) data.since = since;
      const r = await request('join_room', data);
      if (S.convs.get(c.key) !== c) { // left while the join was on its way
        if (!S.convs.has(c.key)) request('leave_room', { roomId: c.id }).catch(() => {});
        return;
      }
      c.status = 'joined';
      c.blockedText = '';
      const msgs = Array.isArray(r.messages) ? r.messages : [];
      if (since === undefined) {
        addMessages(c, msgs, { unread: false });
        c.lastSeq = Math.max(c.lastSeq, ...msgs.map((m) => m.seq), 0);
      } else if (r.truncated) {
        // More than the server replays: start again from the newest page.
        resetMessages(c);
        const h = await request('history', { roomId: c.id, limit: PAGE });
        addMessages(c, h.messages || [], { unread: false });
        c.lastSeq = Math.max(0, ...(h.messages || []).map((m) => m.seq));
        notify(`Many messages arrived in #${c.id} while you were away: showing the newest. Scroll up for the rest.`, 'info');
      } else {
        addMessages(c, msgs, { unread: true });
        advance(c);
      }
      c.joinedOnce = true;
      c.hasMore = c.keys.length ? c.keys[0] > 1 : false;
      renderNav();
      if (isActive(c)) { renderPane(); maybeFillScreen(c); }
      saveState();
      pump(c);
    } catch (e) {
      if (e.code === 'DISCONNECTED') { renderNav(); return; } // joined again on reconnect
      if (e.code === 'FORBIDDEN') {
        c.status = 'private';
        c.blockedText = `#${c.id} is a private room: you are not a member. Ask its owner for access.`;
        notify(`Cannot join #${c.id}: it is private: ${errText(e)}.`);
      } else {
        c.status = 'error';
        c.blockedText = `Could not join #${c.id}: ${errText(e)}`;
        notify(c.blockedText);
      }
      renderNav();
      if (isActive(c)) renderPane();
      saveState();
    }
  }

  async function leaveRoom(c) {
    if (c.status === 'joined' || c.status === 'joining') {
      try {
        await request('leave_room', { roomId: c.id });
      } catch (e) {
        if (e.code !== 'DISCONNECTED') { notify(`Could not leave #${c.id}: ${errText(e)}`); return; }
      }
    }
    closeConv(c);
  }

  function closeConv(c) {
    if (S.active === c.key) stopTyping(true);
    S.convs.delete(c.key);
    if (S.active === c.key) {
      S.active = null;
      const next = [...S.convs.values()].find((x) => x.kind === 'room') || S.convs.values().next().value;
      if (next) S.active = next.key;
      else setView('list');
    }
    renderNav();
    renderPane();
    saveState();
  }

  function onNewMessage(m) {
    if (!m || m.roomId === undefined) return;
    const c = S.convs.get(roomKey(m.roomId));
    if (!c || c.status !== 'joined' || typeof m.seq !== 'number') return;
    if (c.byKey.has(m.seq)) return;
    clearTyping(c, uid(m.userId));
    addMessages(c, [m], { unread: true });
    advance(c);
    if (c.keys[c.keys.length - 1] > c.lastSeq) fillGaps(c); // seq > last + 1: fetch the gap
  }

  // lastSeq moves only over seqs that are all present, so a reconnect (join_room with
  // since = lastSeq) asks again for anything a failed gap fill left out.
  function advance(c) {
    while (c.byKey.has(c.lastSeq + 1)) c.lastSeq++;
  }

  async function fillGaps(c) {
    if (c.filling) return; // the running fill goes on to later gaps too
    c.filling = true;
    try {
      for (;;) {
        advance(c);
        const next = c.keys.find((k) => k > c.lastSeq);
        if (next === undefined) break;
        const after = c.lastSeq;
        let b = next;
        while (b - 1 > after) {
          const limit = Math.min(100, b - 1 - after);
          const r = await request('history', { roomId: c.id, before: b, limit });
          if (!S.convs.has(c.key) || c.status !== 'joined') return;
          const msgs = (r.messages || []).filter((m) => m.seq > after && m.seq < b);
          addMessages(c, msgs, { unread: true });
          if (!msgs.length) break;
          b = msgs[0].seq;
        }
        // Whatever exists below `next` is here now.
        c.lastSeq = Math.max(c.lastSeq, next - 1);
      }
    } catch (e) {
      if (e.code !== 'DISCONNECTED') notify(`Could not load missed messages of #${c.id}: ${errText(e)}`);
    } finally {
      c.filling = false;
    }
  }

  async function loadOlder(c) {
    if (!c || c.loadingOlder || !c.hasMore) return;
    c.loadingOlder = true;
    renderOlder();
    try {
      const oldest = c.keys[0];
      const r = c.kind === 'room'
        ? await request('history', { roomId: c.id, before: oldest, limit: PAGE })
        : await request('dm_history', { userId: c.id, before: oldest, limit: PAGE });
      const sc = $('scroller');
      const fromBottom = sc.scrollHeight - sc.scrollTop;
      addMessages(c, r.messages || [], { unread: false, older: true });
      c.hasMore = !!r.hasMore && (r.messages || []).length > 0;
      if (isActive(c)) sc.scrollTop = sc.scrollHeight - fromBottom; // keep the reader's place
    } catch (e) {
      if (e.code !== 'DISCONNECTED') notify(`Could not load older messages: ${errText(e)}`);
    } finally {
      c.loadingOlder = false;
      renderOlder();
      if (isActive(c)) maybeFillScreen(c);
    }
  }

  // Load older pages while the pane is not tall enough to scroll (scrolling up is how the
  // reader asks for more).
  function maybeFillScreen(c) {
    const sc = $('scroller');
    if (isActive(c) && c.hasMore && !c.loadingOlder && sc.scrollHeight <= sc.clientHeight + 8) loadOlder(c);
  }

  // ---------------------------------------------------------------- direct messages

  function dmPeerOf(m) {
    const sender = uid(m.senderId);
    return sender === S.me.id ? uid(m.recipientId) : sender;
  }

  function getDm(id, name) {
    let c = S.convs.get(dmKey(id));
    if (!c) {
      c = makeConv('dm', id, name || S.known.get(id) || id);
      saveState();
    } else if (name && c.title !== name) {
      c.title = name;
    }
    return c;
  }

  function onDirectMessage(m) {
    if (!m || !S.me) return;
    const peer = dmPeerOf(m);
    const fromPeer = uid(m.senderId) !== S.me.id;
    if (fromPeer) S.known.set(peer, m.senderUsername);
    const c = getDm(peer, fromPeer ? m.senderUsername : undefined);
    addMessages(c, [m], { unread: true });
    renderNav();
  }

  async function loadDm(c) {
    if (c.historyLoaded || c.loadingHistory) return;
    c.loadingHistory = true;
    try {
      const r = await request('dm_history', { userId: c.id, limit: PAGE });
      addMessages(c, r.messages || [], { unread: false });
      c.hasMore = !!r.hasMore;
      c.historyLoaded = true;
      if (isActive(c)) { renderPane(); maybeFillScreen(c); }
    } catch (e) {
      if (e.code !== 'DISCONNECTED') notify(`Could not load the conversation with ${c.title}: ${errText(e)}`);
    } finally {
      c.loadingHistory = false;
    }
  }

  // After a reconnect: newest pages until they reach what is already shown.
  async function syncDm(c) {
    if (!c.historyLoaded) { if (isActive(c)) loadDm(c); else syncUnloaded(c); return; }
    const newest = c.keys.length ? c.keys[c.keys.length - 1] : 0;
    let before;
    try {
      for (let i = 0; i < 20; i++) {
        const data = { userId: c.id, limit: PAGE };
        if (before !== undefined) data.before = before;
        const r = await request('dm_history', data);
        const msgs = r.messages || [];
        addMessages(c, msgs.filter((m) => m.id > newest), { unread: true });
        if (!r.hasMore || !msgs.length || msgs[0].id <= newest) break;
        before = msgs[0].id;
      }
      renderNav();
    } catch (e) {
      if (e.code !== 'DISCONNECTED') notify(`Could not load missed messages from ${c.title}: ${errText(e)}`);
    }
  }

  // A DM pane known only from live messages (not opened yet): fetch what was missed so the
  // unread count is right, without counting the older history.
  async function syncUnloaded(c) {
    const newest = c.keys.length ? c.keys[c.keys.length - 1] : null;
    if (newest === null) return;
    try {
      const r = await request('dm_history', { userId: c.id, limit: PAGE });
      addMessages(c, (r.messages || []).filter((m) => m.id > newest), { unread: true });
      renderNav();
    } catch (_) { /* opened later */ }
  }

  // ---------------------------------------------------------------- messages in the DOM

  function keyOf(c, m) { return c.kind === 'room' ? m.seq : m.id; }

  function isPhone() { return window.matchMedia('(max-width: 720px)').matches; }
  function isActive(c) { return !!c && S.active === c.key; }
  function isSeen(c) { return isActive(c) && !(isPhone() && S.view === 'list'); }

  function nearBottom() {
    const sc = $('scroller');
    return sc.scrollHeight - sc.scrollTop - sc.clientHeight < 80;
  }
  function scrollToBottom() {
    const sc = $('scroller');
    sc.scrollTop = sc.scrollHeight;
  }

  function renderMessage(c, m) {
    const mine = c.kind === 'room' ? uid(m.userId) === S.me.id : uid(m.senderId) === S.me.id;
    const li = el('li', mine ? 'msg mine' : 'msg');
    li.dataset.key = String(keyOf(c, m));
    if (c.kind === 'room') li.dataset.seq = String(m.seq);
    li.dataset.id = String(m.id);
    const meta = el('div', 'meta');
    meta.appendChild(el('span', 'author', c.kind === 'room' ? m.username : m.senderUsername));
    const t = el('time', 'time', fmtTime(m.timestamp));
    t.dateTime = m.timestamp || '';
    t.title = m.timestamp ? new Date(m.timestamp).toLocaleString() : '';
    meta.appendChild(t);
    li.appendChild(meta);
    li.appendChild(el('div', 'text', m.text));
    return li;
  }

  // Merge messages by their key (room seq / DM id): each is shown once, in order, whatever
  // the source (join, history, live push, replay after a reconnect, our own ack).
  function addMessages(c, list, opts = {}) {
    const fresh = [];
    for (const m of list) {
      if (!m || typeof m !== 'object') continue;
      const k = keyOf(c, m);
      if (typeof k !== 'number' || c.byKey.has(k)) continue;
      c.byKey.set(k, m);
      fresh.push(m);
    }
    if (!fresh.length) return 0;
    fresh.sort((a, b) => keyOf(c, a) - keyOf(c, b));
    const active = isActive(c);
    const stick = active && !opts.older && nearBottom();
    let unread = 0;
    for (const m of fresh) {
      const k = keyOf(c, m);
      let lo = 0;
      let hi = c.keys.length;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (c.keys[mid] < k) lo = mid + 1; else hi = mid; }
      c.keys.splice(lo, 0, k);
      const node = renderMessage(c, m);
      c.nodes.set(k, node);
      const next = lo + 1 < c.keys.length ? c.nodes.get(c.keys[lo + 1]) : null;
      c.listEl.insertBefore(node, next);
      const mine = c.kind === 'room' ? uid(m.userId) === S.me.id : uid(m.senderId) === S.me.id;
      if (opts.unread && !mine && !isSeen(c)) unread++;
      if (c.kind === 'room') settleOutbox(c, m.seq);
    }
    if (unread) { c.unread += unread; renderNav(); updateTitle(); }
    if (active) {
      $('pane-empty').hidden = true;
      renderOlder();
      if (stick) scrollToBottom();
    }
    return fresh.length;
  }

  function resetMessages(c) {
    c.keys = [];
    c.byKey.clear();
    c.nodes.clear();
    c.listEl.replaceChildren();
    c.lastSeq = 0;
  }

  // ---------------------------------------------------------------- sending (outbox)

  // Every send carries a clientMsgId; a send that got no ack is retried with the same id
  // after a reconnect, and the server returns the original message instead of a copy.
  function enqueue(c, text) {
    const item = { cmid: newClientMsgId(), text, state: 'queued', seq: null, error: '', node: null };
    c.outbox.push(item);
    renderOutboxItem(c, item);
    if (isActive(c)) scrollToBottom();
    pump(c);
  }

  function renderOutboxItem(c, item) {
    const li = item.node || el('li', 'msg mine pending');
    li.replaceChildren();
    li.dataset.state = item.state;
    li.dataset.clientMsgId = item.cmid;
    const meta = el('div', 'meta');
    meta.appendChild(el('span', 'author', S.me.name));
    const label = {
      queued: C.open ? 'sending…' : 'waiting for the connection…',
      sending: 'sending…',
      sent: 'sent',
      failed: 'not sent',
    }[item.state];
    meta.appendChild(el('span', 'time', label));
    li.appendChild(meta);
    li.appendChild(el('div', 'text', item.text));
    if (item.state === 'failed') {
      const row = el('div', 'pending-actions');
      row.appendChild(el('span', 'form-error', item.error));
      const retry = el('button', 'link-button', 'Retry');
      retry.type = 'button';
      retry.addEventListener('click', () => { item.state = 'queued'; renderOutboxItem(c, item); pump(c); });
      const drop = el('button', 'link-button', 'Discard');
      drop.type = 'button';
      drop.addEventListener('click', () => removeOutboxItem(c, item));
      row.append(retry, drop);
      li.appendChild(row);
    }
    if (!item.node) { item.node = li; c.outboxEl.appendChild(li); }
  }

  function removeOutboxItem(c, item) {
    const i = c.outbox.indexOf(item);
    if (i >= 0) c.outbox.splice(i, 1);
    if (item.node) item.node.remove();
  }

  function settleOutbox(c, seq) {
    for (const item of [...c.outbox]) if (item.seq === seq) removeOutboxItem(c, item);
  }

  async function pump(c) {
    if (c.pumping) return;
    c.pumping = true;
    try {
      for (;;) {
        const item = c.outbox.find((i) => i.state === 'queued');
        if (!item || !C.open) break;
        if (c.kind === 'room' && c.status !== 'joined') break; // after the join
        if (!S.convs.has(c.key)) break;
        item.state = 'sending';
        renderOutboxItem(c, item);
        try {
          if (c.kind === 'room') {
            const ack = await request('send_message', { roomId: c.id, text: item.text, clientMsgId: item.cmid });
            item.seq = ack.seq;
            item.state = 'sent';
            if (c.byKey.has(ack.seq)) removeOutboxItem(c, item); // the broadcast came first
            else renderOutboxItem(c, item);
          } else {
            const ack = await request('direct_message', { recipientId: c.id, text: item.text, clientMsgId: item.cmid });
            // The server does not echo a DM to the socket that sent it: show it from the ack.
            removeOutboxItem(c, item);
            addMessages(c, [{
              id: ack.messageId, text: item.text, senderId: S.me.id, senderUsername: S.me.name,
              recipientId: c.id, timestamp: new Date().toISOString(),
            }], { unread: false });
          }
        } catch (e) {
          if (RETRYABLE.has(e.code)) {
            item.state = 'queued';
            renderOutboxItem(c, item);
            if (e.code !== 'DISCONNECTED') setTimeout(() => pump(c), e.code === 'RATE_LIMITED' ? 1500 : 3000);
            break;
          }
          item.state = 'failed';
          item.error = errText(e);
          renderOutboxItem(c, item);
          notify(`Message not sent: ${errText(e)}`);
        }
      }
    } finally {
      c.pumping = false;
    }
  }

  // ---------------------------------------------------------------- typing

  const T = { room: null, sentAt: 0, idle: null };

  function onComposerInput() {
    const c = S.convs.get(S.active);
    autoGrow();
    if (!c || c.kind !== 'room' || c.status !== 'joined' || !C.open) return;
    if (!$('composer-input').value.trim()) { stopTyping(true); return; }
    if (T.room !== c.id) stopTyping(true);
    const now = Date.now();
    if (T.room !== c.id || now - T.sentAt > TYPING_REFRESH_MS) {
      T.room = c.id;
      T.sentAt = now;
      request('typing', { roomId: c.id, isTyping: true }).catch(() => {});
    }
    clearTimeout(T.idle);
    T.idle = setTimeout(() => stopTyping(true), TYPING_IDLE_MS);
  }

  function stopTyping(send) {
    clearTimeout(T.idle);
    if (T.room && send && C.open) request('typing', { roomId: T.room, isTyping: false }).catch(() => {});
    T.room = null;
    T.sentAt = 0;
  }

  function onTyping(d) {
    if (!d) return;
    const c = S.convs.get(roomKey(d.roomId));
    if (!c) return;
    const id = uid(d.userId);
    if (id === S.me.id) return;
    clearTyping(c, id, false);
    if (d.isTyping) {
      const timer = setTimeout(() => clearTyping(c, id), TYPING_EXPIRE_MS);
      c.typing.set(id, { name: d.username, timer });
    }
    if (isActive(c)) renderTyping();
  }

  function clearTyping(c, id, render = true) {
    const t = c.typing.get(id);
    if (!t) return;
    clearTimeout(t.timer);
    c.typing.delete(id);
    if (render && isActive(c)) renderTyping();
  }
  function clearTypingAll(c) {
    for (const t of c.typing.values()) clearTimeout(t.timer);
    c.typing.clear();
  }

  function renderTyping() {
    const c = S.convs.get(S.active);
    const names = c ? [...c.typing.values()].map((t) => t.name) : [];
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = `${names.length} people are typing…`;
    $('typing').textContent = text;
  }

  // ---------------------------------------------------------------- rendering

  function updateTitle() {
    let n = 0;
    for (const c of S.convs.values()) n += c.unread;
    document.title = n ? `(${n}) chat` : 'chat';
    const b = $('back-unread');
    b.textContent = String(n);
    b.hidden = n === 0;
  }

  function convItem(c) {
    const li = el('li', 'conv');
    li.dataset.key = c.key;
    li.dataset.status = c.status;
    if (isActive(c)) li.classList.add('active');
    const btn = el('button', 'conv-button');
    btn.type = 'button';
    if (c.kind === 'dm') {
      const dot = el('span', S.online.has(c.id) ? 'presence on' : 'presence');
      dot.title = S.online.has(c.id) ? 'online' : 'offline';
      btn.appendChild(dot);
    }
    btn.appendChild(el('span', 'conv-name', c.title));
    if (c.kind === 'room' && c.status === 'private') btn.appendChild(el('span', 'tag private', 'private'));
    else if (c.kind === 'room' && c.status === 'error') btn.appendChild(el('span', 'tag error', 'error'));
    else if (c.kind === 'room' && c.status === 'joining' && C.open) btn.appendChild(el('span', 'tag', 'joining…'));
    if (c.unread) {
      const badge = el('span', 'badge', c.unread > 99 ? '99+' : c.unread);
      badge.setAttribute('aria-label', `${c.unread} unread`);
      btn.appendChild(badge);
    }
    btn.addEventListener('click', () => activate(c.key));
    li.appendChild(btn);
    return li;
  }

  function renderNav() {
    const rooms = [];
    const dms = [];
    for (const c of S.convs.values()) (c.kind === 'room' ? rooms : dms).push(c);
    rooms.sort((a, b) => a.id.localeCompare(b.id));
    dms.sort((a, b) => a.title.localeCompare(b.title));
    $('room-list').replaceChildren(...rooms.map(convItem));
    $('dm-list').replaceChildren(...dms.map(convItem));
    $('dm-empty').hidden = dms.length > 0;
    updateTitle();
  }

  function renderOnline() {
    const users = [...S.online.entries()].sort((a, b) => String(a[1]).localeCompare(String(b[1])));
    const items = users.map(([id, name]) => {
      const li = el('li', 'user');
      li.dataset.userId = id;
      if (id === S.me.id) {
        li.appendChild(el('span', 'presence on'));
        li.appendChild(el('span', 'user-name', name));
        li.appendChild(el('span', 'you', '(you)'));
        return li;
      }
      const b = el('button', 'user-button');
      b.type = 'button';
      b.title = `Send ${name} a direct message`;
      b.appendChild(el('span', 'presence on'));
      b.appendChild(el('span', 'user-name', name));
      b.addEventListener('click', () => openDm(id, name));
      li.appendChild(b);
      return li;
    });
    $('online-list').replaceChildren(...items);
    $('online-count').textContent = S.online.size ? String(S.online.size) : '';
  }

  function renderPaneHead() {
    const c = S.convs.get(S.active);
    const action = $('pane-action');
    if (!c) {
      $('pane-title').textContent = 'No conversation';
      $('pane-sub').textContent = '';
      action.hidden = true;
      return;
    }
    $('pane-title').textContent = c.kind === 'room' ? `#${c.id}` : c.title;
    if (c.kind === 'room') {
      $('pane-sub').textContent = {
        new: '', joining: C.open ? 'joining…' : 'offline', joined: 'room',
        private: 'private room', error: 'not joined',
      }[c.status] || '';
      action.textContent = c.status === 'joined' || c.status === 'joining' ? 'Leave' : 'Remove';
    } else {
      $('pane-sub').textContent = `direct messages · ${S.online.has(c.id) ? 'online' : 'offline'}`;
      action.textContent = 'Close';
    }
    action.hidden = false;
  }

  function renderOlder() {
    const c = S.convs.get(S.active);
    const p = $('older');
    if (!c || !c.keys.length || (c.kind === 'dm' && !c.historyLoaded)) { p.hidden = true; return; }
    p.hidden = false;
    p.replaceChildren();
    if (c.loadingOlder) p.textContent = 'Loading older messages…';
    else if (c.hasMore) {
      const b = el('button', 'link-button', 'Load older messages');
      b.type = 'button';
      b.addEventListener('click', () => loadOlder(c));
      p.appendChild(b);
    } else p.textContent = c.kind === 'room' ? `This is the beginning of #${c.id}.` : `This is the beginning of your conversation with ${c.title}.`;
  }

  function renderPane() {
    const c = S.convs.get(S.active);
    renderPaneHead();
    const slot = $('conv-slot');
    const input = $('composer-input');
    const send = $('send');
    if (!c) {
      slot.replaceChildren();
      $('pane-empty').hidden = false;
      $('pane-blocked').hidden = true;
      input.disabled = true;
      send.disabled = true;
      input.placeholder = 'Pick a conversation';
      renderOlder();
      renderTyping();
      return;
    }
    const blocked = c.kind === 'room' && (c.status === 'private' || c.status === 'error');
    $('pane-blocked').hidden = !blocked;
    $('pane-blocked-text').textContent = c.blockedText;
    if (slot.firstChild !== c.listEl || slot.lastChild !== c.outboxEl) slot.replaceChildren(c.listEl, c.outboxEl);
    $('pane-empty').hidden = blocked || c.keys.length > 0 || c.outbox.length > 0 ||
      (c.kind === 'room' ? c.status !== 'joined' : !c.historyLoaded);
    if ($('pane-empty').hidden === false) {
      $('pane-empty').firstElementChild.textContent = c.kind === 'room'
        ? `No messages in #${c.id} yet. Say hello!`
        : `No messages with ${c.title} yet.`;
    }
    input.disabled = blocked;
    send.disabled = blocked;
    input.placeholder = c.kind === 'room' ? `Message #${c.id}` : `Message ${c.title}`;
    renderOlder();
    renderTyping();
  }

  function activate(key, opts = {}) {
    const c = S.convs.get(key);
    if (!c) return;
    const prev = S.convs.get(S.active);
    const sc = $('scroller');
    if (prev && prev !== c) {
      prev.scrollTop = nearBottom() ? null : sc.scrollTop;
      stopTyping(true);
    }
    S.active = key;
    c.unread = 0;
    renderNav();
    renderPane();
    if (c.scrollTop === null) scrollToBottom();
    else sc.scrollTop = c.scrollTop;
    if (c.kind === 'room' && (c.status === 'private' || c.status === 'error') && opts.retry) joinRoom(c);
    if (c.kind === 'dm' && !c.historyLoaded) loadDm(c);
    else maybeFillScreen(c);
    if (opts.view !== false) setView('chat');
    if (!isPhone() && opts.focus !== false) $('composer-input').focus();
    saveState();
  }

  function openDm(id, name) {
    const c = getDm(id, name);
    renderNav();
    activate(c.key);
  }

  function setView(v) {
    S.view = v;
    const app = $('app');
    app.classList.toggle('view-list', v === 'list');
    app.classList.toggle('view-chat', v === 'chat');
    if (v === 'chat') {
      const c = S.convs.get(S.active);
      if (c && c.unread) { c.unread = 0; renderNav(); }
    }
  }

  function autoGrow() {
    const t = $('composer-input');
    const lines = t.value.split('\n').length;
    t.rows = Math.max(1, Math.min(6, lines));
  }

  // ---------------------------------------------------------------- UI events

  function wireUi() {
    $('join-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const input = $('join-input');
      const id = input.value.trim().replace(/^#/, '');
      if (!id) return;
      if (!ROOM_RE.test(id)) {
        notify('A room id is 1–64 characters of A–Z a–z 0–9 _ . : -');
        return;
      }
      input.value = '';
      const c = getRoom(id);
      renderNav();
      activate(c.key);
      if (c.status === 'new' || c.status === 'private' || c.status === 'error') {
        if (C.open) joinRoom(c);
        else { c.status = 'joining'; renderNav(); renderPane(); }
      }
      saveState();
    });

    const input = $('composer-input');
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        $('composer').requestSubmit();
      }
    });
    input.addEventListener('input', onComposerInput);
    $('composer').addEventListener('submit', (e) => {
      e.preventDefault();
      const c = S.convs.get(S.active);
      const text = input.value;
      if (!c || !text.trim()) return;
      if (c.kind === 'room' && (c.status === 'private' || c.status === 'error')) return;
      input.value = '';
      autoGrow();
      if (c.kind === 'room') stopTyping(true);
      enqueue(c, text);
    });

    $('scroller').addEventListener('scroll', () => {
      const c = S.convs.get(S.active);
      if (c && $('scroller').scrollTop < 60) loadOlder(c);
    }, { passive: true });

    $('pane-action').addEventListener('click', () => {
      const c = S.convs.get(S.active);
      if (!c) return;
      if (c.kind === 'room') leaveRoom(c);
      else closeConv(c);
    });
    $('pane-retry').addEventListener('click', () => {
      const c = S.convs.get(S.active);
      if (c && c.kind === 'room') joinRoom(c);
    });
    $('back').addEventListener('click', () => setView('list'));
    $('reconnect-now').addEventListener('click', reconnectNow);
    $('signout').addEventListener('click', signOut);

    window.addEventListener('hashchange', () => {
      if (/(?:^#|&)token=/.test(location.hash)) location.reload();
    });
    window.addEventListener('online', () => { if (!C.ws && S.me) reconnectNow(); });
    window.addEventListener('offline', () => { if (C.ws) lost(null, false); });
    window.matchMedia('(max-width: 720px)').addEventListener('change', () => renderPane());
  }

  // ---------------------------------------------------------------- sign-in

  function checkTokenExpiry() {
    const p = decodeJwt(S.token || '');
    if (p && typeof p.exp === 'number' && p.exp * 1000 < Date.now()) {
      notify('Your token has expired: sign in again.');
      signOut();
    }
  }

  function signOut() {
    C.stopped = true;
    stopTyping(true);
    if (C.ws) { const ws = C.ws; C.ws = null; ws.onclose = null; try { ws.close(1000, 'signed out'); } catch (_) { /* closed */ } }
    storageDel(TOKEN_KEY);
    location.replace(location.pathname);
  }

  // Whether POST /dev/token works (CHAT_DEV_TOKENS=1). It is asked with a well-formed
  // name because a refused request (400/405) shows up as an error in the browser console;
  // the token it returns is stateless and thrown away.
  async function devTokensEnabled() {
    try {
      const r = await fetch('/dev/token', {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username: 'signin-check' }), cache: 'no-store',
      });
      await r.text(); // read the body: the request is over
      return r.ok;
    } catch (_) {
      return false;
    }
  }

  async function showSignIn(message) {
    $('signin').hidden = false;
    $('app').hidden = true;
    $('me').hidden = true;
    setStatus('idle', 'Not signed in');
    const dev = await devTokensEnabled();
    $('signin-checking').hidden = true;
    $('signin-dev').hidden = !dev;
    $('signin-token').hidden = dev;
    $('token-example').textContent = `${location.origin}${location.pathname}#token=eyJhbGciOi…`;
    if (message) notify(message);
    (dev ? $('signin-name') : $('token-input')).focus();
  }

  function wireSignIn() {
    $('signin-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const name = $('signin-name').value.trim();
      const err = $('signin-error');
      err.hidden = true;
      if (!NAME_RE.test(name)) {
        err.textContent = 'A user name is 1–32 characters of A–Z a–z 0–9 _ - .';
        err.hidden = false;
        return;
      }
      const btn = e.submitter || $('signin-form').querySelector('button');
      btn.disabled = true;
      try {
        const r = await fetch('/dev/token', {
          method: 'POST', headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ username: name }), cache: 'no-store',
        });
        const body = await r.json().catch(() => ({}));
        if (!r.ok || !body.token) {
          if (r.status === 404) { $('signin-dev').hidden = true; $('signin-token').hidden = false; }
          throw new Error(body.message || `the server answered ${r.status}`);
        }
        storageSet(TOKEN_KEY, body.token);
        start(body.token, { id: uid(body.userId), name: body.username });
      } catch (ex) {
        err.textContent = `Sign-in failed: ${ex.message}`;
        err.hidden = false;
      } finally {
        btn.disabled = false;
      }
    });
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const tok = $('token-input').value.trim().replace(/^#?token=/, '');
      const err = $('token-error');
      const who = identityOf(tok);
      if (!who) {
        err.textContent = 'This does not look like a JWT (three base64url parts with a "sub" claim).';
        err.hidden = false;
        return;
      }
      err.hidden = true;
      storageSet(TOKEN_KEY, tok);
      start(tok, who);
    });
  }

  function identityOf(token) {
    const p = decodeJwt(token);
    if (!p || p.sub === undefined || p.sub === null || p.sub === '') return null;
    return { id: uid(p.sub), name: String(p.username || p.name || p.preferred_username || p.sub), exp: p.exp };
  }

  function start(token, me) {
    S.token = token;
    S.me = { id: me.id, name: me.name };
    S.known.set(me.id, me.name);
    $('signin').hidden = true;
    $('app').hidden = false;
    $('me').hidden = false;
    $('me-name').textContent = me.name;
    // Rooms, DM panes and the open pane of the last visit; every room is joined again.
    let saved = null;
    try { saved = JSON.parse(storageGet(STATE_KEY + me.id) || 'null'); } catch (_) { saved = null; }
    if (saved && typeof saved === 'object') {
      for (const r of Array.isArray(saved.rooms) ? saved.rooms : []) if (ROOM_RE.test(r)) getRoom(r);
      for (const d of Array.isArray(saved.dms) ? saved.dms : []) if (d && d.id) getDm(uid(d.id), d.name);
    }
    renderNav();
    renderOnline();
    const act = saved && saved.active && S.convs.has(saved.active) ? saved.active : null;
    if (act) activate(act, { view: isPhone() ? false : undefined, focus: false });
    else renderPane();
    setView(act && !isPhone() ? 'chat' : 'list');
    S.restoring = S.convs.size > 0;
    connect();
  }

  function boot() {
    wireUi();
    wireSignIn();
    // A token in the fragment (#token=...) wins, and is removed from the address bar.
    const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (m) {
      storageSet(TOKEN_KEY, decodeURIComponent(m[1]));
      history.replaceState(null, '', location.pathname + location.search);
    }
    const token = storageGet(TOKEN_KEY);
    const who = token && identityOf(token);
    if (!who) {
      if (token) storageDel(TOKEN_KEY);
      showSignIn(token ? 'The saved token could not be read: sign in again.' : null);
      return;
    }
    if (typeof who.exp === 'number' && who.exp * 1000 < Date.now()) {
      storageDel(TOKEN_KEY);
      showSignIn('Your token has expired: sign in again.');
      return;
    }
    start(token, who);
  }

  boot();
})();

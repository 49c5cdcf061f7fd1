#!/usr/bin/env node
'use strict';
/*
 * The benchmark's peer: the stack the NestJS / Socket.IO chat seed tutorials build (here as
 * plain Node, no NestJS): Socket.IO 4.8 + @socket.io/redis-adapter + pg, with the chat
 * cluster's events, payloads and ack-after-insert semantics, so that one load generator can
 * drive both. One process = one Socket.IO server on one port; run two (or more) sharing
 * Redis and PostgreSQL. See README.md in this directory.
 *
 *   node bench/peer/server.js --port 4001 --redis redis://127.0.0.1:6379 \
 *        --database postgresql://postgres@127.0.0.1:5433/chat --jwt-secret S [--presence none]
 */
const http = require('http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');
const { Pool } = require('pg');
const jwt = require('jsonwebtoken');

// ---- configuration: --flag value / --flag=value, or the PEER_* environment variable ----

const OPTIONS = {
  port: ['PEER_PORT', '4001', 'listening port'],
  host: ['PEER_HOST', '127.0.0.1', 'listening address'],
  redis: ['PEER_REDIS_URL', 'redis://127.0.0.1:6379', 'Redis URL (the Socket.IO redis adapter)'],
  database: ['PEER_DATABASE_URL', '', 'PostgreSQL URL (schema applied by `chatctl migrate`)'],
  'jwt-secret': ['PEER_JWT_SECRET', '', 'HS256 secret of the users\' tokens'],
  presence: ['PEER_PRESENCE', 'global', 'presence events: global | rooms | none'],
  'pool-size': ['PEER_POOL_SIZE', '10', 'pg.Pool size'],
  'max-message-chars': ['PEER_MAX_MESSAGE_CHARS', '1000', 'message text limit (code points)'],
  'max-message-bytes': ['PEER_MAX_MESSAGE_BYTES', '65536', 'largest Socket.IO message (maxHttpBufferSize)'],
  'auto-create-rooms': ['PEER_AUTO_CREATE_ROOMS', '1', 'join_room creates an unknown room (1/0)'],
  namespace: ['PEER_NAMESPACE', '/chat', 'Socket.IO namespace carrying the chat events'],
};

function usage(code) {
  const lines = ['usage: node server.js [--option value]...', ''];
  for (const [name, [env, def, help]] of Object.entries(OPTIONS)) {
    lines.push(`  --${name} (${env})${def ? ` [default: ${def}]` : ''}`, `      ${help}`);
  }
  (code ? process.stderr : process.stdout).write(lines.join('\n') + '\n');
  process.exit(code);
}

function parseConfig(argv) {
  const cfg = {};
  for (const [name, [env, def]] of Object.entries(OPTIONS)) cfg[name] = process.env[env] !== undefined ? process.env[env] : def;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') usage(0);
    if (!a.startsWith('--')) { console.error(`unexpected argument: ${a}`); usage(2); }
    let name = a.slice(2);
    let value;
    const eq = name.indexOf('=');
    if (eq >= 0) { value = name.slice(eq + 1); name = name.slice(0, eq); }
    if (!(name in OPTIONS)) { console.error(`unknown option: --${name}`); usage(2); }
    if (value === undefined) {
      if (i + 1 >= argv.length) { console.error(`--${name} needs a value`); usage(2); }
      value = argv[++i];
    }
    cfg[name] = value;
  }
  const out = {
    port: Number(cfg.port),
    host: cfg.host,
    redisUrl: cfg.redis,
    databaseUrl: cfg.database,
    jwtSecret: cfg['jwt-secret'],
    presence: cfg.presence,
    poolSize: Number(cfg['pool-size']),
    maxChars: Number(cfg['max-message-chars']),
    maxBytes: Number(cfg['max-message-bytes']),
    autoCreate: !/^(0|false|no|off)$/i.test(cfg['auto-create-rooms']),
    namespace: cfg.namespace,
  };
  const bad = (m) => { console.error(`configuration: ${m}`); process.exit(2); };
  if (!Number.isInteger(out.port) || out.port < 1 || out.port > 65535) bad('--port must be 1-65535');
  if (!out.databaseUrl) bad('--database (PEER_DATABASE_URL) is required');
  if (!out.jwtSecret) bad('--jwt-secret (PEER_JWT_SECRET) is required');
  if (!['global', 'rooms', 'none'].includes(out.presence)) bad('--presence must be global, rooms or none');
  if (!Number.isInteger(out.poolSize) || out.poolSize < 1) bad('--pool-size must be a positive integer');
  if (!Number.isInteger(out.maxChars) || out.maxChars < 1) bad('--max-message-chars must be a positive integer');
  if (!Number.isInteger(out.maxBytes) || out.maxBytes < 128) bad('--max-message-bytes must be >= 128');
  if (!out.namespace.startsWith('/')) bad('--namespace must start with /');
  return out;
}

const cfg = parseConfig(process.argv.slice(2));

function log(level, msg, extra) {
  const line = `${new Date().toISOString()} ${level} peer[${cfg.port}] ${msg}${extra ? ' ' + extra : ''}\n`;
  process.stderr.write(line);
}

// ---- the product's rules (common/envelope.c, common/jwtauth.c) ----

const MAX_ROOM_ID = 64;
const MAX_USER_ID = 64; // bytes
const MAX_CLIENT_MSG_ID = 64; // bytes
const MAX_SUB = 64; // bytes
const MAX_USERNAME = 128; // bytes, truncated on a UTF-8 boundary
const MAX_TOKEN = 8192;
const MAX_ROOMS_PER_SOCKET = 100;
const SINCE_CAP = 1000;
const PAGE_DEFAULT = 50;
const PAGE_MAX = 100;
const TWO_53 = 9007199254740992;
const ROOM_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const BLANK_RE = /^[ \t\n\r\f\v]*$/;
const CONTROL_RE = /[\u0000-\u001f]/;

class ChatError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}
const validation = (m) => new ChatError('VALIDATION_ERROR', m);

// The product's strings are C strings: a U+0000 ends them.
function cstr(s) {
  const i = s.indexOf('\0');
  return i < 0 ? s : s.slice(0, i);
}

const wellFormed = typeof ''.isWellFormed === 'function'
  ? (s) => s.isWellFormed()
  : (s) => !/[\ud800-\udbff](?![\udc00-\udfff])|(?:^|[^\ud800-\udbff])[\udc00-\udfff]/.test(s);

function codePoints(s) {
  let n = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) { n--; i++; }
    }
  }
  return n;
}

// A user id as JSON: a number when it is all digits (no leading zero) up to 2^53.
function userIdJson(uid) {
  if (/^(0|[1-9][0-9]{0,15})$/.test(uid) && (uid.length < 16 || uid <= '9007199254740992')) return Number(uid);
  return uid;
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function field(data, name) {
  return isObject(data) ? data[name] : undefined;
}

function roomField(data) {
  let v = field(data, 'roomId');
  if (typeof v !== 'string') throw validation('roomId must be a string');
  v = cstr(v);
  if (v.length > MAX_ROOM_ID || !ROOM_RE.test(v)) throw validation('roomId must be 1-64 characters of A-Z a-z 0-9 _ . : -');
  return v;
}

// An optional integer field: undefined when absent or null; throws `why` when invalid.
function optInt(data, name, min, why) {
  const v = field(data, name);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > TWO_53) throw validation(why);
  return v;
}

function textField(data) {
  let v = field(data, 'text');
  if (typeof v !== 'string') throw validation('text must be a string');
  v = cstr(v);
  if (BLANK_RE.test(v)) throw validation('text must not be empty');
  if (!wellFormed(v)) throw validation('text is not valid UTF-8');
  if (v.length > cfg.maxChars && codePoints(v) > cfg.maxChars) throw validation('text is too long');
  return v;
}

// A user id from JSON (recipientId, userId): a non-negative integer below 2^53 or a string of
// 1-64 bytes without control characters. null when invalid.
function userIdFrom(v) {
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0 || v >= TWO_53) return null;
    return String(v);
  }
  if (typeof v !== 'string') return null;
  v = cstr(v);
  const n = Buffer.byteLength(v, 'utf8');
  if (n === 0 || n > MAX_USER_ID || !wellFormed(v) || CONTROL_RE.test(v)) return null;
  return v;
}

function cmidField(data) {
  const v = field(data, 'clientMsgId');
  if (v === undefined || v === null) return null;
  const why = 'clientMsgId must be a string of 1-64 characters';
  if (typeof v === 'number') {
    const s = userIdFrom(v);
    if (s === null) throw validation(why);
    return s;
  }
  if (typeof v !== 'string') throw validation(why);
  const s = cstr(v);
  const n = Buffer.byteLength(s, 'utf8');
  if (n === 0 || n > MAX_CLIENT_MSG_ID || CONTROL_RE.test(s) || !wellFormed(s)) throw validation(why);
  return s;
}

function pageFields(data) {
  const before = optInt(data, 'before', 1, 'before must be a positive integer');
  const limit = optInt(data, 'limit', 1, 'limit must be an integer between 1 and 100');
  if (limit !== undefined && limit > PAGE_MAX) throw validation('limit must be an integer between 1 and 100');
  return { before: before === undefined ? null : before, limit: limit === undefined ? PAGE_DEFAULT : limit };
}

function truncateUtf8(s, maxBytes) {
  if (Buffer.byteLength(s, 'utf8') <= maxBytes) return s;
  let bytes = 0;
  let out = '';
  for (const ch of s) {
    const b = Buffer.byteLength(ch, 'utf8');
    if (bytes + b > maxBytes) break;
    bytes += b;
    out += ch;
  }
  return out;
}

// The JWT: HS256 only, exp required (as the product), sub a string or an integer.
function authenticate(raw) {
  if (typeof raw !== 'string' || raw === '') return { fail: 'Authentication required', why: 'token missing' };
  let token = raw;
  if (/^bearer /i.test(token)) token = token.slice(7).replace(/^ +/, '');
  if (token === '') return { fail: 'Authentication required', why: 'token missing' };
  if (token.length > MAX_TOKEN) return { fail: 'Invalid token', why: 'token too long' };
  let claims;
  try {
    claims = jwt.verify(token, cfg.jwtSecret, { algorithms: ['HS256'] });
  } catch (e) {
    return { fail: 'Invalid token', why: e.message };
  }
  if (!isObject(claims)) return { fail: 'Invalid token', why: 'claims are not a JSON object' };
  if (claims.exp === undefined) return { fail: 'Invalid token', why: 'exp missing' };
  let sub = claims.sub;
  if (typeof sub === 'number' && Number.isInteger(sub) && Math.abs(sub) <= TWO_53) sub = String(sub);
  if (typeof sub !== 'string' || sub === '' || Buffer.byteLength(sub, 'utf8') > MAX_SUB || !wellFormed(sub)) {
    return { fail: 'Invalid token', why: 'sub missing or invalid' };
  }
  sub = cstr(sub);
  let name = null;
  for (const k of ['username', 'preferred_username', 'name']) {
    const v = claims[k];
    if (typeof v === 'string' && v !== '' && wellFormed(v)) { name = v; break; }
  }
  return { userId: sub, username: truncateUtf8(cstr(name || sub), MAX_USERNAME) };
}

// ---- storage (the product's schema and functions; one statement per request) ----

const pool = new Pool({
  connectionString: cfg.databaseUrl,
  max: cfg.poolSize,
  application_name: `chat-bench-peer:${cfg.port}`,
});
pool.on('error', (e) => log('warn', 'pg idle client error', JSON.stringify(e.message)));

const SQL = {
  seen: 'SELECT chat_seen_users(ARRAY[$1], ARRAY[$2])',
  send: 'SELECT id, seq, created_ms, dup, kind, body, room, err '
    + 'FROM chat_send_messages(ARRAY[$1], ARRAY[$2], ARRAY[$3], ARRAY[$4]::text[])',
  sendDm: 'SELECT id, created_ms, dup, kind, body '
    + 'FROM chat_send_dms(ARRAY[$1], ARRAY[$2], ARRAY[$3], ARRAY[$4]::text[])',
  join: 'SELECT * FROM chat_join($1, $2, $3::bigint, $4::boolean, $5::int)',
  history: 'SELECT status, has_more, messages FROM chat_history($1, $2, $3::bigint, $4::int)',
  dmHistory: 'SELECT has_more, messages FROM chat_dm_history($1, $2, $3::bigint, $4::int)',
};

async function db(text, values) {
  try {
    return await pool.query(text, values);
  } catch (e) {
    log('warn', 'db query failed', JSON.stringify(e.message));
    throw new ChatError('UNAVAILABLE', 'storage unavailable, retry later');
  }
}

function statusError(status) {
  if (status === 'forbidden') return new ChatError('FORBIDDEN', 'not allowed in this room');
  if (status === 'not_found') return new ChatError('NOT_FOUND', 'room not found');
  return new ChatError('INTERNAL_ERROR', 'internal error');
}

// ---- Socket.IO ----

const httpServer = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/healthz' || path === '/readyz') {
    const ok = path === '/healthz' || (pubClient.isReady && subClient.isReady);
    res.writeHead(ok ? 200 : 503, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ status: ok ? 'ok' : 'unavailable' }));
    return;
  }
  res.writeHead(404, { 'Content-Type': 'application/json' });
  res.end('{"error":{"message":"not found","code":"NOT_FOUND"}}');
});

const io = new Server(httpServer, {
  transports: ['websocket'],
  perMessageDeflate: false,
  httpCompression: false,
  pingInterval: 25000,
  pingTimeout: 20000,
  maxHttpBufferSize: cfg.maxBytes,
  serveClient: false,
});

const pubClient = createClient({ url: cfg.redisUrl });
const subClient = pubClient.duplicate();
pubClient.on('error', (e) => log('warn', 'redis (pub) error', JSON.stringify(e.message)));
subClient.on('error', (e) => log('warn', 'redis (sub) error', JSON.stringify(e.message)));

let nsp; // the chat namespace, created once the adapter is in place

const KNOWN_EVENTS = new Set(['join_room', 'leave_room', 'send_message', 'typing', 'direct_message',
  'history', 'dm_history', 'get_online_users', 'newMessage']);

// A failed request: an `error` event, and the ack callback (if any) gets {error}.
function fail(socket, ack, err) {
  let e = err;
  if (!(e instanceof ChatError)) {
    log('error', 'handler failed', JSON.stringify(String(e && e.stack ? e.stack : e)));
    e = new ChatError('INTERNAL_ERROR', 'internal error');
  }
  const data = { message: e.message, code: e.code };
  if (socket.connected) socket.emit('error', data);
  if (ack) ack({ error: data });
}

function userPayload(socket) {
  return { userId: userIdJson(socket.data.userId), username: socket.data.username };
}

function roomUserEvent(socket, roomId, event, extra) {
  const d = { roomId, userId: userIdJson(socket.data.userId), username: socket.data.username };
  if (extra) Object.assign(d, extra);
  socket.to(`room:${roomId}`).emit(event, d);
}

// The rooms of a socket and their state: 'joining' until the join_room ack, then 'ready'.
function roomsOf(socket) {
  return socket.chatRooms;
}

const handlers = {
  async join_room(socket, data) {
    const roomId = roomField(data);
    const since = optInt(data, 'since', 0, 'since must be a non-negative integer');
    const rooms = roomsOf(socket);
    const newly = !rooms.has(roomId);
    if (newly) {
      if (rooms.size >= MAX_ROOMS_PER_SOCKET) throw validation('too many rooms on this connection');
      rooms.set(roomId, 'joining');
      // Joined before reading the history: nothing committed meanwhile is missed (a message
      // may then arrive both live, before this ack, and in the ack's messages).
      socket.join(`room:${roomId}`);
    }
    let row;
    try {
      const r = await db(SQL.join, [roomId, socket.data.userId, since === undefined ? null : since, cfg.autoCreate, SINCE_CAP]);
      row = r.rows[0];
      if (!row) throw new ChatError('INTERNAL_ERROR', 'internal error');
      if (row.status !== 'ok') throw statusError(row.status);
    } catch (e) {
      if (newly && rooms.get(roomId) === 'joining') {
        rooms.delete(roomId);
        socket.leave(`room:${roomId}`);
      }
      throw e;
    }
    const res = { joined: roomId, messages: JSON.parse(row.messages || '[]') };
    if (since !== undefined) res.truncated = row.truncated === true;
    const joined = rooms.get(roomId) === 'joining';
    if (joined) rooms.set(roomId, 'ready');
    return [res, () => { if (joined && newly) roomUserEvent(socket, roomId, 'user_joined_room'); }];
  },

  async leave_room(socket, data) {
    const roomId = roomField(data);
    const rooms = roomsOf(socket);
    const wasReady = rooms.get(roomId) === 'ready';
    if (rooms.has(roomId)) {
      rooms.delete(roomId);
      socket.leave(`room:${roomId}`);
    }
    return [{ left: roomId }, () => { if (wasReady) roomUserEvent(socket, roomId, 'user_left_room'); }];
  },

  async send_message(socket, data) {
    const roomId = roomField(data);
    const text = textField(data);
    const cmid = cmidField(data);
    if (roomsOf(socket).get(roomId) !== 'ready') {
      throw new ChatError('FORBIDDEN', 'join the room first (wait for the join_room ack)');
    }
    if (!pubClient.isReady) throw new ChatError('UNAVAILABLE', 'cluster bus unavailable, retry later');
    const { userId, username } = socket.data;
    // One statement per message; the function's transaction has committed when it returns.
    const r = await db(SQL.send, [roomId, userId, text, cmid]);
    const row = r.rows[0];
    if (!row) throw new ChatError('INTERNAL_ERROR', 'internal error');
    if (row.err !== null) throw statusError(row.err);
    if (row.id === null) throw new ChatError('INTERNAL_ERROR', 'internal error');
    const id = Number(row.id);
    const seq = row.seq === null ? 0 : Number(row.seq);
    const ack = seq > 0 ? { sent: true, messageId: id, seq } : { sent: true, messageId: id };
    // A repeated clientMsgId gets the original ids and is not broadcast again.
    if (row.dup) return [ack];
    const msg = {
      id,
      seq,
      text,
      roomId,
      userId: userIdJson(userId),
      username,
      timestamp: new Date(Number(row.created_ms)).toISOString(),
    };
    return [ack, () => nsp.to(`room:${roomId}`).emit('new_message', msg)];
  },

  async typing(socket, data) {
    const roomId = roomField(data);
    const v = field(data, 'isTyping');
    if (typeof v !== 'boolean') throw validation('isTyping must be a boolean');
    if (roomsOf(socket).get(roomId) !== 'ready') throw new ChatError('FORBIDDEN', 'join the room first');
    roomUserEvent(socket, roomId, 'user_typing', { isTyping: v });
    return [{}];
  },

  async direct_message(socket, data) {
    const recipient = userIdFrom(field(data, 'recipientId'));
    if (recipient === null) throw validation('recipientId must be a user id (number or string)');
    const text = textField(data);
    const cmid = cmidField(data);
    if (!pubClient.isReady) throw new ChatError('UNAVAILABLE', 'cluster bus unavailable, retry later');
    const { userId, username } = socket.data;
    const r = await db(SQL.sendDm, [userId, recipient, text, cmid]);
    const row = r.rows[0];
    if (!row || row.id === null) throw new ChatError('INTERNAL_ERROR', 'internal error');
    const id = Number(row.id);
    const ack = { sent: true, messageId: id };
    if (row.dup) return [ack];
    const dm = {
      id,
      text,
      senderId: userIdJson(userId),
      senderUsername: username,
      recipientId: userIdJson(recipient),
      timestamp: new Date(Number(row.created_ms)).toISOString(),
    };
    // The recipient's sockets and the sender's other sockets, anywhere in the cluster.
    return [ack, () => socket.to([`user:${recipient}`, `user:${userId}`]).emit('direct_message', dm)];
  },

  async history(socket, data) {
    const roomId = roomField(data);
    const { before, limit } = pageFields(data);
    const r = await db(SQL.history, [roomId, socket.data.userId, before, limit]);
    const row = r.rows[0];
    if (!row) throw new ChatError('INTERNAL_ERROR', 'internal error');
    if (row.status !== 'ok') throw statusError(row.status);
    return [{ messages: JSON.parse(row.messages || '[]'), hasMore: row.has_more === true }];
  },

  async dm_history(socket, data) {
    const other = userIdFrom(field(data, 'userId'));
    if (other === null) throw validation('userId must be a user id (number or string)');
    const { before, limit } = pageFields(data);
    const r = await db(SQL.dmHistory, [socket.data.userId, other, before, limit]);
    const row = r.rows[0];
    if (!row) throw new ChatError('INTERNAL_ERROR', 'internal error');
    return [{ messages: JSON.parse(row.messages || '[]'), hasMore: row.has_more === true }];
  },

  async get_online_users() {
    let sockets;
    try {
      sockets = await nsp.fetchSockets();
    } catch (e) {
      throw new ChatError('UNAVAILABLE', 'presence unavailable, retry later');
    }
    const seen = new Map();
    for (const s of sockets) {
      if (s.data && s.data.userId !== undefined && !seen.has(s.data.userId)) {
        seen.set(s.data.userId, { userId: userIdJson(s.data.userId), username: s.data.username });
      }
    }
    return [[...seen.values()]];
  },

  // Seed 004: `newMessage` with a string broadcasts `message` to everyone.
  async newMessage(socket, data) {
    if (typeof data !== 'string') throw validation('newMessage data must be a string');
    const t = cstr(data);
    if (BLANK_RE.test(t)) throw validation('message must not be empty');
    if (t.length > cfg.maxChars && codePoints(t) > cfg.maxChars) throw validation('message is too long');
    return [{}, () => nsp.emit('message', t)];
  },
};

// ---- presence (best effort, as in the seeds: counted with fetchSockets across the cluster) ----

async function userSocketCount(userId) {
  try {
    return (await nsp.in(`user:${userId}`).fetchSockets()).length;
  } catch (e) {
    log('warn', 'presence lookup failed', JSON.stringify(e.message));
    return -1;
  }
}

async function presenceConnect(socket) {
  if (cfg.presence === 'none') return;
  if (cfg.presence === 'global') {
    socket.broadcast.emit('user-joined', { message: 'A user joined the chat', ...userPayload(socket) });
  }
  if ((await userSocketCount(socket.data.userId)) === 1) nsp.emit('user_online', userPayload(socket));
}

async function presenceDisconnect(socket, rooms) {
  if (cfg.presence === 'none') return;
  if (cfg.presence === 'global') nsp.emit('user-left', { message: 'A user left the chat', ...userPayload(socket) });
  if ((await userSocketCount(socket.data.userId)) !== 0) return;
  if (cfg.presence === 'global') nsp.emit('user_offline', userPayload(socket));
  else if (rooms.length) nsp.to(rooms.map((r) => `room:${r}`)).emit('user_offline', userPayload(socket));
}

function onConnection(socket) {
  socket.chatRooms = new Map();
  socket.join(`user:${socket.data.userId}`);
  pool.query(SQL.seen, [socket.data.userId, socket.data.username])
    .catch((e) => log('warn', 'user upsert failed', JSON.stringify(e.message)));

  for (const name of KNOWN_EVENTS) {
    const handler = handlers[name];
    socket.on(name, (...args) => {
      const ack = typeof args[args.length - 1] === 'function' ? args.pop() : null;
      handler(socket, args[0]).then(([res, after]) => {
        if (ack) ack(res);
        if (after) after();
      }, (e) => fail(socket, ack, e));
    });
  }
  socket.onAny((event, ...args) => {
    if (KNOWN_EVENTS.has(event)) return;
    const ack = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : null;
    fail(socket, ack, new ChatError('UNKNOWN_EVENT', 'unknown event'));
  });
  socket.on('disconnect', () => {
    const rooms = [...socket.chatRooms.keys()];
    socket.chatRooms.clear();
    presenceDisconnect(socket, rooms).catch((e) => log('warn', 'presence failed', JSON.stringify(e.message)));
  });
  presenceConnect(socket).catch((e) => log('warn', 'presence failed', JSON.stringify(e.message)));
}

function authError(message, why) {
  const err = new Error(message);
  err.data = { code: 'UNAUTHORIZED', reason: why };
  return err;
}

async function main() {
  await Promise.all([pubClient.connect(), subClient.connect()]);
  io.adapter(createAdapter(pubClient, subClient));

  // The schema must be the product's (chatctl migrate).
  let schemaOk = false;
  try {
    const r = await pool.query("SELECT to_regproc('chat_send_messages') IS NOT NULL AND to_regproc('chat_join') IS NOT NULL AS ok");
    schemaOk = r.rows[0].ok === true;
  } catch (e) {
    console.error(`peer: cannot reach PostgreSQL: ${e.message}`);
    process.exit(1);
  }
  if (!schemaOk) {
    console.error('peer: the database lacks the chat schema: run `build/tools/chatctl migrate --database-url URL`');
    process.exit(1);
  }

  nsp = io.of(cfg.namespace);
  nsp.use((socket, next) => {
    const h = socket.handshake;
    let raw = h.auth && typeof h.auth.token === 'string' && h.auth.token !== '' ? h.auth.token : undefined;
    if (raw === undefined && typeof h.query.token === 'string' && h.query.token !== '') raw = h.query.token;
    if (raw === undefined && typeof h.headers.authorization === 'string') raw = h.headers.authorization;
    const a = authenticate(raw);
    if (a.fail) { next(authError(a.fail, a.why)); return; }
    socket.data.userId = a.userId;
    socket.data.username = a.username;
    next();
  });
  nsp.on('connection', onConnection);

  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(cfg.port, cfg.host, resolve);
  });
  log('info', `listening on http://${cfg.host}:${cfg.port}${cfg.namespace}`,
    `pid=${process.pid} presence=${cfg.presence} pool=${cfg.poolSize} socket.io=${require('socket.io/package.json').version}`);
}

let stopping = false;
function shutdown(sig) {
  if (stopping) return;
  stopping = true;
  log('info', `${sig}: stopping`);
  const force = setTimeout(() => process.exit(0), 5000);
  force.unref();
  const quiet = (f) => { try { return Promise.resolve(f()); } catch (e) { return Promise.resolve(); } };
  io.close(() => {
    Promise.allSettled([quiet(() => pool.end()), quiet(() => pubClient.quit()), quiet(() => subClient.quit())])
      .then(() => process.exit(0));
  });
}
process.on('unhandledRejection', (e) => log('error', 'unhandled rejection', JSON.stringify(String(e && e.stack ? e.stack : e))));
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));

main().catch((e) => {
  console.error(`peer: ${e && e.message ? e.message : e}`);
  process.exit(1);
});

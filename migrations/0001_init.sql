-- 0001_init: users, rooms, ACLs, room messages with a per-room seq, direct messages,
-- idempotency keys, and the functions the gateway calls (one round trip per batch).
--
-- Ids of users are text (the JWT `sub`). A room's `last_seq` is bumped inside the insert
-- transaction, holding the room row's lock until COMMIT: seqs are gapless and commit in
-- order, which is what lets gateways detect and fill gaps (docs/ARCHITECTURE.md).

CREATE TABLE users (
    id           text PRIMARY KEY,
    username     text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rooms (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    is_private  boolean NOT NULL DEFAULT false,
    owner_id    text,
    last_seq    bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TYPE room_role AS ENUM ('owner', 'moderator', 'member', 'banned');

CREATE TABLE room_acl (
    room_id     text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id     text NOT NULL,
    role        room_role NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_acl_user ON room_acl (user_id);

CREATE TABLE messages (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id        text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq            bigint NOT NULL,
    user_id        text NOT NULL,
    body           text NOT NULL,
    client_msg_id  text,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (room_id, seq)  -- also serves history: room_id = $1 AND seq < $2 ORDER BY seq DESC
);
CREATE INDEX messages_user ON messages (user_id);

CREATE TABLE direct_messages (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender_id      text NOT NULL,
    recipient_id   text NOT NULL,
    body           text NOT NULL,
    client_msg_id  text,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    read_at        timestamptz
);
-- A conversation is the unordered pair; pages go backwards by id.
CREATE INDEX direct_messages_pair
    ON direct_messages (least(sender_id, recipient_id), greatest(sender_id, recipient_id), id);
CREATE INDEX direct_messages_recipient ON direct_messages (recipient_id, id);

-- clientMsgId is unique per sender across rooms and DMs (BRIEF §3).
CREATE TABLE client_msg_ids (
    user_id        text NOT NULL,
    client_msg_id  text NOT NULL,
    kind           "char" NOT NULL CHECK (kind IN ('r', 'd')),
    message_id     bigint,
    PRIMARY KEY (user_id, client_msg_id)
);

-- A room's history, readable with plain SQL (README: "History from psql").
CREATE VIEW room_history AS
SELECT m.room_id, m.seq, m.id AS message_id, m.created_at,
       m.user_id, coalesce(u.username, m.user_id) AS username, m.body
FROM messages m
LEFT JOIN users u ON u.id = m.user_id;

-- ---- JSON shapes, identical to the live events ----

-- A user id as JSON: a number when it is all digits (no leading zero) up to 2^53.
CREATE FUNCTION chat_user_json(uid text) RETURNS json
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN uid ~ '^(0|[1-9][0-9]{0,15})$' AND uid::numeric <= 9007199254740992
                THEN to_json(uid::bigint) ELSE to_json(uid) END
$$;

-- "2026-11-25T10:38:50.123Z", like JavaScript's Date#toISOString.
CREATE FUNCTION chat_ts(t timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

CREATE FUNCTION chat_ms(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT floor(extract(epoch FROM t) * 1000)::bigint
$$;

-- ---- access ----

-- 'ok', 'forbidden' or 'not_found' for reading/joining a room.
CREATE FUNCTION chat_room_access(p_room text, p_user text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN r.id IS NULL THEN 'not_found'
        WHEN a.role = 'banned' THEN 'forbidden'
        WHEN r.is_private AND a.role IS NULL THEN 'forbidden'
        ELSE 'ok' END
    FROM (SELECT 1) one
    LEFT JOIN rooms r ON r.id = p_room
    LEFT JOIN room_acl a ON a.room_id = p_room AND a.user_id = p_user
$$;

-- ---- writes (one call per batch: group commit) ----

-- Room messages. Returns one row per input (idx is 1-based). A repeated clientMsgId
-- returns the first message (dup = true) with its body, so the caller can re-publish it.
CREATE FUNCTION chat_send_messages(p_room text[], p_user text[], p_body text[], p_cmid text[])
RETURNS TABLE (idx int, id bigint, seq bigint, created_ms bigint, dup boolean, kind "char",
               body text, room text, err text)
LANGUAGE plpgsql AS $$
DECLARE
    i int;
    v_kind "char";
    v_mid bigint;
    v_ts timestamptz;
BEGIN
    -- Lock every room of the batch in one order: concurrent batches cannot deadlock.
    PERFORM 1 FROM rooms r WHERE r.id = ANY (p_room) ORDER BY r.id FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(p_room, 1), 0) LOOP
        idx := i; id := NULL; seq := NULL; created_ms := NULL; dup := false; kind := 'r';
        body := NULL; room := NULL; err := NULL;
        IF NOT EXISTS (SELECT 1 FROM rooms r WHERE r.id = p_room[i]) THEN
            err := 'not_found';
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF p_cmid[i] IS NOT NULL THEN
            INSERT INTO client_msg_ids (user_id, client_msg_id, kind)
            VALUES (p_user[i], p_cmid[i], 'r') ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                SELECT c.kind, c.message_id INTO v_kind, v_mid
                FROM client_msg_ids c WHERE c.user_id = p_user[i] AND c.client_msg_id = p_cmid[i];
                dup := true;
                kind := v_kind;
                IF v_kind = 'r' THEN
                    SELECT m.id, m.seq, m.created_at, m.body, m.room_id INTO id, seq, v_ts, body, room
                    FROM messages m WHERE m.id = v_mid;
                ELSE
                    SELECT d.id, d.created_at, d.body INTO id, v_ts, body
                    FROM direct_messages d WHERE d.id = v_mid;
                END IF;
                created_ms := chat_ms(v_ts);
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        UPDATE rooms r SET last_seq = r.last_seq + 1 WHERE r.id = p_room[i] RETURNING r.last_seq INTO seq;
        INSERT INTO messages (room_id, seq, user_id, body, client_msg_id)
        VALUES (p_room[i], seq, p_user[i], p_body[i], p_cmid[i])
        RETURNING messages.id, messages.created_at INTO id, v_ts;
        IF p_cmid[i] IS NOT NULL THEN
            UPDATE client_msg_ids c SET message_id = id
            WHERE c.user_id = p_user[i] AND c.client_msg_id = p_cmid[i];
        END IF;
        created_ms := chat_ms(v_ts);
        RETURN NEXT;
    END LOOP;
END
$$;

-- Direct messages; same contract (seq is always NULL).
CREATE FUNCTION chat_send_dms(p_sender text[], p_recipient text[], p_body text[], p_cmid text[])
RETURNS TABLE (idx int, id bigint, created_ms bigint, dup boolean, kind "char", body text)
LANGUAGE plpgsql AS $$
DECLARE
    i int;
    v_kind "char";
    v_mid bigint;
    v_ts timestamptz;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_sender, 1), 0) LOOP
        idx := i; id := NULL; created_ms := NULL; dup := false; kind := 'd'; body := NULL;
        IF p_cmid[i] IS NOT NULL THEN
            INSERT INTO client_msg_ids (user_id, client_msg_id, kind)
            VALUES (p_sender[i], p_cmid[i], 'd') ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                SELECT c.kind, c.message_id INTO v_kind, v_mid
                FROM client_msg_ids c WHERE c.user_id = p_sender[i] AND c.client_msg_id = p_cmid[i];
                dup := true;
                kind := v_kind;
                IF v_kind = 'd' THEN
                    SELECT d.id, d.created_at, d.body INTO id, v_ts, body FROM direct_messages d WHERE d.id = v_mid;
                ELSE
                    SELECT m.id, m.created_at, m.body INTO id, v_ts, body FROM messages m WHERE m.id = v_mid;
                END IF;
                created_ms := chat_ms(v_ts);
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        INSERT INTO direct_messages (sender_id, recipient_id, body, client_msg_id)
        VALUES (p_sender[i], p_recipient[i], p_body[i], p_cmid[i])
        RETURNING direct_messages.id, direct_messages.created_at INTO id, v_ts;
        IF p_cmid[i] IS NOT NULL THEN
            UPDATE client_msg_ids c SET message_id = id
            WHERE c.user_id = p_sender[i] AND c.client_msg_id = p_cmid[i];
        END IF;
        created_ms := chat_ms(v_ts);
        RETURN NEXT;
    END LOOP;
END
$$;

-- Users seen on connect (username kept current); one call per batch.
CREATE FUNCTION chat_seen_users(p_id text[], p_name text[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO users (id, username)
    SELECT DISTINCT ON (t.id) t.id, t.name FROM unnest(p_id, p_name) WITH ORDINALITY AS t(id, name, o)
    ORDER BY t.id, t.o DESC
    ON CONFLICT (id) DO UPDATE SET username = excluded.username, updated_at = now()
    WHERE users.username IS DISTINCT FROM excluded.username
$$;

-- ---- reads ----

-- Items are built as compact JSON text, byte for byte the shape of the live events.
CREATE FUNCTION chat_message_json(m messages) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('{"id":%s,"seq":%s,"text":%s,"roomId":%s,"userId":%s,"username":%s,"timestamp":"%s"}',
        m.id, m.seq, to_json(m.body), to_json(m.room_id), chat_user_json(m.user_id),
        to_json(coalesce((SELECT u.username FROM users u WHERE u.id = m.user_id), m.user_id)),
        chat_ts(m.created_at))
$$;

CREATE FUNCTION chat_dm_json(d direct_messages) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('{"id":%s,"text":%s,"senderId":%s,"senderUsername":%s,"recipientId":%s,"timestamp":"%s"}',
        d.id, to_json(d.body), chat_user_json(d.sender_id),
        to_json(coalesce((SELECT u.username FROM users u WHERE u.id = d.sender_id), d.sender_id)),
        chat_user_json(d.recipient_id), chat_ts(d.created_at))
$$;

-- Join: the ACL check (creating an unknown room when p_auto_create), then the last 50
-- messages, or every message after p_since up to p_cap (truncated when there are more).
-- max_seq is the room's last seq read before the messages, raised to the newest message
-- returned: the caller's live stream continues after it.
CREATE FUNCTION chat_join(p_room text, p_user text, p_since bigint, p_auto_create boolean, p_cap int)
RETURNS TABLE (status text, max_seq bigint, truncated boolean, messages text)
LANGUAGE plpgsql AS $$
DECLARE
    v_n int;
BEGIN
    truncated := false;
    status := chat_room_access(p_room, p_user);
    IF status = 'not_found' AND p_auto_create THEN
        INSERT INTO rooms (id, owner_id) VALUES (p_room, p_user) ON CONFLICT DO NOTHING;
        IF FOUND THEN
            INSERT INTO room_acl (room_id, user_id, role) VALUES (p_room, p_user, 'owner');
        END IF;
        status := chat_room_access(p_room, p_user);
    END IF;
    IF status <> 'ok' THEN
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT r.last_seq INTO max_seq FROM rooms r WHERE r.id = p_room;
    IF p_since IS NULL THEN
        SELECT '[' || coalesce(string_agg(chat_message_json(x), ',' ORDER BY x.seq), '') || ']', max(x.seq)
        INTO messages, v_n
        FROM (SELECT * FROM messages m WHERE m.room_id = p_room ORDER BY m.seq DESC LIMIT 50) x;
    ELSE
        SELECT '[' || coalesce(string_agg(chat_message_json(x.m), ',' ORDER BY (x.m).seq) FILTER (WHERE x.rn <= p_cap), '') || ']',
               count(*) > p_cap, max((x.m).seq) FILTER (WHERE x.rn <= p_cap)
        INTO messages, truncated, v_n
        FROM (SELECT m, row_number() OVER (ORDER BY m.seq) AS rn FROM messages m
              WHERE m.room_id = p_room AND m.seq > p_since ORDER BY m.seq LIMIT p_cap + 1) x;
    END IF;
    IF v_n IS NOT NULL AND v_n > max_seq THEN max_seq := v_n; END IF;
    RETURN NEXT;
END
$$;

-- History: up to p_limit messages before seq p_before (NULL: the latest), oldest first.
CREATE FUNCTION chat_history(p_room text, p_user text, p_before bigint, p_limit int)
RETURNS TABLE (status text, has_more boolean, messages text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    status := chat_room_access(p_room, p_user);
    has_more := false;
    IF status <> 'ok' THEN
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT '[' || coalesce(string_agg(chat_message_json(x.m), ',' ORDER BY (x.m).seq) FILTER (WHERE x.rn <= p_limit), '') || ']',
           count(*) > p_limit
    INTO messages, has_more
    FROM (SELECT m, row_number() OVER (ORDER BY m.seq DESC) AS rn FROM messages m
          WHERE m.room_id = p_room AND (p_before IS NULL OR m.seq < p_before)
          ORDER BY m.seq DESC LIMIT p_limit + 1) x;
    RETURN NEXT;
END
$$;

-- A conversation between two users, before message id p_before, oldest first.
CREATE FUNCTION chat_dm_history(p_user text, p_other text, p_before bigint, p_limit int)
RETURNS TABLE (has_more boolean, messages text)
LANGUAGE sql STABLE AS $$
    SELECT count(*) > p_limit,
           '[' || coalesce(string_agg(chat_dm_json(x.d), ',' ORDER BY (x.d).id) FILTER (WHERE x.rn <= p_limit), '') || ']'
    FROM (SELECT d, row_number() OVER (ORDER BY d.id DESC) AS rn FROM direct_messages d
          WHERE least(d.sender_id, d.recipient_id) = least(p_user, p_other)
            AND greatest(d.sender_id, d.recipient_id) = greatest(p_user, p_other)
            AND (p_before IS NULL OR d.id < p_before)
          ORDER BY d.id DESC LIMIT p_limit + 1) x
$$;

-- Messages after p_after up to p_upto (gap fills, catch-up; callers are members).
CREATE FUNCTION chat_range(p_room text, p_after bigint, p_upto bigint, p_cap int)
RETURNS TABLE (max_seq bigint, messages text)
LANGUAGE sql STABLE AS $$
    SELECT (SELECT r.last_seq FROM rooms r WHERE r.id = p_room),
           '[' || coalesce(string_agg(chat_message_json(x), ',' ORDER BY x.seq), '') || ']'
    FROM (SELECT * FROM messages m WHERE m.room_id = p_room AND m.seq > p_after AND m.seq <= p_upto
          ORDER BY m.seq LIMIT p_cap) x
$$;

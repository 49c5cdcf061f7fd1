-- 0003_set_based_writes: chat_send_messages and chat_send_dms as a few set-based
-- statements instead of a loop of three statements per row.
--
-- The row loop of 0001 cost about 40 µs of PostgreSQL CPU per message, and more as a batch
-- grew: every extra message to a room in the same transaction updated that room's row once
-- more, and each update walked the chain of the versions made before it. Under overload the
-- gateway's batches grew, each row got dearer, and throughput collapsed (20k sends/s offered:
-- 2-4k acked). Here a batch takes one UPDATE per room (last_seq += its message count), one
-- INSERT of all its messages and, only when some rows carry a clientMsgId, one INSERT of the
-- claims and one UPDATE linking them to their messages. Same signature, same result rows,
-- same semantics as 0001:
--   * rows are numbered 1..n (idx) in input order, and a room's seqs follow that order;
--   * a row for a room that does not exist gets err = 'not_found' (and claims nothing);
--   * a clientMsgId already claimed, before or earlier in the batch, returns the original
--     message (dup = true, its kind, body and room), and inserts nothing.
-- Claims are inserted in their own statement, before the statement that reads them back: a
-- claim held by a concurrent transaction makes the INSERT wait for it, and the next
-- statement's snapshot then sees the committed original.

CREATE OR REPLACE FUNCTION chat_send_messages(p_room text[], p_user text[], p_body text[], p_cmid text[])
RETURNS TABLE (idx int, id bigint, seq bigint, created_ms bigint, dup boolean, kind "char",
               body text, room text, err text)
LANGUAGE plpgsql AS $$
DECLARE
    v_won int[] := '{}';
BEGIN
    IF cardinality(p_room) = 1 AND p_cmid[1] IS NULL THEN
        -- One row without a clientMsgId (a quiet moment, or a caller that does not batch):
        -- two plain statements cost less than the set-based plan below.
        idx := 1; dup := false; kind := 'r';
        UPDATE rooms x SET last_seq = x.last_seq + 1 WHERE x.id = p_room[1] RETURNING x.last_seq INTO seq;
        IF NOT FOUND THEN
            err := 'not_found';
        ELSE
            INSERT INTO messages AS m (room_id, seq, user_id, body) VALUES (p_room[1], seq, p_user[1], p_body[1])
            RETURNING m.id, chat_ms(m.created_at) INTO id, created_ms;
        END IF;
        RETURN NEXT;
        RETURN;
    END IF;
    -- Lock every room of the batch in one order: concurrent batches cannot deadlock.
    PERFORM 1 FROM rooms r WHERE r.id = ANY (p_room) ORDER BY r.id FOR UPDATE;
    IF EXISTS (SELECT 1 FROM unnest(p_cmid) c WHERE c IS NOT NULL) THEN
        -- The first row of each (user, clientMsgId) in a known room claims it; v_won holds
        -- the rows whose claim is new.
        WITH inp AS (
            SELECT t.o::int AS i, t.u, t.c
            FROM unnest(p_room, p_user, p_cmid) WITH ORDINALITY AS t(r, u, c, o)
            WHERE t.c IS NOT NULL AND EXISTS (SELECT 1 FROM rooms x WHERE x.id = t.r)
        ), firsts AS (
            SELECT DISTINCT ON (inp.u, inp.c) inp.i, inp.u, inp.c FROM inp ORDER BY inp.u, inp.c, inp.i
        ), claimed AS (
            INSERT INTO client_msg_ids AS k (user_id, client_msg_id, kind)
            SELECT f.u, f.c, 'r' FROM firsts f
            ON CONFLICT DO NOTHING
            RETURNING k.user_id, k.client_msg_id
        )
        SELECT coalesce(array_agg(f.i), '{}') INTO v_won
        FROM firsts f JOIN claimed k ON k.user_id = f.u AND k.client_msg_id = f.c;
    END IF;

    RETURN QUERY
    WITH inp AS (
        SELECT t.o::int AS i, t.r, t.u, t.b, t.c, (x.id IS NOT NULL) AS known
        FROM unnest(p_room, p_user, p_body, p_cmid) WITH ORDINALITY AS t(r, u, b, c, o)
        LEFT JOIN rooms x ON x.id = t.r
    ), fresh AS (          -- the rows that become messages
        SELECT inp.* FROM inp WHERE inp.known AND (inp.c IS NULL OR inp.i = ANY (v_won))
    ), bumped AS (
        UPDATE rooms x SET last_seq = x.last_seq + n.cnt
        FROM (SELECT fresh.r, count(*) AS cnt FROM fresh GROUP BY fresh.r) n
        WHERE x.id = n.r
        RETURNING x.id, x.last_seq - n.cnt AS base
    ), planned AS (
        SELECT f.i, f.r, f.u, f.b, f.c,
               bumped.base + row_number() OVER (PARTITION BY f.r ORDER BY f.i) AS s
        FROM fresh f JOIN bumped ON bumped.id = f.r
    ), ins AS (
        INSERT INTO messages AS m (room_id, seq, user_id, body, client_msg_id)
        SELECT p.r, p.s, p.u, p.b, p.c FROM planned p ORDER BY p.i
        RETURNING m.id, m.room_id, m.seq, m.created_at
    ), done AS (
        SELECT p.i, p.u, p.c, ins.id, ins.seq, ins.created_at
        FROM planned p JOIN ins ON ins.room_id = p.r AND ins.seq = p.s
    ), linked AS (
        UPDATE client_msg_ids k SET message_id = d.id
        FROM done d
        WHERE d.c IS NOT NULL AND k.user_id = d.u AND k.client_msg_id = d.c
    ), firsts AS (         -- a repeated clientMsgId: the first row of the batch that has it
        SELECT DISTINCT ON (inp.u, inp.c) inp.i, inp.u, inp.c
        FROM inp WHERE inp.known AND inp.c IS NOT NULL ORDER BY inp.u, inp.c, inp.i
    ), dups AS (           -- the original: inserted by this batch (d), or earlier (k)
        SELECT inp.i, coalesce(d.id, k.message_id) AS mid, coalesce(k.kind, 'r') AS k_kind,
               d.seq AS d_seq, d.created_at AS d_ts, fi.b AS d_body, fi.r AS d_room
        FROM inp
        JOIN firsts f ON f.u = inp.u AND f.c = inp.c
        LEFT JOIN done d ON d.i = f.i
        LEFT JOIN inp fi ON d.i IS NOT NULL AND fi.i = f.i
        LEFT JOIN client_msg_ids k ON d.i IS NULL AND k.user_id = inp.u AND k.client_msg_id = inp.c
        WHERE inp.known AND inp.c IS NOT NULL AND NOT (inp.i = ANY (v_won))
    )
    SELECT inp.i, d.id, d.seq, chat_ms(d.created_at), false, 'r'::"char", NULL::text, NULL::text, NULL::text
    FROM inp JOIN done d ON d.i = inp.i
    UNION ALL
    SELECT dp.i, dp.mid,
           CASE WHEN dp.k_kind = 'r' THEN coalesce(dp.d_seq, om.seq) END,
           chat_ms(coalesce(dp.d_ts, om.created_at, od.created_at)), true, dp.k_kind,
           coalesce(dp.d_body, om.body, od.body), coalesce(dp.d_room, om.room_id), NULL::text
    FROM dups dp
    LEFT JOIN messages om ON dp.k_kind = 'r' AND om.id = dp.mid AND dp.d_seq IS NULL
    LEFT JOIN direct_messages od ON dp.k_kind = 'd' AND od.id = dp.mid
    UNION ALL
    SELECT inp.i, NULL::bigint, NULL::bigint, NULL::bigint, false, 'r'::"char", NULL::text, NULL::text,
           'not_found'::text
    FROM inp WHERE NOT inp.known
    ORDER BY 1;
END
$$;

-- Direct messages; same contract (seq is always NULL). Ids are drawn in the statement so
-- that each inserted row is matched back to its input row by id.
CREATE OR REPLACE FUNCTION chat_send_dms(p_sender text[], p_recipient text[], p_body text[], p_cmid text[])
RETURNS TABLE (idx int, id bigint, created_ms bigint, dup boolean, kind "char", body text)
LANGUAGE plpgsql AS $$
DECLARE
    v_won int[] := '{}';
BEGIN
    IF cardinality(p_sender) = 1 AND p_cmid[1] IS NULL THEN
        idx := 1; dup := false; kind := 'd';
        INSERT INTO direct_messages AS d (sender_id, recipient_id, body)
        VALUES (p_sender[1], p_recipient[1], p_body[1])
        RETURNING d.id, chat_ms(d.created_at) INTO id, created_ms;
        RETURN NEXT;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_cmid) c WHERE c IS NOT NULL) THEN
        WITH firsts AS (
            SELECT DISTINCT ON (t.u, t.c) t.o::int AS i, t.u, t.c
            FROM unnest(p_sender, p_cmid) WITH ORDINALITY AS t(u, c, o)
            WHERE t.c IS NOT NULL ORDER BY t.u, t.c, t.o
        ), claimed AS (
            INSERT INTO client_msg_ids AS k (user_id, client_msg_id, kind)
            SELECT f.u, f.c, 'd' FROM firsts f
            ON CONFLICT DO NOTHING
            RETURNING k.user_id, k.client_msg_id
        )
        SELECT coalesce(array_agg(f.i), '{}') INTO v_won
        FROM firsts f JOIN claimed k ON k.user_id = f.u AND k.client_msg_id = f.c;
    END IF;

    RETURN QUERY
    WITH inp AS (
        SELECT t.o::int AS i, t.u, t.rc, t.b, t.c
        FROM unnest(p_sender, p_recipient, p_body, p_cmid) WITH ORDINALITY AS t(u, rc, b, c, o)
    ), planned AS (
        SELECT inp.*, nextval(pg_get_serial_sequence('direct_messages', 'id')) AS nid
        FROM inp WHERE inp.c IS NULL OR inp.i = ANY (v_won) ORDER BY inp.i
    ), ins AS (
        INSERT INTO direct_messages AS d (id, sender_id, recipient_id, body, client_msg_id)
        OVERRIDING SYSTEM VALUE
        SELECT p.nid, p.u, p.rc, p.b, p.c FROM planned p ORDER BY p.i
        RETURNING d.id, d.created_at
    ), done AS (
        SELECT p.i, p.u, p.c, p.b, ins.id, ins.created_at FROM planned p JOIN ins ON ins.id = p.nid
    ), linked AS (
        UPDATE client_msg_ids k SET message_id = d.id
        FROM done d
        WHERE d.c IS NOT NULL AND k.user_id = d.u AND k.client_msg_id = d.c
    ), firsts AS (
        SELECT DISTINCT ON (inp.u, inp.c) inp.i, inp.u, inp.c
        FROM inp WHERE inp.c IS NOT NULL ORDER BY inp.u, inp.c, inp.i
    ), dups AS (
        SELECT inp.i, coalesce(d.id, k.message_id) AS mid, coalesce(k.kind, 'd') AS k_kind,
               d.created_at AS d_ts, d.b AS d_body
        FROM inp
        JOIN firsts f ON f.u = inp.u AND f.c = inp.c
        LEFT JOIN done d ON d.i = f.i
        LEFT JOIN client_msg_ids k ON d.i IS NULL AND k.user_id = inp.u AND k.client_msg_id = inp.c
        WHERE inp.c IS NOT NULL AND NOT (inp.i = ANY (v_won))
    )
    SELECT d.i, d.id, chat_ms(d.created_at), false, 'd'::"char", NULL::text
    FROM done d
    UNION ALL
    SELECT dp.i, dp.mid, chat_ms(coalesce(dp.d_ts, od.created_at, om.created_at)), true, dp.k_kind,
           coalesce(dp.d_body, od.body, om.body)
    FROM dups dp
    LEFT JOIN direct_messages od ON dp.d_ts IS NULL AND dp.k_kind = 'd' AND od.id = dp.mid
    LEFT JOIN messages om ON dp.k_kind = 'r' AND om.id = dp.mid
    ORDER BY 1;
END
$$;

-- A user id is a JSON number only below 2^53 (every integer there is exact in a double, and
-- chat_user_id_from_json accepts it back); 2^53 itself is a string, as in the gateway's
-- jsonw_user_id. 0001 used <= and disagreed with the gateway on that one id.
CREATE OR REPLACE FUNCTION chat_user_json(uid text) RETURNS json
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN uid ~ '^(0|[1-9][0-9]{0,15})$' AND uid::numeric < 9007199254740992
                THEN to_json(uid::bigint) ELSE to_json(uid) END
$$;

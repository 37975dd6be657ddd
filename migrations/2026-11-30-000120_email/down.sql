DROP FUNCTION register_participant(uuid, uuid, text, text, text, text, text, text, text, text,
                                   text, bytea, text, uuid, bigint[], boolean, uuid[], text,
                                   bytea, bigint, bytea, text);
DELETE FROM change_consumers WHERE name = 'email';
DROP TABLE email_messages;
DELETE FROM idempotency_keys WHERE token_nonce IS NULL;
ALTER TABLE idempotency_keys ALTER COLUMN token_nonce SET NOT NULL;
DROP INDEX registrations_confirm_by_idx;
ALTER TABLE registrations
    DROP COLUMN language,
    DROP COLUMN token_nonce,
    DROP COLUMN confirm_by;
ALTER TABLE events
    DROP COLUMN default_language,
    DROP COLUMN manage_url_template,
    DROP COLUMN require_email_confirmation,
    DROP COLUMN email_confirmation_hours,
    DROP COLUMN reminder_hours;

-- The registering function as the change-log migration made it.
CREATE FUNCTION register_participant(
    p_id uuid, p_event uuid,
    p_full_name text, p_email text, p_email_normalized text, p_organisation text,
    p_position text, p_city text, p_phone text, p_category text, p_source text,
    p_token_hash bytea, p_actor text, p_actor_id uuid,
    -- Advisory lock keys to take shared, in this order (the event's, then the sessions').
    p_locks bigint[],
    -- An organiser's explicit decision to go beyond capacity.
    p_over_capacity boolean,
    -- The sessions, in the order to claim them.
    p_sessions uuid[],
    -- Idempotency-Key (null without one), the request's digest, the key's lock, the nonce
    -- the manage token is derived from.
    p_key text, p_key_hash bytea, p_key_lock bigint, p_token_nonce bytea
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_stored record;
    v_capacity integer;
    v_outcomes jsonb;
BEGIN
    IF p_key IS NOT NULL THEN
        IF NOT pg_try_advisory_xact_lock(p_key_lock) THEN
            RAISE EXCEPTION USING ERRCODE = 'RG409', MESSAGE = 'idempotency_key_in_use';
        END IF;
        SELECT request_hash, registration_id, response, token_nonce INTO v_stored
        FROM idempotency_keys
        WHERE event_id = p_event AND key = p_key AND created_at > now() - interval '24 hours';
        IF FOUND THEN
            IF v_stored.request_hash <> p_key_hash THEN
                RAISE EXCEPTION USING ERRCODE = 'RG422', MESSAGE = 'idempotency_key_reused';
            END IF;
            RETURN jsonb_build_object('replayed', true, 'id', v_stored.registration_id,
                                      'sessions', v_stored.response,
                                      'token_nonce', encode(v_stored.token_nonce, 'hex'));
        END IF;
    END IF;

    PERFORM pg_advisory_xact_lock_shared(k) FROM unnest(p_locks) AS k;

    INSERT INTO registrations (id, event_id, full_name, email, email_normalized, organisation,
                               position, city, phone, category, source, manage_token_hash,
                               consent_at)
    VALUES (p_id, p_event, p_full_name, p_email, p_email_normalized, p_organisation,
            p_position, p_city, p_phone, p_category, p_source, p_token_hash, now());

    -- The event's capacity as it is now (changes to it take the event's lock exclusively).
    -- Beyond capacity on purpose still takes a place while there is one.
    SELECT e.capacity INTO v_capacity FROM events e WHERE e.id = p_event;
    IF v_capacity IS NOT NULL AND take_event_seat(p_event, p_id) IS NULL AND NOT p_over_capacity THEN
        RAISE EXCEPTION USING ERRCODE = 'RG409', MESSAGE = 'event_full';
    END IF;

    WITH claims AS MATERIALIZED (
        SELECT c.* FROM claim_session_places(p_id, p_sessions, p_over_capacity)
                           WITH ORDINALITY AS c(session_id, status, waitlist_position, over_capacity, n)
    ), history AS (
        INSERT INTO changes (event_id, registration_id, session_id, kind, actor, actor_id, details)
        SELECT p_event, p_id, NULL, 'registration.created', p_actor, p_actor_id,
               jsonb_build_object('over_capacity', p_over_capacity)
        UNION ALL
        SELECT p_event, p_id, c.session_id, 'registration.' || c.status, p_actor, p_actor_id,
               CASE WHEN c.over_capacity THEN '{"over_capacity": true}'::jsonb ELSE '{}'::jsonb END
        FROM claims c
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object('session_id', c.session_id, 'status', c.status,
                                                 'waitlist_position', c.waitlist_position)
                              ORDER BY c.n), '[]')
    INTO v_outcomes FROM claims c;

    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (event_id, key, request_hash, registration_id, response, token_nonce)
        VALUES (p_event, p_key, p_key_hash, p_id, v_outcomes, p_token_nonce)
        ON CONFLICT (event_id, key) DO UPDATE
        SET request_hash = excluded.request_hash, registration_id = excluded.registration_id,
            response = excluded.response, token_nonce = excluded.token_nonce, created_at = now();
    END IF;

    RETURN jsonb_build_object('replayed', false, 'id', p_id, 'sessions', v_outcomes);
END
$$;

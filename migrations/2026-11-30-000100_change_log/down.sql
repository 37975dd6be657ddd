DROP TRIGGER session_speakers_log_changes ON session_speakers;
DROP TRIGGER speakers_log_changes ON speakers;
DROP TRIGGER tracks_log_changes ON tracks;
DROP TRIGGER venues_log_changes ON venues;
DROP FUNCTION programme_log_changes();
DROP TRIGGER sessions_log_changes ON sessions;
DROP FUNCTION sessions_log_changes();
DROP TRIGGER events_log_changes ON events;
DROP FUNCTION events_log_changes();
DROP FUNCTION log_programme_change(uuid, text, uuid, jsonb);
DROP TRIGGER print_jobs_follow_changes ON changes;
DROP FUNCTION print_jobs_follow_changes();
DROP TABLE change_consumers;
DROP INDEX changes_log_idx;
DROP INDEX changes_event_idx;
-- Only registrations' changes were kept before.
DELETE FROM changes WHERE registration_id IS NULL OR kind = 'checkin.created';
ALTER TABLE changes DROP CONSTRAINT changes_kind_check;
ALTER TABLE changes DROP CONSTRAINT changes_registration_check;
ALTER TABLE changes DROP CONSTRAINT changes_actor_check;
UPDATE changes SET kind = substr(kind, length('registration.') + 1);
UPDATE changes SET actor = 'system' WHERE actor = 'device';
ALTER TABLE changes DROP COLUMN event_id, DROP COLUMN xid;
ALTER TABLE changes ALTER COLUMN registration_id SET NOT NULL;
ALTER TABLE changes RENAME COLUMN kind TO action;
ALTER TABLE changes ADD CONSTRAINT registration_history_action_check
    CHECK (action IN ('created', 'confirmed', 'waitlisted', 'promoted', 'cancelled', 'changed', 'session_removed'));
ALTER TABLE changes ADD CONSTRAINT registration_history_actor_check
    CHECK (actor IN ('participant', 'organiser', 'system'));
ALTER TABLE changes RENAME CONSTRAINT changes_registration_id_fkey TO registration_history_registration_id_fkey;
ALTER SEQUENCE changes_id_seq RENAME TO registration_history_id_seq;
ALTER INDEX changes_registration_idx RENAME TO registration_history_registration_idx;
ALTER INDEX changes_pkey RENAME TO registration_history_pkey;
ALTER TABLE changes RENAME TO registration_history;

CREATE OR REPLACE FUNCTION register_participant(
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
        INSERT INTO registration_history (registration_id, session_id, action, actor, actor_id, details)
        SELECT p_id, NULL, 'created', p_actor, p_actor_id,
               jsonb_build_object('over_capacity', p_over_capacity)
        UNION ALL
        SELECT p_id, c.session_id, c.status, p_actor, p_actor_id,
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

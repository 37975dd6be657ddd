DROP FUNCTION register_participant(uuid, uuid, text, text, text, text, text, text, text, text,
                                   text, bytea, text, uuid, bigint[], boolean, uuid[], text,
                                   bytea, bigint, bytea, text, jsonb, uuid[], jsonb);
DROP FUNCTION change_category(uuid, text, text, boolean);
DROP FUNCTION release_form_places(uuid);
DROP FUNCTION record_category_promotions(uuid, uuid[], text, uuid);
DROP FUNCTION fill_category(uuid, text, uuid);
DROP FUNCTION set_form_pool(uuid, integer);
DROP FUNCTION take_form_seat(uuid, uuid);
DROP FUNCTION form_pool_lock_key(uuid);
DROP TRIGGER events_add_standard_form ON events;
DROP FUNCTION events_add_standard_form();
DROP FUNCTION add_standard_form(uuid);

-- Answers kept with the new shape go back to the sessions alone.
UPDATE idempotency_keys SET response = response -> 'sessions' WHERE jsonb_typeof(response) = 'object';

DROP INDEX registrations_answers_idx;
DROP INDEX registrations_category_waitlist_idx;
ALTER TABLE registrations DROP COLUMN answers, DROP COLUMN category_waitlist_order;
-- Categories other than the five built-in ones become `other`.
UPDATE registrations SET category = 'other'
WHERE category NOT IN ('government', 'business', 'nonprofit', 'media', 'other');
ALTER TABLE registrations ADD CONSTRAINT registrations_category_check
    CHECK (category IN ('government', 'business', 'nonprofit', 'media', 'other'));

DROP TABLE registration_consents;
DROP TABLE form_consent_versions;
DROP TABLE form_consents;
DROP TABLE form_seats;
DROP TABLE form_options;
DROP TABLE form_questions;
DROP TABLE event_categories;

-- The registering function as the email migration made it.
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
    -- Idempotency-Key (null without one), the request's digest, the key's lock.
    p_key text, p_key_hash bytea, p_key_lock bigint,
    -- The nonce the manage token is derived from (kept with the registration).
    p_token_nonce bytea,
    -- The participant's language; null: the event's default.
    p_language text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_stored record;
    v_event record;
    v_confirm_by timestamptz;
    v_language text;
    v_outcomes jsonb;
BEGIN
    IF p_key IS NOT NULL THEN
        IF NOT pg_try_advisory_xact_lock(p_key_lock) THEN
            RAISE EXCEPTION USING ERRCODE = 'RG409', MESSAGE = 'idempotency_key_in_use';
        END IF;
        SELECT k.request_hash, k.registration_id, k.response, k.token_nonce,
               r.token_nonce AS current_nonce, r.language, r.confirm_by
        INTO v_stored
        FROM idempotency_keys k LEFT JOIN registrations r ON r.id = k.registration_id
        WHERE k.event_id = p_event AND k.key = p_key AND k.created_at > now() - interval '24 hours';
        IF FOUND THEN
            IF v_stored.request_hash <> p_key_hash THEN
                RAISE EXCEPTION USING ERRCODE = 'RG422', MESSAGE = 'idempotency_key_reused';
            END IF;
            -- The token is answered again only while it is the one in force: once a new link
            -- was sent to the address, it went to the address alone.
            RETURN jsonb_build_object(
                'replayed', true, 'id', v_stored.registration_id, 'sessions', v_stored.response,
                'token_nonce', CASE WHEN v_stored.token_nonce = v_stored.current_nonce
                                    THEN encode(v_stored.token_nonce, 'hex') END,
                'language', v_stored.language, 'confirm_by', v_stored.confirm_by);
        END IF;
    END IF;

    PERFORM pg_advisory_xact_lock_shared(k) FROM unnest(p_locks) AS k;

    -- The event's settings as they are now (changes to its capacity take the event's lock
    -- exclusively).
    SELECT e.capacity, e.default_language, e.require_email_confirmation,
           e.email_confirmation_hours
    INTO v_event FROM events e WHERE e.id = p_event;
    IF v_event.require_email_confirmation AND p_source = 'public' THEN
        v_confirm_by := now() + make_interval(hours => v_event.email_confirmation_hours);
    END IF;
    v_language := coalesce(p_language, v_event.default_language, 'ru');

    INSERT INTO registrations (id, event_id, full_name, email, email_normalized, organisation,
                               position, city, phone, category, source, manage_token_hash,
                               consent_at, language, token_nonce, confirm_by)
    VALUES (p_id, p_event, p_full_name, p_email, p_email_normalized, p_organisation,
            p_position, p_city, p_phone, p_category, p_source, p_token_hash, now(),
            v_language, p_token_nonce, v_confirm_by);

    -- Beyond capacity on purpose still takes a place while there is one.
    IF v_event.capacity IS NOT NULL AND take_event_seat(p_event, p_id) IS NULL
       AND NOT p_over_capacity THEN
        RAISE EXCEPTION USING ERRCODE = 'RG409', MESSAGE = 'event_full';
    END IF;

    WITH claims AS MATERIALIZED (
        SELECT c.* FROM claim_session_places(p_id, p_sessions, p_over_capacity)
                           WITH ORDINALITY AS c(session_id, status, waitlist_position, over_capacity, n)
    ), history AS (
        INSERT INTO changes (event_id, registration_id, session_id, kind, actor, actor_id, details)
        SELECT p_event, p_id, NULL, 'registration.created', p_actor, p_actor_id,
               jsonb_build_object('over_capacity', p_over_capacity)
               || CASE WHEN v_confirm_by IS NOT NULL
                       THEN '{"email_confirmation": true}'::jsonb ELSE '{}'::jsonb END
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
        VALUES (p_event, p_key, p_key_hash, p_id, v_outcomes,
                CASE WHEN v_confirm_by IS NULL THEN p_token_nonce END)
        ON CONFLICT (event_id, key) DO UPDATE
        SET request_hash = excluded.request_hash, registration_id = excluded.registration_id,
            response = excluded.response, token_nonce = excluded.token_nonce, created_at = now();
    END IF;

    RETURN jsonb_build_object('replayed', false, 'id', p_id, 'sessions', v_outcomes,
                              'language', v_language, 'confirm_by', v_confirm_by);
END
$$;

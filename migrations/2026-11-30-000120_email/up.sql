-- Email to participants.
--
-- Each registration gets a language and keeps the nonce its manage token is derived from
-- (tokens::derived with a server key), so that a mail can carry the token without the token
-- ever being stored: only its digest and the nonce are. Events get their email settings:
-- the default language, the template of the link participants manage their registration at,
-- address confirmation (a registration holds its places until `confirm_by`, then is
-- cancelled), and how long before the start reminders go out.
--
-- Mails are queued in `email_messages` by the `email` consumer of the change log, in the
-- transaction that moves its cursor, so a change that rolled back sends nothing and one that
-- committed is mailed at least once. A queued mail holds no personal data and no token: it
-- is rendered when it is sent, from the registration as it is then.

ALTER TABLE events
    ADD COLUMN default_language text NOT NULL DEFAULT 'ru'
        CHECK (default_language IN ('ru', 'en')),
    ADD COLUMN manage_url_template text CHECK (char_length(manage_url_template) <= 2000),
    ADD COLUMN require_email_confirmation boolean NOT NULL DEFAULT false,
    ADD COLUMN email_confirmation_hours integer NOT NULL DEFAULT 48
        CHECK (email_confirmation_hours BETWEEN 1 AND 720),
    -- Null: the service's setting (REGISTRAR_EMAIL_REMINDER_HOURS); 0: no reminders.
    ADD COLUMN reminder_hours integer CHECK (reminder_hours BETWEEN 0 AND 720);

ALTER TABLE registrations
    ADD COLUMN language text NOT NULL DEFAULT 'ru' CHECK (language IN ('ru', 'en')),
    ADD COLUMN token_nonce bytea,
    ADD COLUMN confirm_by timestamptz;

COMMENT ON COLUMN registrations.token_nonce IS
    'The nonce the current manage token is derived from with a server key (the token is not stored)';
COMMENT ON COLUMN registrations.confirm_by IS
    'Set while the address waits to be confirmed: the registration is cancelled after this';

-- Registrations made before: the nonce of those registered with an Idempotency-Key is known.
UPDATE registrations r SET token_nonce = k.token_nonce
FROM idempotency_keys k WHERE k.registration_id = r.id;

CREATE INDEX registrations_confirm_by_idx ON registrations (confirm_by)
    WHERE confirm_by IS NOT NULL AND status = 'active';

-- A replay answers no token when the first answer carried none (the address had to be
-- confirmed: the token went to the address only).
ALTER TABLE idempotency_keys ALTER COLUMN token_nonce DROP NOT NULL;

CREATE TABLE email_messages (
    -- Also the order in which one registration's mails go out.
    id                bigserial PRIMARY KEY,
    registration_id   uuid NOT NULL REFERENCES registrations (id) ON DELETE CASCADE,
    event_id          uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    kind              text NOT NULL CHECK (kind IN (
                          'registered', 'waitlisted', 'promoted', 'cancelled', 'session_changed',
                          'session_cancelled', 'reminder', 'confirm_address', 'manage_link')),
    -- The change the mail tells of (none for reminders).
    change_id         bigint,
    -- The session it is about (promoted, session_changed, session_cancelled).
    session_id        uuid,
    status            text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'sent', 'failed', 'dropped')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    -- Being sent by an instance until then.
    leased_until      timestamptz,
    first_attempt_at  timestamptz,
    -- Why the last attempt failed or the mail was dropped: SMTP codes and reasons, never an
    -- address or any other personal data.
    last_error        text,
    -- When the change it tells of was made.
    changed_at        timestamptz NOT NULL DEFAULT now(),
    created_at        timestamptz NOT NULL DEFAULT now(),
    sent_at           timestamptz
);

CREATE INDEX email_messages_due_idx ON email_messages (next_attempt_at, id) WHERE status = 'queued';
CREATE INDEX email_messages_registration_idx ON email_messages (registration_id, id)
    WHERE status = 'queued';
CREATE INDEX email_messages_done_idx ON email_messages (created_at) WHERE status <> 'queued';
-- Each registration is reminded once.
CREATE UNIQUE INDEX email_messages_reminder_key ON email_messages (registration_id)
    WHERE kind = 'reminder';

-- The email consumer starts at the end of the log: changes made before are not mailed.
INSERT INTO change_consumers (name, last_xid, last_id)
SELECT 'email', coalesce(max(xid), 0), coalesce(max(id), 0) FROM changes
ON CONFLICT (name) DO NOTHING;

-- One public or organiser registration, all or nothing: as before, and now with the
-- registration's language, the nonce of its manage token, and an address to confirm when
-- the event asks for it (participants registering themselves; organisers vouch for the
-- addresses they enter).
DROP FUNCTION register_participant(uuid, uuid, text, text, text, text, text, text, text, text,
                                   text, bytea, text, uuid, bigint[], boolean, uuid[], text,
                                   bytea, bigint, bytea);

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

-- The change log: every change that matters (to a registration, a session, the programme, a
-- check-in) is a row here, written in the transaction that makes it, so a change that rolls
-- back leaves none and one that commits cannot be lost. A registration's history is its rows.
-- Consumers (webhooks, email, the print queue) read the log; the code that makes a change
-- names none of them.
--
-- Consumers read the log in the order of (xid, id): the transaction that wrote a row, then
-- the row. A consumer only reads rows of transactions older than every transaction still
-- running (pg_snapshot_xmin), so a row that commits late is read in a later batch, never
-- skipped (as the attendee feed does). Each consumer has a cursor row; the instance that
-- holds its lock reads the next batch and moves the cursor in one transaction with what it
-- makes of the batch, so each change is handled once even with several instances.

ALTER TABLE registration_history RENAME TO changes;
ALTER INDEX registration_history_pkey RENAME TO changes_pkey;
ALTER INDEX registration_history_registration_idx RENAME TO changes_registration_idx;
ALTER SEQUENCE registration_history_id_seq RENAME TO changes_id_seq;
ALTER TABLE changes RENAME CONSTRAINT registration_history_registration_id_fkey TO changes_registration_id_fkey;
ALTER TABLE changes DROP CONSTRAINT registration_history_action_check;
ALTER TABLE changes DROP CONSTRAINT registration_history_actor_check;
ALTER TABLE changes RENAME COLUMN action TO kind;
ALTER TABLE changes ALTER COLUMN registration_id DROP NOT NULL;
-- Rows written before the log existed are older than any transaction: xid 0.
ALTER TABLE changes ADD COLUMN event_id uuid REFERENCES events (id) ON DELETE CASCADE,
                    ADD COLUMN xid bigint NOT NULL DEFAULT 0;
ALTER TABLE changes ALTER COLUMN xid SET DEFAULT (pg_current_xact_id()::text::bigint);
UPDATE changes c SET event_id = r.event_id, kind = 'registration.' || c.kind
FROM registrations r WHERE r.id = c.registration_id;
ALTER TABLE changes ALTER COLUMN event_id SET NOT NULL;
ALTER TABLE changes ADD CONSTRAINT changes_kind_check CHECK (kind IN (
    'registration.created', 'registration.confirmed', 'registration.waitlisted',
    'registration.promoted', 'registration.changed', 'registration.cancelled',
    'registration.session_removed', 'checkin.created', 'session.changed', 'session.cancelled',
    'programme.published', 'programme.changed'));
-- A registration's changes name it; the others do not.
ALTER TABLE changes ADD CONSTRAINT changes_registration_check
    CHECK ((registration_id IS NOT NULL) = (kind LIKE 'registration.%' OR kind = 'checkin.created'));
ALTER TABLE changes ADD CONSTRAINT changes_actor_check
    CHECK (actor IN ('participant', 'organiser', 'device', 'system'));

CREATE INDEX changes_log_idx ON changes (xid, id);
CREATE INDEX changes_event_idx ON changes (event_id, id);

CREATE TABLE change_consumers (
    name      text PRIMARY KEY,
    -- The last change handled: (xid, id).
    last_xid  bigint NOT NULL,
    last_id   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The print queue follows registrations, in the transaction that changes them: a cancelled
-- registration's open job is cancelled, and a printed badge whose name or organisation
-- changed is queued again.
CREATE FUNCTION print_jobs_follow_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'registration.cancelled' THEN
        UPDATE print_jobs SET status = 'cancelled', lease_expires_at = NULL
        WHERE registration_id = NEW.registration_id AND status IN ('queued', 'claimed');
    ELSE
        INSERT INTO print_jobs (id, event_id, registration_id, reason)
        SELECT gen_random_uuid(), r.event_id, r.id, 'changed' FROM registrations r
        WHERE r.id = NEW.registration_id AND r.badge_printed_at IS NOT NULL
        ON CONFLICT (registration_id) WHERE status IN ('queued', 'claimed') DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER print_jobs_follow_changes AFTER INSERT ON changes
    FOR EACH ROW WHEN (NEW.kind = 'registration.cancelled'
                       OR (NEW.kind = 'registration.changed'
                           AND NEW.details -> 'fields' ?| ARRAY['full_name', 'organisation']))
    EXECUTE FUNCTION print_jobs_follow_changes();

-- The programme's changes are logged by triggers, so that no path that changes it (the API,
-- the demo loader, imports) can forget to: only while the event is published, since a draft
-- has no audience. Programme edits of one transaction are one 'programme.changed'.
CREATE FUNCTION log_programme_change(p_event uuid, p_kind text, p_session uuid, p_details jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM events e WHERE e.id = p_event AND e.status = 'published') THEN
        RETURN;
    END IF;
    IF p_kind = 'programme.changed' AND EXISTS (
        SELECT 1 FROM changes c
        WHERE c.xid = pg_current_xact_id()::text::bigint AND c.event_id = p_event
          AND c.kind IN ('programme.changed', 'programme.published')) THEN
        RETURN;
    END IF;
    INSERT INTO changes (event_id, session_id, kind, actor, details)
    VALUES (p_event, p_session, p_kind, 'organiser', p_details);
END
$$;

CREATE FUNCTION events_log_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'published' AND NEW.status = 'published' THEN
        PERFORM log_programme_change(NEW.id, 'programme.published', NULL, '{}');
    ELSIF (OLD.title, OLD.description, OLD.time_zone, OLD.starts_on, OLD.ends_on, OLD.city)
          IS DISTINCT FROM (NEW.title, NEW.description, NEW.time_zone, NEW.starts_on, NEW.ends_on, NEW.city) THEN
        PERFORM log_programme_change(NEW.id, 'programme.changed', NULL, '{}');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_log_changes AFTER UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_log_changes();

-- A published session that is cancelled, or whose time, place or title changes, concerns its
-- participants ('session.cancelled', 'session.changed' with the fields); any change of what
-- the public programme shows is a 'programme.changed'.
CREATE FUNCTION sessions_log_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_fields text[] := '{}';
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.status = 'published' AND NEW.status = 'cancelled' THEN
            PERFORM log_programme_change(NEW.event_id, 'session.cancelled', NEW.id, '{}');
        ELSIF OLD.status = 'published' AND NEW.status = 'published' THEN
            IF OLD.starts_at IS DISTINCT FROM NEW.starts_at THEN v_fields := array_append(v_fields, 'starts_at'); END IF;
            IF OLD.ends_at IS DISTINCT FROM NEW.ends_at THEN v_fields := array_append(v_fields, 'ends_at'); END IF;
            IF OLD.venue_id IS DISTINCT FROM NEW.venue_id THEN v_fields := array_append(v_fields, 'venue_id'); END IF;
            IF OLD.title IS DISTINCT FROM NEW.title THEN v_fields := array_append(v_fields, 'title'); END IF;
            IF cardinality(v_fields) > 0 THEN
                PERFORM log_programme_change(NEW.event_id, 'session.changed', NEW.id,
                                             jsonb_build_object('fields', to_jsonb(v_fields)));
            END IF;
        END IF;
        IF (OLD.status = 'published' OR NEW.status = 'published')
           AND (OLD.title, OLD.description, OLD.kind, OLD.starts_at, OLD.ends_at, OLD.venue_id,
                OLD.track_id, OLD.capacity, OLD.status, OLD.language, OLD.tags)
               IS DISTINCT FROM
               (NEW.title, NEW.description, NEW.kind, NEW.starts_at, NEW.ends_at, NEW.venue_id,
                NEW.track_id, NEW.capacity, NEW.status, NEW.language, NEW.tags) THEN
            PERFORM log_programme_change(NEW.event_id, 'programme.changed', NULL, '{}');
        END IF;
    ELSIF TG_OP = 'INSERT' AND NEW.status = 'published' THEN
        PERFORM log_programme_change(NEW.event_id, 'programme.changed', NULL, '{}');
    ELSIF TG_OP = 'DELETE' AND OLD.status = 'published' THEN
        PERFORM log_programme_change(OLD.event_id, 'programme.changed', NULL, '{}');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_log_changes AFTER INSERT OR UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION sessions_log_changes();

-- Venues, tracks, speakers and who speaks where: shown in the public programme.
CREATE FUNCTION programme_log_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM log_programme_change(CASE WHEN TG_OP = 'DELETE' THEN OLD.event_id ELSE NEW.event_id END,
                                 'programme.changed', NULL, '{}');
    RETURN NULL;
END
$$;

CREATE TRIGGER venues_log_changes AFTER INSERT OR UPDATE OR DELETE ON venues
    FOR EACH ROW EXECUTE FUNCTION programme_log_changes();
CREATE TRIGGER tracks_log_changes AFTER INSERT OR UPDATE OR DELETE ON tracks
    FOR EACH ROW EXECUTE FUNCTION programme_log_changes();
CREATE TRIGGER speakers_log_changes AFTER INSERT OR UPDATE OR DELETE ON speakers
    FOR EACH ROW EXECUTE FUNCTION programme_log_changes();
CREATE TRIGGER session_speakers_log_changes AFTER INSERT OR UPDATE OR DELETE ON session_speakers
    FOR EACH ROW EXECUTE FUNCTION programme_log_changes();

-- One public or organiser registration, all or nothing: as before, with its changes written to
-- the change log.
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

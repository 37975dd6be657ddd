-- Back to waitlist tickets from a sequence per session, and positions counted from them.
DROP TRIGGER waitlist_join_on_insert ON registration_sessions;
DROP TRIGGER waitlist_join_on_update ON registration_sessions;
DROP TRIGGER waitlist_leave_on_update ON registration_sessions;
DROP TRIGGER waitlist_leave_on_delete ON registration_sessions;
DROP FUNCTION waitlist_join();
DROP FUNCTION waitlist_leave();
DROP FUNCTION claim_session_places(uuid, uuid[], boolean);
DROP FUNCTION join_session_waitlist(uuid, uuid);
DROP FUNCTION take_session_place(uuid, uuid, boolean);
DROP FUNCTION record_session_place(uuid, uuid, text, integer, boolean);

CREATE INDEX registration_sessions_left_waitlist_idx
    ON registration_sessions (session_id, waitlist_order)
    WHERE status <> 'waitlisted' AND waitlist_order IS NOT NULL;

CREATE FUNCTION waitlist_sequence(p_session uuid) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'session_waitlist_' || replace(p_session::text, '-', '') $$;

CREATE FUNCTION sessions_waitlist_sequence() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE format('CREATE SEQUENCE %I', waitlist_sequence(NEW.id));
        RETURN NEW;
    END IF;
    EXECUTE format('DROP SEQUENCE IF EXISTS %I', waitlist_sequence(OLD.id));
    RETURN OLD;
END
$$;

CREATE TRIGGER sessions_waitlist_sequence AFTER INSERT OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION sessions_waitlist_sequence();

DO $$
DECLARE
    v_session record;
BEGIN
    FOR v_session IN
        SELECT s.id, coalesce(w.last_ticket, 0) + 1 AS next
        FROM sessions s LEFT JOIN session_waitlists w ON w.session_id = s.id
    LOOP
        EXECUTE format('CREATE SEQUENCE %I START WITH %s', waitlist_sequence(v_session.id), v_session.next);
    END LOOP;
END
$$;

DROP TABLE session_waitlists;

CREATE FUNCTION claim_session_place(p_registration uuid, p_session uuid, p_exceed boolean,
                                    OUT status text, OUT waitlist_position bigint,
                                    OUT over_capacity boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_capacity integer;
    v_waitlist boolean;
    v_seat integer;
    v_ticket bigint;
    v_head bigint;
    v_left bigint;
BEGIN
    SELECT s.capacity, s.waitlist_enabled INTO v_capacity, v_waitlist
    FROM sessions s WHERE s.id = p_session;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'RG404', MESSAGE = 'session_gone', DETAIL = p_session::text;
    END IF;
    IF v_capacity IS NOT NULL THEN
        v_seat := take_session_seat(p_session, p_registration);
    END IF;
    IF v_capacity IS NULL OR v_seat IS NOT NULL OR p_exceed THEN
        status := 'confirmed';
    ELSIF v_waitlist THEN
        status := 'waitlisted';
        v_ticket := nextval(waitlist_sequence(p_session)::regclass);
    ELSE
        RETURN;
    END IF;
    over_capacity := v_capacity IS NOT NULL AND v_seat IS NULL AND p_exceed;
    INSERT INTO registration_sessions AS rs
        (registration_id, session_id, status, seat_no, waitlist_order, over_capacity)
    VALUES (p_registration, p_session, status, v_seat, v_ticket, over_capacity)
    ON CONFLICT (registration_id, session_id) DO UPDATE
    SET status = excluded.status, seat_no = excluded.seat_no,
        waitlist_order = coalesce(excluded.waitlist_order, rs.waitlist_order),
        over_capacity = excluded.over_capacity, updated_at = now()
    WHERE rs.status = 'cancelled';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'registration % already holds a place in session %', p_registration, p_session;
    END IF;
    IF status = 'waitlisted' THEN
        -- ORDER BY ... LIMIT 1, not min(): the first index entry, whatever the statistics say.
        SELECT w.waitlist_order INTO v_head FROM registration_sessions w
        WHERE w.session_id = p_session AND w.status = 'waitlisted'
        ORDER BY w.waitlist_order LIMIT 1;
        SELECT count(*) INTO v_left FROM registration_sessions w
        WHERE w.session_id = p_session AND w.status <> 'waitlisted'
          AND w.waitlist_order BETWEEN v_head AND v_ticket;
        waitlist_position := v_ticket - v_head + 1 - v_left;
    END IF;
END
$$;

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
    v_claim record;
    v_outcomes jsonb := '[]';
    v_actions text[];
    v_details jsonb[];
    v_history_sessions uuid[];
    i integer;
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

    v_actions := ARRAY['created'];
    v_details := ARRAY[jsonb_build_object('over_capacity', p_over_capacity)];
    v_history_sessions := ARRAY[NULL::uuid];
    FOR i IN 1 .. coalesce(array_length(p_sessions, 1), 0) LOOP
        SELECT * INTO v_claim FROM claim_session_place(p_id, p_sessions[i], p_over_capacity);
        IF v_claim.status IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'RG409', MESSAGE = 'session_full',
                                  DETAIL = p_sessions[i]::text;
        END IF;
        v_actions := v_actions || v_claim.status;
        v_details := v_details || CASE WHEN v_claim.over_capacity
                                       THEN '{"over_capacity": true}'::jsonb ELSE '{}'::jsonb END;
        v_history_sessions := v_history_sessions || p_sessions[i];
        v_outcomes := v_outcomes || jsonb_build_object(
            'session_id', p_sessions[i], 'status', v_claim.status,
            'waitlist_position', v_claim.waitlist_position);
    END LOOP;
    INSERT INTO registration_history (registration_id, session_id, action, actor, actor_id, details)
    SELECT p_id, h.session_id, h.action, p_actor, p_actor_id, h.details
    FROM unnest(v_history_sessions, v_actions, v_details) AS h(session_id, action, details);

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

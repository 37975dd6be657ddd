-- Exact waitlist positions.
--
-- A waitlisted place used to take its ticket from a sequence of its session and work out its
-- position from the committed rows, so registrations joining one waitlist at once counted
-- each other wrongly (a head still in flight was not seen; a ticket rolled back left a gap
-- that everyone behind it counted), and each position counted the places between the head
-- and the ticket that had left the queue.
--
-- Now each session with a waitlist has a counter row: the last ticket handed out and how many
-- places wait. Joining the waitlist takes the next ticket from that row and adds one waiting,
-- leaving it takes one away, both by triggers on registration_sessions, so no path can forget
-- them. The row stays locked by the joining transaction until it ends: registrations joining
-- one waitlist at once follow each other from that moment to their commit, and the number
-- waiting, read under the lock, is the new place's exact position (a transaction that rolls
-- back takes its ticket and its count back with it). Everything else a registration does
-- (its seats, its other sessions) happens before, in parallel.

CREATE TABLE session_waitlists (
    session_id   uuid PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    -- The ticket of the latest place to join (tickets order the queue, first come first served).
    last_ticket  bigint NOT NULL,
    -- Places waiting now: a new place's position is this, counted under the row's lock.
    waiting      integer NOT NULL CHECK (waiting >= 0)
);

INSERT INTO session_waitlists (session_id, last_ticket, waiting)
SELECT rs.session_id, max(rs.waitlist_order), count(*) FILTER (WHERE rs.status = 'waitlisted')
FROM registration_sessions rs JOIN sessions s ON s.id = rs.session_id
WHERE rs.waitlist_order IS NOT NULL
GROUP BY rs.session_id;

-- A place joins its session's waitlist: it gets the next ticket (whatever the caller set).
CREATE FUNCTION waitlist_join() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO session_waitlists AS w (session_id, last_ticket, waiting)
    VALUES (NEW.session_id, 1, 1)
    ON CONFLICT (session_id) DO UPDATE
    SET last_ticket = w.last_ticket + 1, waiting = w.waiting + 1
    RETURNING w.last_ticket INTO NEW.waitlist_order;
    RETURN NEW;
END
$$;

-- A place leaves its session's waitlist (promoted, cancelled, confirmed out of turn, deleted).
CREATE FUNCTION waitlist_leave() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE session_waitlists SET waiting = waiting - 1 WHERE session_id = OLD.session_id;
    RETURN NULL;
END
$$;

-- An INSERT ... ON CONFLICT DO UPDATE would fire both insert and update triggers: places are
-- taken again with an UPDATE of the cancelled row instead (see take_session_place).
CREATE TRIGGER waitlist_join_on_insert BEFORE INSERT ON registration_sessions
    FOR EACH ROW WHEN (NEW.status = 'waitlisted') EXECUTE FUNCTION waitlist_join();
CREATE TRIGGER waitlist_join_on_update BEFORE UPDATE OF status ON registration_sessions
    FOR EACH ROW WHEN (OLD.status <> 'waitlisted' AND NEW.status = 'waitlisted')
    EXECUTE FUNCTION waitlist_join();
CREATE TRIGGER waitlist_leave_on_update AFTER UPDATE OF status ON registration_sessions
    FOR EACH ROW WHEN (OLD.status = 'waitlisted' AND NEW.status <> 'waitlisted')
    EXECUTE FUNCTION waitlist_leave();
CREATE TRIGGER waitlist_leave_on_delete AFTER DELETE ON registration_sessions
    FOR EACH ROW WHEN (OLD.status = 'waitlisted') EXECUTE FUNCTION waitlist_leave();

-- Positions no longer count the tickets that left the queue.
DROP INDEX registration_sessions_left_waitlist_idx;

-- Takes a place in a session for a registration, or finds it must wait: a seat while there is
-- one (confirmed, recorded here); when the session is full, 'waitlisted' (not recorded yet:
-- see join_session_waitlist), null (no waitlist), or with `p_exceed` (an organiser's
-- explicit decision) a confirmed place beyond capacity. The session's capacity and waitlist
-- setting are read here, under the session's advisory lock (shared is enough) that changes to
-- them take exclusively, so they are the ones in force.
CREATE FUNCTION take_session_place(p_registration uuid, p_session uuid, p_exceed boolean,
                                   OUT status text, OUT over_capacity boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_capacity integer;
    v_waitlist boolean;
    v_seat integer;
BEGIN
    SELECT s.capacity, s.waitlist_enabled INTO v_capacity, v_waitlist
    FROM sessions s WHERE s.id = p_session;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'RG404', MESSAGE = 'session_gone', DETAIL = p_session::text;
    END IF;
    IF v_capacity IS NOT NULL THEN
        v_seat := take_session_seat(p_session, p_registration);
    END IF;
    over_capacity := v_capacity IS NOT NULL AND v_seat IS NULL AND p_exceed;
    IF v_capacity IS NULL OR v_seat IS NOT NULL OR p_exceed THEN
        status := 'confirmed';
        PERFORM record_session_place(p_registration, p_session, status, v_seat, over_capacity);
    ELSIF v_waitlist THEN
        status := 'waitlisted';
    END IF;
END
$$;

-- Records a registration's place in a session: a new row, or the place it gave up earlier
-- taken again.
CREATE FUNCTION record_session_place(p_registration uuid, p_session uuid, p_status text,
                                     p_seat integer, p_over_capacity boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE registration_sessions
    SET status = p_status, seat_no = p_seat, over_capacity = p_over_capacity, updated_at = now()
    WHERE registration_id = p_registration AND session_id = p_session AND status = 'cancelled';
    IF NOT FOUND THEN
        -- A place still active makes this a unique violation: never two places in one session.
        INSERT INTO registration_sessions (registration_id, session_id, status, seat_no, over_capacity)
        VALUES (p_registration, p_session, p_status, p_seat, p_over_capacity);
    END IF;
END
$$;

-- Puts a registration on a session's waitlist and returns its position: the number waiting,
-- read under the counter row's lock that joining took (see waitlist_join).
CREATE FUNCTION join_session_waitlist(p_registration uuid, p_session uuid) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_position bigint;
BEGIN
    PERFORM record_session_place(p_registration, p_session, 'waitlisted', NULL, false);
    SELECT w.waiting INTO v_position FROM session_waitlists w WHERE w.session_id = p_session;
    RETURN v_position;
END
$$;

-- Claims a registration's places in sessions (in the order given): first every seat, then
-- the waitlists, so that a registration waits for another's place in a queue only once it
-- holds everything else, and holds a queue for the shortest time. Raises session_full for a
-- full session without waitlist, before joining any queue.
CREATE FUNCTION claim_session_places(p_registration uuid, p_sessions uuid[], p_exceed boolean)
RETURNS TABLE (session_id uuid, status text, waitlist_position bigint, over_capacity boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_count integer := coalesce(array_length(p_sessions, 1), 0);
    v_status text[];
    v_over boolean[];
    v_position bigint[];
    v_claim record;
    i integer;
BEGIN
    FOR i IN 1 .. v_count LOOP
        SELECT * INTO v_claim FROM take_session_place(p_registration, p_sessions[i], p_exceed);
        IF v_claim.status IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'RG409', MESSAGE = 'session_full',
                                  DETAIL = p_sessions[i]::text;
        END IF;
        v_status[i] := v_claim.status;
        v_over[i] := v_claim.over_capacity;
    END LOOP;
    FOR i IN 1 .. v_count LOOP
        IF v_status[i] = 'waitlisted' THEN
            v_position[i] := join_session_waitlist(p_registration, p_sessions[i]);
        END IF;
    END LOOP;
    RETURN QUERY
    SELECT p_sessions[n], v_status[n], v_position[n], v_over[n]
    FROM generate_series(1, v_count) AS n;
END
$$;

-- One public or organiser registration, all or nothing (as before; sessions are now claimed
-- by claim_session_places, and the idempotency record, which keeps the positions told, is
-- written last).
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

DROP FUNCTION claim_session_place(uuid, uuid, boolean);
DO $$
DECLARE
    v_session uuid;
BEGIN
    FOR v_session IN SELECT id FROM sessions LOOP
        EXECUTE format('DROP SEQUENCE IF EXISTS %I', waitlist_sequence(v_session));
    END LOOP;
END
$$;
DROP TRIGGER sessions_waitlist_sequence ON sessions;
DROP FUNCTION sessions_waitlist_sequence();
DROP FUNCTION waitlist_sequence(uuid);

-- Registrations, their sessions, seats, waitlists, history and idempotency records.
--
-- Capacity is a pool of seat rows per session (and per event, when it has a capacity): a
-- registration claims a free seat with FOR UPDATE SKIP LOCKED, so registrations for one
-- popular session proceed in parallel instead of queueing on one counter row. Waitlist
-- places are plain rows ordered by a ticket from the session's own sequence (see the
-- registering functions); a place's position is its rank.

CREATE TABLE registrations (
    id                 uuid PRIMARY KEY,
    event_id           uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    full_name          text NOT NULL,
    email              text NOT NULL,
    -- lower(btrim(email)): one active registration per address and event.
    email_normalized   text NOT NULL,
    organisation       text,
    position           text,
    city               text,
    phone              text,
    category           text NOT NULL
                       CHECK (category IN ('government', 'business', 'nonprofit', 'media', 'other')),
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'cancelled')),
    source             text NOT NULL CHECK (source IN ('public', 'organiser')),
    manage_token_hash  bytea NOT NULL,
    consent_at         timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    cancelled_at       timestamptz,
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
);

CREATE UNIQUE INDEX registrations_active_email_key
    ON registrations (event_id, email_normalized) WHERE status = 'active';
CREATE UNIQUE INDEX registrations_manage_token_key ON registrations (manage_token_hash);
CREATE INDEX registrations_event_idx ON registrations (event_id, id);

CREATE TABLE registration_sessions (
    registration_id  uuid NOT NULL REFERENCES registrations (id) ON DELETE CASCADE,
    -- No foreign key: its check would take a share lock on the session's row for every
    -- registration, and a popular session's row would become the point every registration
    -- queues at. Sessions are deleted only without active places, under the session's
    -- exclusive lock, together with their cancelled places (capacity::delete_session).
    session_id       uuid NOT NULL,
    status           text NOT NULL CHECK (status IN ('confirmed', 'waitlisted', 'cancelled')),
    -- The ticket taken on joining the session's waitlist, from the session's own sequence
    -- (first come, first served: the waitlist is ordered by it); kept after leaving it.
    waitlist_order   bigint,
    -- The seat held in a session with a capacity; null when confirmed over capacity.
    seat_no          integer,
    -- Confirmed by an organiser beyond the session's capacity.
    over_capacity    boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (registration_id, session_id),
    CHECK (status <> 'waitlisted' OR waitlist_order IS NOT NULL),
    CHECK (seat_no IS NULL OR status = 'confirmed')
);

CREATE INDEX registration_sessions_waitlist_idx
    ON registration_sessions (session_id, waitlist_order) WHERE status = 'waitlisted';
-- Tickets of places that left the waitlist (promoted or given up): a new place's position is
-- its ticket's distance from the head of the queue less these.
CREATE INDEX registration_sessions_left_waitlist_idx
    ON registration_sessions (session_id, waitlist_order)
    WHERE status <> 'waitlisted' AND waitlist_order IS NOT NULL;
CREATE INDEX registration_sessions_confirmed_idx
    ON registration_sessions (session_id) WHERE status = 'confirmed';

-- A session's capacity: one row per seat. Only sessions with a capacity have seats.
CREATE TABLE session_seats (
    session_id       uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seat_no          integer NOT NULL,
    registration_id  uuid,
    PRIMARY KEY (session_id, seat_no)
);

CREATE INDEX session_seats_free_idx ON session_seats (session_id, seat_no) WHERE registration_id IS NULL;
CREATE INDEX session_seats_holder_idx ON session_seats (registration_id) WHERE registration_id IS NOT NULL;

-- An event's capacity, likewise: one row per place; every active registration holds one.
CREATE TABLE event_seats (
    event_id         uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    seat_no          integer NOT NULL,
    registration_id  uuid,
    PRIMARY KEY (event_id, seat_no)
);

CREATE INDEX event_seats_free_idx ON event_seats (event_id, seat_no) WHERE registration_id IS NULL;
CREATE INDEX event_seats_holder_idx ON event_seats (registration_id) WHERE registration_id IS NOT NULL;

-- Every change of a registration, with who made it.
CREATE TABLE registration_history (
    id               bigserial PRIMARY KEY,
    registration_id  uuid NOT NULL REFERENCES registrations (id) ON DELETE CASCADE,
    session_id       uuid,
    action           text NOT NULL CHECK (action IN ('created', 'confirmed', 'waitlisted', 'promoted',
                                                     'cancelled', 'changed', 'session_removed')),
    actor            text NOT NULL CHECK (actor IN ('participant', 'organiser', 'system')),
    actor_id         uuid,
    details          jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX registration_history_registration_idx ON registration_history (registration_id, id);

-- Responses to public registrations sent with an Idempotency-Key, kept 24 hours. The manage
-- token is not stored: it is derived again from token_nonce and a server key.
CREATE TABLE idempotency_keys (
    event_id         uuid NOT NULL,
    key              text NOT NULL,
    request_hash     bytea NOT NULL,
    registration_id  uuid NOT NULL,
    response         jsonb NOT NULL,
    token_nonce      bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, key)
);

CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

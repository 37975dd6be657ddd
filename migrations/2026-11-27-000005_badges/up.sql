-- Badge printers and check-in desks: device API keys, the attendee feed, the print queue and
-- check-ins.

-- The attendee feed orders changes by the transaction that made them. A poll only returns
-- rows of transactions older than every transaction still running, so a change that commits
-- late (after a poll has read later ones) is still returned by the next poll.
ALTER TABLE registrations
    ADD COLUMN change_xid        bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    ADD COLUMN badge_printed_at  timestamptz,
    ADD COLUMN checked_in_at     timestamptz;

CREATE FUNCTION registrations_track_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.change_xid := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END
$$;

CREATE TRIGGER registrations_track_change BEFORE UPDATE ON registrations
    FOR EACH ROW EXECUTE FUNCTION registrations_track_change();

CREATE INDEX registrations_feed_idx ON registrations (event_id, change_xid, id);
CREATE INDEX registrations_unprinted_idx ON registrations (event_id, id)
    WHERE badge_printed_at IS NULL AND status = 'active';

-- Each event signs the QR codes of its badges with its own Ed25519 key (the 32-byte seed).
ALTER TABLE events ADD COLUMN checkin_key_seed bytea;

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    event_id      uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    name          text NOT NULL,
    scopes        text[] NOT NULL,
    key_hash      bytea NOT NULL UNIQUE,
    -- The first characters of the key, to recognise it in lists.
    key_prefix    text NOT NULL,
    created_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    CHECK (scopes <@ ARRAY['attendees:read', 'badges:print', 'checkin:write']::text[]
           AND cardinality(scopes) > 0)
);

CREATE INDEX api_keys_event_idx ON api_keys (event_id, id);

CREATE TABLE print_jobs (
    id                uuid PRIMARY KEY,
    event_id          uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    registration_id   uuid NOT NULL REFERENCES registrations (id) ON DELETE CASCADE,
    reason            text NOT NULL CHECK (reason IN ('new', 'reprint', 'changed')),
    status            text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'claimed', 'done', 'cancelled')),
    -- The device key or organiser account holding the lease.
    claimed_by        uuid,
    lease_expires_at  timestamptz,
    claims            integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    done_at           timestamptz,
    CHECK ((status = 'claimed') = (lease_expires_at IS NOT NULL))
);

-- At most one open job per attendee.
CREATE UNIQUE INDEX print_jobs_open_key ON print_jobs (registration_id)
    WHERE status IN ('queued', 'claimed');
CREATE INDEX print_jobs_queue_idx ON print_jobs (event_id, created_at, id)
    WHERE status IN ('queued', 'claimed');

CREATE TABLE checkins (
    id               uuid PRIMARY KEY,
    event_id         uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    registration_id  uuid NOT NULL REFERENCES registrations (id) ON DELETE CASCADE,
    -- Null: at the event's entrance; otherwise at that session's door.
    session_id       uuid REFERENCES sessions (id) ON DELETE CASCADE,
    scanned_at       timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    device_key_id    uuid,
    user_id          uuid,
    -- Set by desks that scan offline: uploading the same scan again changes nothing.
    client_nonce     text,
    UNIQUE NULLS NOT DISTINCT (registration_id, session_id)
);

CREATE UNIQUE INDEX checkins_nonce_key ON checkins (event_id, client_nonce) WHERE client_nonce IS NOT NULL;
CREATE INDEX checkins_event_idx ON checkins (event_id, session_id);

-- Events and their programme: members, venues, tracks, sessions, speakers.

CREATE TABLE events (
    id                          uuid PRIMARY KEY,
    slug                        text NOT NULL UNIQUE
                                CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 100),
    title                       text NOT NULL,
    description                 text,
    time_zone                   text NOT NULL,
    starts_on                   date NOT NULL,
    ends_on                     date NOT NULL,
    city                        text,
    status                      text NOT NULL DEFAULT 'draft'
                                CHECK (status IN ('draft', 'published', 'archived')),
    registration_opens_at       timestamptz,
    registration_closes_at      timestamptz,
    capacity                    integer CHECK (capacity >= 0),
    allow_overlapping_sessions  boolean NOT NULL DEFAULT false,
    -- Bumped by every change; the ETag.
    version                     bigint NOT NULL DEFAULT 1,
    created_by                  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on >= starts_on),
    CHECK (registration_closes_at IS NULL OR registration_opens_at IS NULL
           OR registration_closes_at > registration_opens_at)
);

CREATE INDEX events_starts_on_idx ON events (starts_on, id);

CREATE TABLE event_members (
    event_id    uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, user_id)
);

CREATE INDEX event_members_user_id_idx ON event_members (user_id);

CREATE TABLE venues (
    id          uuid PRIMARY KEY,
    event_id    uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    name        text NOT NULL,
    city        text,
    address     text,
    capacity    integer CHECK (capacity >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, id)
);

CREATE TABLE tracks (
    id          uuid PRIMARY KEY,
    event_id    uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    title       text NOT NULL,
    description text,
    colour      text CHECK (colour ~ '^#[0-9a-fA-F]{6}$'),
    position    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, id)
);

CREATE INDEX tracks_event_order_idx ON tracks (event_id, position, id);

CREATE TABLE sessions (
    id                      uuid PRIMARY KEY,
    event_id                uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    title                   text NOT NULL,
    description             text,
    kind                    text NOT NULL CHECK (kind IN ('plenary', 'business_session', 'round_table',
                                                          'workshop', 'excursion', 'other')),
    starts_at               timestamptz NOT NULL,
    ends_at                 timestamptz NOT NULL,
    venue_id                uuid,
    track_id                uuid,
    capacity                integer CHECK (capacity >= 0),
    waitlist_enabled        boolean NOT NULL DEFAULT true,
    registration_opens_at   timestamptz,
    registration_closes_at  timestamptz,
    status                  text NOT NULL DEFAULT 'draft'
                            CHECK (status IN ('draft', 'published', 'cancelled')),
    language                text,
    tags                    text[] NOT NULL DEFAULT '{}',
    version                 bigint NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    UNIQUE (event_id, id),
    -- A session's venue and track belong to its own event.
    FOREIGN KEY (event_id, venue_id) REFERENCES venues (event_id, id),
    FOREIGN KEY (event_id, track_id) REFERENCES tracks (event_id, id)
);

CREATE INDEX sessions_event_starts_idx ON sessions (event_id, starts_at, id);
CREATE INDEX sessions_venue_idx ON sessions (venue_id);
CREATE INDEX sessions_track_idx ON sessions (track_id);

-- Full-text search over Russian and English text; «ё» is folded into «е» on both sides.
CREATE FUNCTION session_search_document(title text, description text, tags text[])
RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_tsvector('russian'::regconfig,
        translate(lower(title || ' ' || coalesce(description, '') || ' '
                        || array_to_string(tags, ' ')), 'ё', 'е'))
$$;

CREATE INDEX sessions_search_idx ON sessions
    USING gin (session_search_document(title, description, tags));

CREATE TABLE speakers (
    id            uuid PRIMARY KEY,
    event_id      uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    full_name     text NOT NULL,
    position      text,
    organisation  text,
    bio           text,
    photo_url     text,
    email         text,
    phone         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, id)
);

CREATE TABLE session_speakers (
    event_id    uuid NOT NULL,
    session_id  uuid NOT NULL,
    speaker_id  uuid NOT NULL,
    role        text NOT NULL CHECK (role IN ('moderator', 'speaker', 'panelist', 'guest_of_honour')),
    position    integer NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, speaker_id),
    FOREIGN KEY (event_id, session_id) REFERENCES sessions (event_id, id) ON DELETE CASCADE,
    FOREIGN KEY (event_id, speaker_id) REFERENCES speakers (event_id, id) ON DELETE CASCADE
);

CREATE INDEX session_speakers_speaker_idx ON session_speakers (speaker_id);

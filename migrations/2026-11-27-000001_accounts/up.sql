-- Organiser accounts and their login sessions.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL CHECK (email = btrim(email) AND length(email) BETWEEN 3 AND 254),
    display_name  text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    role          text NOT NULL CHECK (role IN ('admin', 'organiser')),
    password_hash text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Email addresses are unique regardless of case.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- One row per login: every refresh token issued from that login belongs to it, so reuse of a
-- rotated refresh token (or a logout) revokes the whole family, access tokens included.
CREATE TABLE auth_sessions (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE INDEX auth_sessions_user_id_idx ON auth_sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash      bytea PRIMARY KEY,
    auth_session_id uuid NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    rotated_at      timestamptz
);

CREATE INDEX refresh_tokens_auth_session_id_idx ON refresh_tokens (auth_session_id);

-- Webhooks: organisers' endpoints per event, and the messages delivered to them.
--
-- The change log's consumer `webhooks` turns each change into one delivery per enabled
-- endpoint subscribed to its type, in the transaction that moves its cursor; the body is
-- built then, once, and sent as it is on every attempt. Deliveries are claimed with
-- FOR UPDATE SKIP LOCKED and a lease (next_attempt_at moves past the lease, lease_token is
-- set): an instance that dies mid-delivery leaves a lease that runs out, and the message is
-- sent again, with the same webhook-id and body.

CREATE TABLE webhook_endpoints (
    id             uuid PRIMARY KEY,
    event_id       uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    url            text NOT NULL CHECK (char_length(url) BETWEEN 1 AND 2000),
    description    text,
    -- The change kinds sent; empty: all of them.
    event_types    text[] NOT NULL DEFAULT '{}',
    enabled        boolean NOT NULL DEFAULT true,
    -- Why and when it was disabled (by its owner, a 410 answer, or failing for too long).
    disabled_reason text,
    disabled_at    timestamptz,
    -- The signing secret, sealed (see secrets.rs); the previous one keeps signing too until
    -- it expires, after a rotation.
    secret_sealed  bytea NOT NULL,
    previous_secret_sealed bytea,
    previous_secret_expires_at timestamptz,
    -- The first failure since the last success.
    failing_since  timestamptz,
    created_by     uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((previous_secret_sealed IS NULL) = (previous_secret_expires_at IS NULL))
);

CREATE INDEX webhook_endpoints_event_idx ON webhook_endpoints (event_id, id);

CREATE TABLE webhook_deliveries (
    -- Also the message id sent as `webhook-id`.
    id             uuid PRIMARY KEY,
    -- The order deliveries were made in (the order of the change log).
    seq            bigserial NOT NULL,
    endpoint_id    uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    change_id      bigint NOT NULL REFERENCES changes (id) ON DELETE CASCADE,
    -- When the change was made, to measure delivery latency.
    changed_at     timestamptz NOT NULL,
    kind           text NOT NULL,
    registration_id uuid,
    -- Deliveries of one endpoint with the same key are sent one after the other, in order:
    -- the registration, else the session, else the event.
    order_key      uuid NOT NULL,
    -- The exact body sent (text, not jsonb: the bytes signed must not change).
    payload        text NOT NULL,
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts       integer NOT NULL DEFAULT 0,
    -- When it may be claimed: its next try, or the end of the current attempt's lease.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Set while an attempt holds the lease; its outcome is recorded only with this token.
    lease_token    uuid,
    first_attempt_at timestamptz,
    last_attempt_at timestamptz,
    last_status_code integer,
    last_error     text,
    last_duration_ms integer,
    created_at     timestamptz NOT NULL DEFAULT now(),
    delivered_at   timestamptz,
    failed_at      timestamptz,
    UNIQUE (endpoint_id, change_id)
);

CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_order_idx ON webhook_deliveries (endpoint_id, order_key, seq)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_list_idx ON webhook_deliveries (endpoint_id, seq);
CREATE INDEX webhook_deliveries_finished_idx ON webhook_deliveries (coalesce(delivered_at, failed_at))
    WHERE status <> 'pending';

-- Every attempt, for organisers looking into a failing endpoint.
CREATE TABLE webhook_attempts (
    id             bigserial PRIMARY KEY,
    delivery_id    uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at   timestamptz NOT NULL,
    duration_ms    integer NOT NULL,
    status_code    integer,
    error          text,
    -- The start of the answer's body.
    response_excerpt text
);

CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, id);

-- The consumer starts at the end of the log: changes made before webhooks existed have no
-- endpoint to go to.
INSERT INTO change_consumers (name, last_xid, last_id)
SELECT 'webhooks', coalesce(max(xid), 0), coalesce(max(id), 0) FROM changes
ON CONFLICT (name) DO NOTHING;

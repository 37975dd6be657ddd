-- The personal-data lifecycle: how long an event keeps its participants' personal data
-- after it ends, and which registrations have been anonymised.
--
-- Anonymising a registration overwrites its personal details in place (the row stays, so
-- counts, statistics, session places, seats and check-ins are unchanged), removes what else
-- names or reaches the person (idempotency records, queued mail, webhook message bodies,
-- rate-limit entries keyed by their address), and logs a `registration.erased` change that
-- holds no personal data.

ALTER TABLE events
    ADD COLUMN personal_data_retention_days integer NOT NULL DEFAULT 90
        CHECK (personal_data_retention_days BETWEEN 0 AND 3650);

COMMENT ON COLUMN events.personal_data_retention_days IS
    'Days after the event''s last day (in its time zone) that participants'' personal data is kept';

ALTER TABLE registrations ADD COLUMN erased_at timestamptz;

COMMENT ON COLUMN registrations.erased_at IS
    'When the personal data of the registration was anonymised';

-- The retention job looks for registrations not anonymised yet, event by event.
CREATE INDEX registrations_not_erased_idx ON registrations (event_id) WHERE erased_at IS NULL;

ALTER TABLE changes DROP CONSTRAINT changes_kind_check;
ALTER TABLE changes ADD CONSTRAINT changes_kind_check CHECK (kind IN (
    'registration.created', 'registration.confirmed', 'registration.waitlisted',
    'registration.promoted', 'registration.changed', 'registration.cancelled',
    'registration.session_removed', 'registration.erased', 'checkin.created',
    'session.changed', 'session.cancelled', 'programme.published', 'programme.changed'));

DELETE FROM changes WHERE kind = 'registration.erased';
ALTER TABLE changes DROP CONSTRAINT changes_kind_check;
ALTER TABLE changes ADD CONSTRAINT changes_kind_check CHECK (kind IN (
    'registration.created', 'registration.confirmed', 'registration.waitlisted',
    'registration.promoted', 'registration.changed', 'registration.cancelled',
    'registration.session_removed', 'checkin.created', 'session.changed', 'session.cancelled',
    'programme.published', 'programme.changed'));
DROP INDEX registrations_not_erased_idx;
ALTER TABLE registrations DROP COLUMN erased_at;
ALTER TABLE events DROP COLUMN personal_data_retention_days;

-- Back to lowercased keys. Fails while two active registrations of an event (or two
-- accounts) share an address under the old rule too: one of them has to go first.

DROP INDEX users_email_key;
ALTER TABLE users
    DROP COLUMN email_normalized,
    DROP COLUMN email_rule,
    DROP COLUMN email_shared;
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

DROP INDEX registrations_email_rule_idx;
DROP INDEX registrations_active_email_key;
UPDATE registrations SET email_normalized = lower(btrim(email))
    WHERE email_rule <> 0 OR email_shared;
ALTER TABLE registrations
    DROP COLUMN email_rule,
    DROP COLUMN email_shared;
CREATE UNIQUE INDEX registrations_active_email_key
    ON registrations (event_id, email_normalized) WHERE status = 'active';

-- Addresses are compared by a rule SQL cannot compute (Unicode NFKC and case folding for the
-- local part, IDNA for the domain: see src/email). Each comparison key records the number of
-- the rule that made it; the service brings older keys to the current rule when it starts,
-- under the migration lock (email::bring_to_rule). Until then, keys made by the old rule
-- (lower(btrim(email)), number 0) keep working as they did.
--
-- Two rows whose addresses were different under the old rule may be the same under the new
-- one (`Straße@…` and `strasse@…`, `…@пример.рф` and `…@xn--e1afmkfd.xn--p1ai`). Both are
-- kept as they are; the one that did not hold the key first is marked `email_shared` and left
-- out of the one-row-per-address rule, which holds for every other row.

ALTER TABLE registrations
    ADD COLUMN email_rule smallint NOT NULL DEFAULT 0,
    ADD COLUMN email_shared boolean NOT NULL DEFAULT false;
-- Rows written from now on carry the current rule (the registering function leaves it to the
-- default). A change of the rule sets this default to its number; as with any change to what
-- the service writes, no instance of the earlier version may run on after that migration.
ALTER TABLE registrations ALTER COLUMN email_rule SET DEFAULT 1;
COMMENT ON COLUMN registrations.email_normalized IS
    'The address in the form addresses are compared in, by rule email_rule (see src/email)';
COMMENT ON COLUMN registrations.email_shared IS
    'The address became the same as another active registration''s of the event when the '
    'comparison rule changed; both are kept, and this one is exempt from the one-per-address rule';

DROP INDEX registrations_active_email_key;
CREATE UNIQUE INDEX registrations_active_email_key
    ON registrations (event_id, email_normalized) WHERE status = 'active' AND NOT email_shared;
-- The rows still to bring to the current rule (few, or none, once the service has started).
CREATE INDEX registrations_email_rule_idx ON registrations (id) WHERE email_rule < 1;

ALTER TABLE users
    ADD COLUMN email_normalized text,
    ADD COLUMN email_rule smallint NOT NULL DEFAULT 0,
    ADD COLUMN email_shared boolean NOT NULL DEFAULT false;
UPDATE users SET email_normalized = lower(email);
ALTER TABLE users
    ALTER COLUMN email_normalized SET NOT NULL,
    ALTER COLUMN email_rule SET DEFAULT 1;
COMMENT ON COLUMN users.email_shared IS
    'The address became the same as another account''s when the comparison rule changed; '
    'both are kept and log in with their own passwords';

DROP INDEX users_email_key;
CREATE UNIQUE INDEX users_email_key ON users (email_normalized) WHERE NOT email_shared;

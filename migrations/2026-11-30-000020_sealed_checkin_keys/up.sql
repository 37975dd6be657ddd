-- Check-in signing keys are sealed (authenticated encryption with a key from the
-- environment) instead of stored in plain text: a dump of the database no longer lets
-- anyone sign badges. The service seals the plain seeds left in `checkin_key_seed` when it
-- starts and clears them; the column stays only so that this happens, and is always empty
-- afterwards.
ALTER TABLE events ADD COLUMN checkin_key_sealed bytea;

COMMENT ON COLUMN events.checkin_key_seed IS
    'Plain check-in key seeds of earlier versions; sealed into checkin_key_sealed and cleared at start.';

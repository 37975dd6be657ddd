-- Sealed keys cannot be opened here (the key is in the environment): going back loses the
-- events' check-in keys, and new ones are created on first use.
COMMENT ON COLUMN events.checkin_key_seed IS NULL;
ALTER TABLE events DROP COLUMN checkin_key_sealed;

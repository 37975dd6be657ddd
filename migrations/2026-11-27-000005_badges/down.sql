DROP TABLE checkins;
DROP TABLE print_jobs;
DROP TABLE api_keys;
ALTER TABLE events DROP COLUMN checkin_key_seed;
DROP INDEX registrations_unprinted_idx;
DROP INDEX registrations_feed_idx;
DROP TRIGGER registrations_track_change ON registrations;
DROP FUNCTION registrations_track_change();
ALTER TABLE registrations
    DROP COLUMN checked_in_at,
    DROP COLUMN badge_printed_at,
    DROP COLUMN change_xid;

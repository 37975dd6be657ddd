-- :leavers participants in the middle of the session :'session_id''s waitlist give up their
-- registrations, as cancellations do (the places leave the queue; nobody is promoted, since
-- the one seat stays taken).
\set ON_ERROR_STOP on
BEGIN;
CREATE TEMP TABLE bench_leavers AS
    SELECT registration_id FROM registration_sessions
    WHERE session_id = :'session_id' AND status = 'waitlisted'
    ORDER BY waitlist_order
    OFFSET (SELECT (count(*) - :leavers) / 2 FROM registration_sessions
            WHERE session_id = :'session_id' AND status = 'waitlisted')
    LIMIT :leavers;
UPDATE registration_sessions SET status = 'cancelled', updated_at = now()
WHERE session_id = :'session_id' AND registration_id IN (SELECT registration_id FROM bench_leavers);
UPDATE registrations SET status = 'cancelled', cancelled_at = now(), updated_at = now()
WHERE id IN (SELECT registration_id FROM bench_leavers);
COMMIT;

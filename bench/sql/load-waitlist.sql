-- Fills the session :'session_id' (capacity 1, with a waitlist) of the event :'event_id':
-- one confirmed participant holding the seat, then :waiting waitlisted ones, joined in order
-- (their tickets come from the session's waitlist counter, as when they register one by one).
\set ON_ERROR_STOP on
BEGIN;
CREATE TEMP TABLE bench_queue AS
    SELECT g, gen_random_uuid() AS id FROM generate_series(0, :waiting) AS g;
INSERT INTO registrations (id, event_id, full_name, email, email_normalized, category, status,
                           source, manage_token_hash, consent_at)
SELECT q.id, :'event_id', 'Участник очереди ' || q.g, 'queue' || q.g || '@example.org',
       'queue' || q.g || '@example.org', 'business', 'active', 'public',
       sha256(convert_to(q.id::text, 'UTF8')), now()
FROM bench_queue q;
UPDATE session_seats SET registration_id = (SELECT id FROM bench_queue WHERE g = 0)
WHERE session_id = :'session_id';
INSERT INTO registration_sessions (registration_id, session_id, status, seat_no)
SELECT id, :'session_id', 'confirmed', 1 FROM bench_queue WHERE g = 0;
INSERT INTO registration_sessions (registration_id, session_id, status)
SELECT id, :'session_id', 'waitlisted' FROM bench_queue WHERE g > 0 ORDER BY g;
COMMIT;

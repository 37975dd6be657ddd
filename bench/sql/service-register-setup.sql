-- For bench/service-register.pgbench: on a database migrated by `registrar migrate`, one
-- published event and :sessions published sessions of 1,000 seats each, as the API creates
-- them. Session n's id is md5('bench-session-' || n)::uuid, so the script can name it.
\set ON_ERROR_STOP on
BEGIN;
INSERT INTO events (id, slug, title, time_zone, starts_on, ends_on, status)
VALUES (md5('bench-event')::uuid, 'bench', 'Деловая неделя', 'Europe/Moscow', '2027-04-20', '2027-04-24', 'published');
INSERT INTO sessions (id, event_id, title, kind, starts_at, ends_at, capacity, waitlist_enabled, status)
SELECT md5('bench-session-' || n)::uuid, md5('bench-event')::uuid, 'Деловая сессия № ' || n, 'business_session',
       '2027-04-24 11:00+03', '2027-04-24 13:00+03', 1000, true, 'published'
FROM generate_series(1, :sessions) AS n;
INSERT INTO session_seats (session_id, seat_no)
SELECT md5('bench-session-' || n)::uuid, seat FROM generate_series(1, :sessions) AS n, generate_series(1, 1000) AS seat;
COMMIT;
ANALYZE;

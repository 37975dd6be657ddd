-- Bulk-loads :attendees attendees into the event :'event_id' (whose sessions were created
-- through the API, seats included), stored as the service stores public registrations:
-- active, a unique normalised email, a manage-token digest, each confirmed in one or two of
-- the event's sessions and holding the matching seat. Every 1,000 attendees are one
-- transaction, so the feed sees many transactions' changes as it would in real life.
\set ON_ERROR_STOP on
SELECT set_config('bench.event_id', :'event_id', false);

CREATE TEMP TABLE bench_people AS
    SELECT g, gen_random_uuid() AS id FROM generate_series(1, :attendees) AS g;
CREATE INDEX ON bench_people (g);

CREATE TEMP TABLE bench_sessions AS
    SELECT id, (row_number() OVER (ORDER BY starts_at, id) - 1)::int AS k
    FROM sessions WHERE event_id = :'event_id';

DO $$
DECLARE
    event uuid := current_setting('bench.event_id')::uuid;
    total int := (SELECT count(*) FROM bench_people);
BEGIN
    FOR chunk IN 0 .. (total - 1) / 1000 LOOP
        INSERT INTO registrations (id, event_id, full_name, email, email_normalized, organisation,
                                   position, city, phone, category, status, source,
                                   manage_token_hash, consent_at)
        SELECT p.id, event,
               (ARRAY['Анна', 'Иван', 'Мария', 'Олег', 'Елена', 'Сергей'])[1 + p.g % 6] || ' '
                   || (ARRAY['Иванова', 'Петров', 'Смирнова', 'Кузнецов', 'Попова', 'Соколов'])[1 + p.g / 6 % 6]
                   || ' ' || p.g,
               'Attendee' || p.g || '@Example.org',
               'attendee' || p.g || '@example.org',
               'АНО «Городские события» №' || p.g % 997,
               'Координатор проектов',
               (ARRAY['Мурманск', 'Апатиты', 'Кировск', 'Мончегорск'])[1 + p.g % 4],
               '+7 900 ' || lpad((p.g % 10000000)::text, 7, '0'),
               (ARRAY['government', 'business', 'nonprofit', 'media', 'other'])[1 + p.g % 5],
               'active', 'public',
               sha256(convert_to(p.id::text, 'UTF8')),
               now()
        FROM bench_people p
        WHERE p.g > chunk * 1000 AND p.g <= (chunk + 1) * 1000;
        COMMIT;
    END LOOP;
END
$$;

-- Everyone in session g mod S (sessions numbered by start time); every other attendee also
-- in the session half the programme later (a different time, so no overlap). Seat numbers in arrival order, and each seat row names its holder.
BEGIN;
WITH s AS (SELECT count(*)::int AS n FROM bench_sessions),
wanted AS (
    SELECT p.id AS registration_id, p.g, p.g % s.n AS k FROM bench_people p, s
    UNION ALL
    SELECT p.id, p.g, (p.g + s.n / 2) % s.n FROM bench_people p, s WHERE p.g % 2 = 0)
INSERT INTO registration_sessions (registration_id, session_id, status, seat_no)
SELECT w.registration_id, bs.id, 'confirmed', row_number() OVER (PARTITION BY bs.id ORDER BY w.g)
FROM wanted w JOIN bench_sessions bs USING (k);

UPDATE session_seats ss SET registration_id = rs.registration_id
FROM registration_sessions rs JOIN bench_sessions bs ON bs.id = rs.session_id
WHERE ss.session_id = rs.session_id AND ss.seat_no = rs.seat_no;

-- No seat number beyond a session's pool: every confirmed row must have found its seat.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM registration_sessions rs JOIN bench_sessions bs ON bs.id = rs.session_id
               LEFT JOIN session_seats ss ON ss.session_id = rs.session_id AND ss.seat_no = rs.seat_no
               WHERE ss.registration_id IS DISTINCT FROM rs.registration_id) THEN
        RAISE EXCEPTION 'a bulk-loaded attendee has no seat: sessions too small for the load';
    END IF;
END
$$;
COMMIT;

ANALYZE;

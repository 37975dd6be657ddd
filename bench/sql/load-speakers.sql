-- Speakers of the event :'event_id', two per session, so the programme carries what a real
-- one does. (Speakers and their assignments have no rules beyond their keys.)
\set ON_ERROR_STOP on
BEGIN;
CREATE TEMP TABLE bench_speakers AS
    SELECT g, gen_random_uuid() AS id FROM generate_series(1, 120) AS g;
INSERT INTO speakers (id, event_id, full_name, position, organisation, bio)
SELECT id, :'event_id', 'Спикер ' || g, 'Директор по развитию', 'Корпорация развития №' || g,
       'Двадцать лет в отрасли; руководил проектами в Мурманской области и Карелии.'
FROM bench_speakers;
INSERT INTO session_speakers (event_id, session_id, speaker_id, role, position)
SELECT :'event_id', s.id, sp.id, CASE WHEN r = 0 THEN 'moderator' ELSE 'speaker' END, r
FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM sessions WHERE event_id = :'event_id') s
CROSS JOIN generate_series(0, 1) AS r
JOIN bench_speakers sp ON sp.g = 1 + (s.n * 7 + r * 13) % 120;
COMMIT;

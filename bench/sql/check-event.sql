-- After a registration scenario: what the database holds for the event :'slug', as one JSON
-- object. A correct service never confirms more than a session's capacity, gives every
-- confirmed place in a session with a capacity a seat row naming it (and no seat to anyone
-- else), and creates every registration with its session places or not at all.
\set ON_ERROR_STOP on
WITH e AS (SELECT id FROM events WHERE slug = :'slug'),
s AS (SELECT id, capacity FROM sessions WHERE event_id = (SELECT id FROM e)),
rs AS (SELECT rs.* FROM registration_sessions rs JOIN s ON s.id = rs.session_id),
seats AS (SELECT ss.* FROM session_seats ss JOIN s ON s.id = ss.session_id)
SELECT json_build_object(
    'registrations', (SELECT count(*) FROM registrations WHERE event_id = (SELECT id FROM e)),
    'distinct_emails', (SELECT count(DISTINCT email_normalized) FROM registrations
                        WHERE event_id = (SELECT id FROM e)),
    'without_session', (SELECT count(*) FROM registrations r WHERE r.event_id = (SELECT id FROM e)
                        AND NOT EXISTS (SELECT 1 FROM rs WHERE rs.registration_id = r.id)),
    'confirmed', (SELECT count(*) FROM rs WHERE status = 'confirmed'),
    'waitlisted', (SELECT count(*) FROM rs WHERE status = 'waitlisted'),
    'waitlist_orders_distinct', (SELECT count(DISTINCT waitlist_order) FROM rs WHERE status = 'waitlisted'),
    'oversold_sessions', (SELECT count(*) FROM s WHERE s.capacity IS NOT NULL
                          AND (SELECT count(*) FROM rs WHERE rs.session_id = s.id AND rs.status = 'confirmed') > s.capacity),
    'seats_held', (SELECT count(*) FROM seats WHERE registration_id IS NOT NULL),
    'confirmed_without_seat', (SELECT count(*) FROM rs WHERE rs.status = 'confirmed' AND NOT EXISTS (
                                   SELECT 1 FROM seats WHERE seats.session_id = rs.session_id
                                   AND seats.seat_no = rs.seat_no AND seats.registration_id = rs.registration_id)),
    'seats_held_by_others', (SELECT count(*) FROM seats WHERE seats.registration_id IS NOT NULL AND NOT EXISTS (
                                 SELECT 1 FROM rs WHERE rs.session_id = seats.session_id AND rs.status = 'confirmed'
                                 AND rs.registration_id = seats.registration_id AND rs.seat_no = seats.seat_no)),
    'history_rows', (SELECT count(*) FROM changes h JOIN registrations r ON r.id = h.registration_id
                     WHERE r.event_id = (SELECT id FROM e))
);

-- The waitlist of the session :'session_id' as one JSON object: how many wait, whether their
-- tickets are distinct, and whether the session's counter agrees with the rows.
\set ON_ERROR_STOP on
SELECT json_build_object(
    'waitlisted', (SELECT count(*) FROM registration_sessions
                   WHERE session_id = :'session_id' AND status = 'waitlisted'),
    'distinct_tickets', (SELECT count(DISTINCT waitlist_order) FROM registration_sessions
                         WHERE session_id = :'session_id' AND status = 'waitlisted'),
    'counter', (SELECT waiting FROM session_waitlists WHERE session_id = :'session_id'),
    'confirmed', (SELECT count(*) FROM registration_sessions
                  WHERE session_id = :'session_id' AND status = 'confirmed')
);

-- The ceiling of the CSV export: the export's own query (src/badges/feed.rs, organiser view,
-- active attendees), columns and order as the service reads them, streamed by PostgreSQL
-- itself as CSV.
\set ON_ERROR_STOP on
COPY (
    SELECT r.id, r.full_name, r.email, r.organisation, r.position, r.city, r.phone,
           r.category, r.status,
           coalesce((SELECT string_agg(s.title, '; ' ORDER BY s.starts_at)
                     FROM registration_sessions rs JOIN sessions s ON s.id = rs.session_id
                     WHERE rs.registration_id = r.id AND rs.status = 'confirmed'), '') AS sessions,
           r.checked_in_at, r.badge_printed_at, r.created_at
    FROM registrations r WHERE r.event_id = :'event_id' AND r.status = 'active' ORDER BY r.id
) TO STDOUT WITH (FORMAT csv, HEADER);

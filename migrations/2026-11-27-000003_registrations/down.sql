DROP TABLE idempotency_keys;
DROP TABLE registration_history;
DROP TABLE event_seats;
DROP TABLE session_seats;
DROP TABLE registration_sessions;
DROP TABLE registrations;

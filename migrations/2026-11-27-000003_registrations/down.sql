DROP TABLE idempotency_keys;
DROP TABLE registration_history;
DROP TABLE event_seats;
DROP TABLE session_seats;
DROP TABLE registration_sessions;
DROP SEQUENCE waitlist_order_seq;
DROP TABLE registrations;

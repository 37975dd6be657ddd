DROP FUNCTION register_participant(uuid, uuid, text, text, text, text, text, text, text, text, text,
                                   bytea, text, uuid, bigint[], boolean, boolean, uuid[], text[],
                                   text, bytea, bigint, bytea);
DROP FUNCTION claim_session_place(uuid, uuid, text);
DROP FUNCTION take_event_seat(uuid, uuid);
DROP FUNCTION take_session_seat(uuid, uuid);

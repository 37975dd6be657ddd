DROP FUNCTION register_participant(uuid, uuid, text, text, text, text, text, text, text, text, text,
                                   bytea, text, uuid, bigint[], boolean, uuid[],
                                   text, bytea, bigint, bytea);
DROP FUNCTION claim_session_place(uuid, uuid, boolean);
DROP FUNCTION take_event_seat(uuid, uuid);
DROP FUNCTION take_session_seat(uuid, uuid);
DO $$
DECLARE
    v_session uuid;
BEGIN
    FOR v_session IN SELECT id FROM sessions LOOP
        EXECUTE format('DROP SEQUENCE IF EXISTS %I', waitlist_sequence(v_session));
    END LOOP;
END
$$;
DROP TRIGGER sessions_waitlist_sequence ON sessions;
DROP FUNCTION sessions_waitlist_sequence();
DROP FUNCTION waitlist_sequence(uuid);

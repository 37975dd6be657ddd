-- Answers changed after registering. The new answers were checked against the form as when
-- registering; here, in the transaction that changes the registration, places in choice
-- options no longer chosen (`p_release`) are given back and places in newly chosen ones
-- (`p_take`, in the order of their ids) are taken, or with `p_exceed` (an organiser, on
-- purpose) it goes in beyond capacity. An option chosen before and after keeps its place:
-- neither list names it. Raises option_full (RG409, the option's id as detail).
CREATE FUNCTION change_answers(p_registration uuid, p_answers jsonb, p_release uuid[],
                               p_take uuid[], p_exceed boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_option uuid;
BEGIN
    -- Shared, as registering takes them (a pool's capacity changes under its exclusive lock);
    -- in key order.
    PERFORM pg_advisory_xact_lock_shared(form_pool_lock_key(o))
    FROM unnest(coalesce(p_release, '{}') || coalesce(p_take, '{}')) AS o
    ORDER BY form_pool_lock_key(o);
    UPDATE form_seats SET registration_id = NULL
    WHERE pool = ANY (coalesce(p_release, '{}')) AND registration_id = p_registration;
    FOREACH v_option IN ARRAY coalesce(p_take, '{}') LOOP
        IF take_form_seat(v_option, p_registration) IS NULL AND NOT p_exceed THEN
            RAISE EXCEPTION USING ERRCODE = 'RG409', MESSAGE = 'option_full',
                                  DETAIL = v_option::text;
        END IF;
    END LOOP;
    UPDATE registrations SET answers = p_answers WHERE id = p_registration;
END
$$;

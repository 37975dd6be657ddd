-- Registration forms the organiser designs: participant categories per event with their own
-- places and waitlists, questions with choice options that may have places, and consent
-- texts kept in versions.
--
-- Limited places (a category's, a choice option's) are pools of seat rows in `form_seats`,
-- claimed in the registering transaction with FOR UPDATE SKIP LOCKED like a session's seats
-- (see take_session_seat). A category with a waitlist also queues registrations: a counter
-- on the category row hands out tickets under the row's lock, so a waiting registration's
-- position is exact (as session_waitlists does for sessions). Seats are freed, and given to
-- the next in the category's queue, under the category's advisory lock taken exclusively;
-- registering takes it shared, so nobody joins the queue while a seat is being freed.

CREATE TABLE event_categories (
    id                      uuid PRIMARY KEY,
    event_id                uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    -- The name in bodies and views; fixed once a registration uses it.
    code                    text NOT NULL CHECK (code ~ '^[a-z0-9_-]{1,40}$'),
    name_ru                 text NOT NULL CHECK (char_length(name_ru) BETWEEN 1 AND 200),
    name_en                 text NOT NULL CHECK (char_length(name_en) BETWEEN 1 AND 200),
    -- Null: unlimited.
    capacity                integer CHECK (capacity BETWEEN 0 AND 1000000),
    waitlist                boolean NOT NULL DEFAULT false,
    registration_opens_at   timestamptz,
    registration_closes_at  timestamptz,
    -- False: invite-only, only organisers register people in it.
    public                  boolean NOT NULL DEFAULT true,
    position                integer NOT NULL DEFAULT 0,
    -- The waitlist's counter: the latest ticket handed out and how many wait now.
    last_ticket             bigint NOT NULL DEFAULT 0,
    waiting                 integer NOT NULL DEFAULT 0 CHECK (waiting >= 0),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, code),
    CHECK (registration_closes_at IS NULL OR registration_opens_at IS NULL
           OR registration_opens_at < registration_closes_at)
);

CREATE TABLE form_questions (
    id            uuid PRIMARY KEY,
    event_id      uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    key           text NOT NULL CHECK (key ~ '^[a-z0-9_-]{1,40}$'),
    type          text NOT NULL CHECK (type IN ('text', 'multiline', 'number', 'yes_no',
                      'single_choice', 'multiple_choice', 'date', 'phone', 'email', 'country')),
    label_ru      text NOT NULL,
    label_en      text NOT NULL,
    help_ru       text,
    help_en       text,
    required      boolean NOT NULL DEFAULT false,
    position      integer NOT NULL DEFAULT 0,
    min           double precision,
    max           double precision,
    max_length    integer,
    max_choices   integer,
    -- Codes of the categories it applies to; null: all.
    categories    text[],
    -- {"question": key, "equals": value}: asked only when that answer has that value.
    shown_when    jsonb,
    -- Erased with the participant's personal data.
    personal      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, key)
);

CREATE TABLE form_options (
    id           uuid PRIMARY KEY,
    question_id  uuid NOT NULL REFERENCES form_questions (id) ON DELETE CASCADE,
    key          text NOT NULL CHECK (key ~ '^[a-z0-9_-]{1,40}$'),
    label_ru     text NOT NULL,
    label_en     text NOT NULL,
    capacity     integer CHECK (capacity BETWEEN 0 AND 1000000),
    position     integer NOT NULL,
    UNIQUE (question_id, key)
);

-- Places of categories and choice options: one row per place, `pool` the category's or the
-- option's id.
CREATE TABLE form_seats (
    pool             uuid NOT NULL,
    seat_no          integer NOT NULL,
    registration_id  uuid,
    PRIMARY KEY (pool, seat_no)
);

CREATE INDEX form_seats_free_idx ON form_seats (pool, seat_no) WHERE registration_id IS NULL;
CREATE INDEX form_seats_holder_idx ON form_seats (registration_id) WHERE registration_id IS NOT NULL;

CREATE TABLE form_consents (
    id          uuid PRIMARY KEY,
    event_id    uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    key         text NOT NULL CHECK (key ~ '^[a-z0-9_-]{1,40}$'),
    required    boolean NOT NULL,
    position    integer NOT NULL DEFAULT 0,
    -- The version in force (the latest of form_consent_versions).
    version     integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, key)
);

-- Every text a consent has had: registrations name the version they accepted.
CREATE TABLE form_consent_versions (
    consent_id  uuid NOT NULL REFERENCES form_consents (id) ON DELETE CASCADE,
    version     integer NOT NULL,
    text_ru     text NOT NULL,
    text_en     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consent_id, version)
);

-- Which version of which text a registration accepted, and when.
CREATE TABLE registration_consents (
    registration_id  uuid NOT NULL REFERENCES registrations (id) ON DELETE CASCADE,
    consent_key      text NOT NULL,
    version          integer NOT NULL,
    accepted_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (registration_id, consent_key)
);

ALTER TABLE registrations DROP CONSTRAINT registrations_category_check;
ALTER TABLE registrations
    -- The answers to the event's questions, by question key.
    ADD COLUMN answers jsonb NOT NULL DEFAULT '{}',
    -- The ticket in the category's waitlist while waiting for a place in it; null otherwise.
    ADD COLUMN category_waitlist_order bigint;

CREATE INDEX registrations_category_waitlist_idx
    ON registrations (event_id, category, category_waitlist_order)
    WHERE category_waitlist_order IS NOT NULL;
CREATE INDEX registrations_answers_idx ON registrations USING gin (answers jsonb_path_ops);

-- The five categories every event used to have, and the consent to the processing of
-- personal data that registering used to ask for; new events start with them too.
CREATE FUNCTION add_standard_form(p_event uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_consent uuid := gen_random_uuid();
BEGIN
    INSERT INTO event_categories (id, event_id, code, name_ru, name_en, position)
    VALUES (gen_random_uuid(), p_event, 'government', 'Власть', 'Government', 1),
           (gen_random_uuid(), p_event, 'business', 'Бизнес', 'Business', 2),
           (gen_random_uuid(), p_event, 'nonprofit', 'Общество', 'Society', 3),
           (gen_random_uuid(), p_event, 'media', 'СМИ', 'Media', 4),
           (gen_random_uuid(), p_event, 'other', 'Другое', 'Other', 5);
    INSERT INTO form_consents (id, event_id, key, required, position)
    VALUES (v_consent, p_event, 'personal_data', true, 1);
    INSERT INTO form_consent_versions (consent_id, version, text_ru, text_en)
    VALUES (v_consent, 1,
            'Я даю согласие на обработку моих персональных данных организатором мероприятия '
            'в целях регистрации и участия в нём.',
            'I consent to the event''s organiser processing my personal data for registering '
            'and taking part in the event.');
END
$$;

SELECT add_standard_form(id) FROM events;

CREATE FUNCTION events_add_standard_form() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM add_standard_form(NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER events_add_standard_form AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_add_standard_form();

-- Registrations made before consented to the one text there was.
INSERT INTO registration_consents (registration_id, consent_key, version, accepted_at)
SELECT r.id, 'personal_data', 1, r.consent_at FROM registrations r;

-- The advisory lock of a pool of places, a category's or an option's (see capacity.rs for
-- the session's and the event's): registering takes it shared, changing the pool or freeing
-- its places exclusively.
CREATE FUNCTION form_pool_lock_key(p_pool uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT ('x' || substr(replace(p_pool::text, '-', ''), 1, 16))::bit(64)::bigint
           # (x'CA7E' || repeat('0', 12))::bit(64)::bigint
$$;

-- Takes a free place of a pool (a category's or an option's) for a registration, as
-- take_session_seat does. Null: none left.
CREATE FUNCTION take_form_seat(p_pool uuid, p_registration uuid) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_seat integer;
BEGIN
    UPDATE form_seats SET registration_id = p_registration
    WHERE (pool, seat_no) = (
        SELECT pool, seat_no FROM form_seats
        WHERE pool = p_pool AND registration_id IS NULL
        ORDER BY seat_no LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING seat_no INTO v_seat;
    IF v_seat IS NULL THEN
        UPDATE form_seats SET registration_id = p_registration
        WHERE (pool, seat_no) = (
            SELECT pool, seat_no FROM form_seats
            WHERE pool = p_pool AND registration_id IS NULL
            ORDER BY seat_no LIMIT 1 FOR UPDATE)
        RETURNING seat_no INTO v_seat;
    END IF;
    RETURN v_seat;
END
$$;

-- Makes a pool hold `p_capacity` places (null: no pool). Places held are never removed:
-- raises RG409 capacity_below_taken (the number held as detail) when more are held.
CREATE FUNCTION set_form_pool(p_pool uuid, p_capacity integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_seats integer;
    v_taken integer;
BEGIN
    IF p_capacity IS NULL THEN
        DELETE FROM form_seats WHERE pool = p_pool;
        RETURN;
    END IF;
    SELECT count(*), count(registration_id) INTO v_seats, v_taken
    FROM form_seats WHERE pool = p_pool;
    IF v_seats = 0 AND p_capacity > 0 THEN
        -- A new pool (or one that was unlimited): places held without a seat count too.
        v_taken := 0;
    END IF;
    IF v_taken > p_capacity THEN
        RAISE EXCEPTION USING ERRCODE = 'RG409', MESSAGE = 'capacity_below_taken',
                              DETAIL = v_taken::text;
    END IF;
    IF v_seats < p_capacity THEN
        INSERT INTO form_seats (pool, seat_no)
        SELECT p_pool, coalesce((SELECT max(seat_no) FROM form_seats WHERE pool = p_pool), 0) + g
        FROM generate_series(1, p_capacity - v_seats) AS g;
    ELSIF v_seats > p_capacity THEN
        DELETE FROM form_seats WHERE (pool, seat_no) IN (
            SELECT pool, seat_no FROM form_seats
            WHERE pool = p_pool AND registration_id IS NULL
            ORDER BY seat_no DESC LIMIT v_seats - p_capacity);
    END IF;
END
$$;

-- Gives a category's free places to those who should hold them: first active registrations
-- in it holding none (when it had no limit before), then its waitlist in order. Needs the
-- category's exclusive lock. Returns the registrations promoted from the waitlist.
CREATE FUNCTION fill_category(p_category uuid, p_actor text, p_actor_id uuid)
RETURNS SETOF uuid
LANGUAGE plpgsql AS $$
DECLARE
    v_cat record;
BEGIN
    SELECT c.* INTO v_cat FROM event_categories c WHERE c.id = p_category FOR UPDATE;
    IF v_cat.capacity IS NULL THEN
        -- Unlimited: everyone waiting gets in.
        RETURN QUERY
        WITH promoted AS (
            UPDATE registrations SET category_waitlist_order = NULL, updated_at = now()
            WHERE event_id = v_cat.event_id AND category = v_cat.code AND status = 'active'
              AND category_waitlist_order IS NOT NULL
            RETURNING id)
        SELECT id FROM promoted;
    ELSE
        RETURN QUERY
        WITH free AS (
            SELECT seat_no, row_number() OVER (ORDER BY seat_no) AS n
            FROM form_seats WHERE pool = p_category AND registration_id IS NULL),
        waiting AS (
            SELECT r.id, r.category_waitlist_order AS ticket,
                   row_number() OVER (ORDER BY r.category_waitlist_order IS NOT NULL,
                                      r.category_waitlist_order, r.created_at, r.id) AS n
            FROM registrations r
            WHERE r.event_id = v_cat.event_id AND r.category = v_cat.code AND r.status = 'active'
              AND NOT EXISTS (SELECT 1 FROM form_seats s
                              WHERE s.pool = p_category AND s.registration_id = r.id)),
        pairs AS (SELECT free.seat_no, waiting.id, waiting.ticket FROM free JOIN waiting USING (n)),
        taken AS (
            UPDATE form_seats s SET registration_id = p.id
            FROM pairs p WHERE s.pool = p_category AND s.seat_no = p.seat_no),
        promoted AS (
            UPDATE registrations r SET category_waitlist_order = NULL, updated_at = now()
            FROM pairs p WHERE r.id = p.id AND p.ticket IS NOT NULL
            RETURNING r.id)
        SELECT id FROM promoted;
    END IF;
END
$$;

-- After fill_category: the counter of those waiting, and the change log.
CREATE FUNCTION record_category_promotions(p_category uuid, p_promoted uuid[], p_actor text,
                                           p_actor_id uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_cat record;
BEGIN
    IF coalesce(array_length(p_promoted, 1), 0) = 0 THEN
        RETURN;
    END IF;
    UPDATE event_categories SET waiting = waiting - array_length(p_promoted, 1)
    WHERE id = p_category RETURNING event_id, code INTO v_cat;
    INSERT INTO changes (event_id, registration_id, session_id, kind, actor, actor_id, details)
    SELECT v_cat.event_id, r, NULL, 'registration.promoted', p_actor, p_actor_id,
           jsonb_build_object('category', v_cat.code)
    FROM unnest(p_promoted) AS r;
END
$$;

-- Gives up what a registration holds of its form when it is cancelled (its status already
-- set): its places in its category and in choice options, or its place in the category's
-- queue; a freed place in the category goes to the next in its queue.
CREATE FUNCTION release_form_places(p_registration uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_reg record;
    v_category uuid;
BEGIN
    SELECT r.event_id, r.category, r.category_waitlist_order INTO v_reg
    FROM registrations r WHERE r.id = p_registration;
    SELECT c.id INTO v_category FROM event_categories c
    WHERE c.event_id = v_reg.event_id AND c.code = v_reg.category;
    IF v_category IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(form_pool_lock_key(v_category));
    END IF;
    UPDATE form_seats SET registration_id = NULL WHERE registration_id = p_registration;
    IF v_reg.category_waitlist_order IS NOT NULL THEN
        UPDATE registrations SET category_waitlist_order = NULL WHERE id = p_registration;
        UPDATE event_categories SET waiting = waiting - 1 WHERE id = v_category;
    END IF;
    IF v_category IS NOT NULL THEN
        PERFORM record_category_promotions(
            v_category, ARRAY(SELECT fill_category(v_category, 'system', NULL)), 'system', NULL);
    END IF;
END
$$;

-- Moves a registration to another category of its event, under the rules of registering
-- in it (`p_source` 'public': its window and whether the public may choose it): its place in
-- the old category goes to the next in that one's queue; in the new one it takes a place, or
-- joins the queue (its position is returned), or with `p_exceed` goes in beyond capacity.
-- Raises category_unknown, category_invite_only (RG422), category_closed, category_full
-- (RG409).
CREATE FUNCTION change_category(p_registration uuid, p_code text, p_source text,
                                p_exceed boolean) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_reg record;
    v_old uuid;
    v_new record;
    v_ticket bigint;
    v_position integer;
BEGIN
    SELECT r.event_id, r.category, r.category_waitlist_order INTO v_reg
    FROM registrations r WHERE r.id = p_registration;
    SELECT c.id, c.capacity, c.waitlist, c.public, c.registration_opens_at,
           c.registration_closes_at
    INTO v_new FROM event_categories c WHERE c.event_id = v_reg.event_id AND c.code = p_code;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'RG422', MESSAGE = 'category_unknown';
    END IF;
    IF p_source = 'public' THEN
        IF NOT v_new.public THEN
            RAISE EXCEPTION USING ERRCODE = 'RG422', MESSAGE = 'category_invite_only';
        END IF;
        IF now() < v_new.registration_opens_at OR now() >= v_new.registration_closes_at THEN
            RAISE EXCEPTION USING ERRCODE = 'RG409', MESSAGE = 'category_closed';
        END IF;
    END IF;
    SELECT c.id INTO v_old FROM event_categories c
    WHERE c.event_id = v_reg.event_id AND c.code = v_reg.category;
    -- The old category's lock exclusively (a place is freed), the new one's shared; in key
    -- order.
    PERFORM CASE WHEN id = v_old THEN pg_advisory_xact_lock(form_pool_lock_key(id))::text
                 ELSE pg_advisory_xact_lock_shared(form_pool_lock_key(id))::text END
    FROM unnest(ARRAY[v_old, v_new.id]) AS id WHERE id IS NOT NULL
    ORDER BY form_pool_lock_key(id);

    UPDATE form_seats SET registration_id = NULL
    WHERE pool = v_old AND registration_id = p_registration;
    IF v_reg.category_waitlist_order IS NOT NULL THEN
        UPDATE event_categories SET waiting = waiting - 1 WHERE id = v_old;
    END IF;
    UPDATE registrations SET category = p_code, category_waitlist_order = NULL
    WHERE id = p_registration;
    IF v_old IS NOT NULL THEN
        PERFORM record_category_promotions(
            v_old, ARRAY(SELECT fill_category(v_old, 'system', NULL)), 'system', NULL);
    END IF;

    IF v_new.capacity IS NOT NULL AND take_form_seat(v_new.id, p_registration) IS NULL
       AND NOT p_exceed THEN
        IF NOT v_new.waitlist THEN
            RAISE EXCEPTION USING ERRCODE = 'RG409', MESSAGE = 'category_full';
        END IF;
        UPDATE event_categories SET last_ticket = last_ticket + 1, waiting = waiting + 1
        WHERE id = v_new.id RETURNING last_ticket, waiting INTO v_ticket, v_position;
        UPDATE registrations SET category_waitlist_order = v_ticket WHERE id = p_registration;
    END IF;
    RETURN v_position;
END
$$;

-- One public or organiser registration, all or nothing: as before, and now in a category
-- of the event (its window, whether the public may choose it, its places and waitlist), with
-- answers to the event's questions, places in the choice options that have them, and the
-- versions of the consent texts accepted.
DROP FUNCTION register_participant(uuid, uuid, text, text, text, text, text, text, text, text,
                                   text, bytea, text, uuid, bigint[], boolean, uuid[], text,
                                   bytea, bigint, bytea, text);

CREATE FUNCTION register_participant(
    p_id uuid, p_event uuid,
    p_full_name text, p_email text, p_email_normalized text, p_organisation text,
    p_position text, p_city text, p_phone text, p_category text, p_source text,
    p_token_hash bytea, p_actor text, p_actor_id uuid,
    -- Advisory lock keys to take shared, in this order (the event's, then the sessions').
    p_locks bigint[],
    -- An organiser's explicit decision to go beyond capacity.
    p_over_capacity boolean,
    -- The sessions, in the order to claim them.
    p_sessions uuid[],
    -- Idempotency-Key (null without one), the request's digest, the key's lock.
    p_key text, p_key_hash bytea, p_key_lock bigint,
    -- The nonce the manage token is derived from (kept with the registration).
    p_token_nonce bytea,
    -- The participant's language; null: the event's default.
    p_language text DEFAULT NULL,
    -- The answers (checked against the form), the limited options they choose (in the order
    -- to claim them), and the consents accepted: [{"key", "version"}].
    p_answers jsonb DEFAULT '{}', p_options uuid[] DEFAULT '{}', p_consents jsonb DEFAULT '[]'
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_stored record;
    v_event record;
    v_category record;
    v_confirm_by timestamptz;
    v_language text;
    v_outcomes jsonb;
    v_ticket bigint;
    v_position integer;
    v_option uuid;
BEGIN
    IF p_key IS NOT NULL THEN
        IF NOT pg_try_advisory_xact_lock(p_key_lock) THEN
            RAISE EXCEPTION USING ERRCODE = 'RG409', MESSAGE = 'idempotency_key_in_use';
        END IF;
        SELECT k.request_hash, k.registration_id, k.response, k.token_nonce,
               r.token_nonce AS current_nonce, r.language, r.confirm_by
        INTO v_stored
        FROM idempotency_keys k LEFT JOIN registrations r ON r.id = k.registration_id
        WHERE k.event_id = p_event AND k.key = p_key AND k.created_at > now() - interval '24 hours';
        IF FOUND THEN
            IF v_stored.request_hash <> p_key_hash THEN
                RAISE EXCEPTION USING ERRCODE = 'RG422', MESSAGE = 'idempotency_key_reused';
            END IF;
            RETURN jsonb_build_object(
                'replayed', true, 'id', v_stored.registration_id,
                -- (answers kept before categories had waitlists are the sessions alone)
                'sessions', CASE WHEN jsonb_typeof(v_stored.response) = 'array'
                                 THEN v_stored.response ELSE v_stored.response -> 'sessions' END,
                'category_waitlist_position', v_stored.response -> 'category_waitlist_position',
                'token_nonce', CASE WHEN v_stored.token_nonce = v_stored.current_nonce
                                    THEN encode(v_stored.token_nonce, 'hex') END,
                'language', v_stored.language, 'confirm_by', v_stored.confirm_by);
        END IF;
    END IF;

    PERFORM pg_advisory_xact_lock_shared(k) FROM unnest(p_locks) AS k;

    SELECT c.id, c.code, c.capacity, c.waitlist, c.public, c.registration_opens_at,
           c.registration_closes_at
    INTO v_category FROM event_categories c WHERE c.event_id = p_event AND c.code = p_category;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'RG422', MESSAGE = 'category_unknown';
    END IF;
    IF p_source = 'public' THEN
        IF NOT v_category.public THEN
            RAISE EXCEPTION USING ERRCODE = 'RG422', MESSAGE = 'category_invite_only';
        END IF;
        IF now() < v_category.registration_opens_at OR now() >= v_category.registration_closes_at THEN
            RAISE EXCEPTION USING ERRCODE = 'RG409', MESSAGE = 'category_closed';
        END IF;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(form_pool_lock_key(v_category.id));

    SELECT e.capacity, e.default_language, e.require_email_confirmation,
           e.email_confirmation_hours
    INTO v_event FROM events e WHERE e.id = p_event;
    IF v_event.require_email_confirmation AND p_source = 'public' THEN
        v_confirm_by := now() + make_interval(hours => v_event.email_confirmation_hours);
    END IF;
    v_language := coalesce(p_language, v_event.default_language, 'ru');

    INSERT INTO registrations (id, event_id, full_name, email, email_normalized, organisation,
                               position, city, phone, category, source, manage_token_hash,
                               consent_at, language, token_nonce, confirm_by, answers)
    VALUES (p_id, p_event, p_full_name, p_email, p_email_normalized, p_organisation,
            p_position, p_city, p_phone, p_category, p_source, p_token_hash, now(),
            v_language, p_token_nonce, v_confirm_by, p_answers);

    INSERT INTO registration_consents (registration_id, consent_key, version)
    SELECT p_id, c ->> 'key', (c ->> 'version')::integer
    FROM jsonb_array_elements(p_consents) AS c;

    -- Beyond capacity on purpose still takes a place while there is one.
    IF v_event.capacity IS NOT NULL AND take_event_seat(p_event, p_id) IS NULL
       AND NOT p_over_capacity THEN
        RAISE EXCEPTION USING ERRCODE = 'RG409', MESSAGE = 'event_full';
    END IF;

    FOREACH v_option IN ARRAY coalesce(p_options, '{}') LOOP
        PERFORM pg_advisory_xact_lock_shared(form_pool_lock_key(v_option));
        IF take_form_seat(v_option, p_id) IS NULL AND NOT p_over_capacity THEN
            RAISE EXCEPTION USING ERRCODE = 'RG409', MESSAGE = 'option_full',
                                  DETAIL = v_option::text;
        END IF;
    END LOOP;

    -- The category's place: a seat while there is one, else its waitlist (joined last, see
    -- below), else refused; organisers beyond capacity on purpose are let in without one.
    IF v_category.capacity IS NOT NULL AND take_form_seat(v_category.id, p_id) IS NULL
       AND NOT p_over_capacity THEN
        IF NOT v_category.waitlist THEN
            RAISE EXCEPTION USING ERRCODE = 'RG409', MESSAGE = 'category_full';
        END IF;
        v_ticket := -1;
    END IF;

    WITH claims AS MATERIALIZED (
        SELECT c.* FROM claim_session_places(p_id, p_sessions, p_over_capacity)
                           WITH ORDINALITY AS c(session_id, status, waitlist_position, over_capacity, n)
    ), history AS (
        INSERT INTO changes (event_id, registration_id, session_id, kind, actor, actor_id, details)
        SELECT p_event, p_id, NULL, 'registration.created', p_actor, p_actor_id,
               jsonb_build_object('over_capacity', p_over_capacity)
               || CASE WHEN v_confirm_by IS NOT NULL
                       THEN '{"email_confirmation": true}'::jsonb ELSE '{}'::jsonb END
               || CASE WHEN v_ticket IS NOT NULL
                       THEN '{"category_waitlisted": true}'::jsonb ELSE '{}'::jsonb END
        UNION ALL
        SELECT p_event, p_id, c.session_id, 'registration.' || c.status, p_actor, p_actor_id,
               CASE WHEN c.over_capacity THEN '{"over_capacity": true}'::jsonb ELSE '{}'::jsonb END
        FROM claims c
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object('session_id', c.session_id, 'status', c.status,
                                                 'waitlist_position', c.waitlist_position)
                              ORDER BY c.n), '[]')
    INTO v_outcomes FROM claims c;

    -- Joining the category's queue comes last: the counter row stays locked until commit, so
    -- those joining one queue at once follow each other and each is told its exact place.
    IF v_ticket IS NOT NULL THEN
        UPDATE event_categories SET last_ticket = last_ticket + 1, waiting = waiting + 1
        WHERE id = v_category.id RETURNING last_ticket, waiting INTO v_ticket, v_position;
        UPDATE registrations SET category_waitlist_order = v_ticket WHERE id = p_id;
    END IF;

    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (event_id, key, request_hash, registration_id, response, token_nonce)
        VALUES (p_event, p_key, p_key_hash, p_id,
                jsonb_build_object('sessions', v_outcomes, 'category_waitlist_position', v_position),
                CASE WHEN v_confirm_by IS NULL THEN p_token_nonce END)
        ON CONFLICT (event_id, key) DO UPDATE
        SET request_hash = excluded.request_hash, registration_id = excluded.registration_id,
            response = excluded.response, token_nonce = excluded.token_nonce, created_at = now();
    END IF;

    RETURN jsonb_build_object('replayed', false, 'id', p_id, 'sessions', v_outcomes,
                              'category_waitlist_position', v_position,
                              'language', v_language, 'confirm_by', v_confirm_by);
END
$$;

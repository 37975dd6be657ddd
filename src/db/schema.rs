// @generated automatically by Diesel CLI.

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        event_id -> Uuid,
        name -> Text,
        scopes -> Array<Nullable<Text>>,
        key_hash -> Bytea,
        key_prefix -> Text,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    auth_sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    badge_templates (event_id) {
        event_id -> Uuid,
        show_organisation -> Bool,
        show_position -> Bool,
        show_city -> Bool,
        show_event_title -> Bool,
        layout -> Text,
        category_colours -> Jsonb,
        category_labels -> Jsonb,
        logo -> Nullable<Bytea>,
        logo_media_type -> Nullable<Text>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    change_consumers (name) {
        name -> Text,
        last_xid -> Int8,
        last_id -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    changes (id) {
        id -> Int8,
        registration_id -> Nullable<Uuid>,
        session_id -> Nullable<Uuid>,
        kind -> Text,
        actor -> Text,
        actor_id -> Nullable<Uuid>,
        details -> Jsonb,
        created_at -> Timestamptz,
        event_id -> Uuid,
        xid -> Int8,
    }
}

diesel::table! {
    checkins (id) {
        id -> Uuid,
        event_id -> Uuid,
        registration_id -> Uuid,
        session_id -> Nullable<Uuid>,
        scanned_at -> Timestamptz,
        recorded_at -> Timestamptz,
        device_key_id -> Nullable<Uuid>,
        user_id -> Nullable<Uuid>,
        client_nonce -> Nullable<Text>,
    }
}

diesel::table! {
    email_messages (id) {
        id -> Int8,
        registration_id -> Uuid,
        event_id -> Uuid,
        kind -> Text,
        change_id -> Nullable<Int8>,
        session_id -> Nullable<Uuid>,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        leased_until -> Nullable<Timestamptz>,
        first_attempt_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        changed_at -> Timestamptz,
        created_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    event_categories (id) {
        id -> Uuid,
        event_id -> Uuid,
        code -> Text,
        name_ru -> Text,
        name_en -> Text,
        capacity -> Nullable<Int4>,
        waitlist -> Bool,
        registration_opens_at -> Nullable<Timestamptz>,
        registration_closes_at -> Nullable<Timestamptz>,
        public -> Bool,
        position -> Int4,
        last_ticket -> Int8,
        waiting -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    event_members (event_id, user_id) {
        event_id -> Uuid,
        user_id -> Uuid,
        role -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    event_seats (event_id, seat_no) {
        event_id -> Uuid,
        seat_no -> Int4,
        registration_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    events (id) {
        id -> Uuid,
        slug -> Text,
        title -> Text,
        description -> Nullable<Text>,
        time_zone -> Text,
        starts_on -> Date,
        ends_on -> Date,
        city -> Nullable<Text>,
        status -> Text,
        registration_opens_at -> Nullable<Timestamptz>,
        registration_closes_at -> Nullable<Timestamptz>,
        capacity -> Nullable<Int4>,
        allow_overlapping_sessions -> Bool,
        version -> Int8,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        checkin_key_seed -> Nullable<Bytea>,
        checkin_key_sealed -> Nullable<Bytea>,
        default_language -> Text,
        manage_url_template -> Nullable<Text>,
        require_email_confirmation -> Bool,
        email_confirmation_hours -> Int4,
        reminder_hours -> Nullable<Int4>,
        personal_data_retention_days -> Int4,
    }
}

diesel::table! {
    form_consent_versions (consent_id, version) {
        consent_id -> Uuid,
        version -> Int4,
        text_ru -> Text,
        text_en -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    form_consents (id) {
        id -> Uuid,
        event_id -> Uuid,
        key -> Text,
        required -> Bool,
        position -> Int4,
        version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    form_options (id) {
        id -> Uuid,
        question_id -> Uuid,
        key -> Text,
        label_ru -> Text,
        label_en -> Text,
        capacity -> Nullable<Int4>,
        position -> Int4,
    }
}

diesel::table! {
    form_questions (id) {
        id -> Uuid,
        event_id -> Uuid,
        key -> Text,
        #[sql_name = "type"]
        type_ -> Text,
        label_ru -> Text,
        label_en -> Text,
        help_ru -> Nullable<Text>,
        help_en -> Nullable<Text>,
        required -> Bool,
        position -> Int4,
        min -> Nullable<Float8>,
        max -> Nullable<Float8>,
        max_length -> Nullable<Int4>,
        max_choices -> Nullable<Int4>,
        categories -> Nullable<Array<Nullable<Text>>>,
        shown_when -> Nullable<Jsonb>,
        personal -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    form_seats (pool, seat_no) {
        pool -> Uuid,
        seat_no -> Int4,
        registration_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    idempotency_keys (event_id, key) {
        event_id -> Uuid,
        key -> Text,
        request_hash -> Bytea,
        registration_id -> Uuid,
        response -> Jsonb,
        token_nonce -> Nullable<Bytea>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    import_rows (import_id, row_number) {
        import_id -> Uuid,
        row_number -> Int4,
        fields -> Jsonb,
        email_normalized -> Nullable<Text>,
        verdict -> Text,
        problems -> Jsonb,
        duplicate_of_registration -> Nullable<Uuid>,
        duplicate_of_row -> Nullable<Int4>,
        outcome -> Nullable<Text>,
        registration_id -> Nullable<Uuid>,
        result -> Nullable<Jsonb>,
    }
}

diesel::table! {
    imports (id) {
        id -> Uuid,
        event_id -> Uuid,
        created_by -> Nullable<Uuid>,
        committed_by -> Nullable<Uuid>,
        file_name -> Nullable<Text>,
        format -> Text,
        column_map -> Jsonb,
        status -> Text,
        over_capacity -> Bool,
        total_rows -> Int4,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        commit_requested_at -> Nullable<Timestamptz>,
        committed_at -> Nullable<Timestamptz>,
        personal_data_erased_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    print_jobs (id) {
        id -> Uuid,
        event_id -> Uuid,
        registration_id -> Uuid,
        reason -> Text,
        status -> Text,
        claimed_by -> Nullable<Uuid>,
        lease_expires_at -> Nullable<Timestamptz>,
        claims -> Int4,
        created_at -> Timestamptz,
        done_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    rate_limits (bucket, client) {
        bucket -> Text,
        client -> Text,
        tat -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Bytea,
        auth_session_id -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        rotated_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    registration_consents (registration_id, consent_key) {
        registration_id -> Uuid,
        consent_key -> Text,
        version -> Int4,
        accepted_at -> Timestamptz,
    }
}

diesel::table! {
    registration_sessions (registration_id, session_id) {
        registration_id -> Uuid,
        session_id -> Uuid,
        status -> Text,
        waitlist_order -> Nullable<Int8>,
        seat_no -> Nullable<Int4>,
        over_capacity -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    registrations (id) {
        id -> Uuid,
        event_id -> Uuid,
        full_name -> Text,
        email -> Text,
        email_normalized -> Text,
        organisation -> Nullable<Text>,
        position -> Nullable<Text>,
        city -> Nullable<Text>,
        phone -> Nullable<Text>,
        category -> Text,
        status -> Text,
        source -> Text,
        manage_token_hash -> Bytea,
        consent_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        cancelled_at -> Nullable<Timestamptz>,
        change_xid -> Int8,
        badge_printed_at -> Nullable<Timestamptz>,
        checked_in_at -> Nullable<Timestamptz>,
        email_rule -> Int2,
        email_shared -> Bool,
        language -> Text,
        token_nonce -> Nullable<Bytea>,
        confirm_by -> Nullable<Timestamptz>,
        answers -> Jsonb,
        category_waitlist_order -> Nullable<Int8>,
        erased_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    session_seats (session_id, seat_no) {
        session_id -> Uuid,
        seat_no -> Int4,
        registration_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    session_speakers (session_id, speaker_id) {
        event_id -> Uuid,
        session_id -> Uuid,
        speaker_id -> Uuid,
        role -> Text,
        position -> Int4,
    }
}

diesel::table! {
    session_waitlists (session_id) {
        session_id -> Uuid,
        last_ticket -> Int8,
        waiting -> Int4,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        event_id -> Uuid,
        title -> Text,
        description -> Nullable<Text>,
        kind -> Text,
        starts_at -> Timestamptz,
        ends_at -> Timestamptz,
        venue_id -> Nullable<Uuid>,
        track_id -> Nullable<Uuid>,
        capacity -> Nullable<Int4>,
        waitlist_enabled -> Bool,
        registration_opens_at -> Nullable<Timestamptz>,
        registration_closes_at -> Nullable<Timestamptz>,
        status -> Text,
        language -> Nullable<Text>,
        tags -> Array<Nullable<Text>>,
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    speakers (id) {
        id -> Uuid,
        event_id -> Uuid,
        full_name -> Text,
        position -> Nullable<Text>,
        organisation -> Nullable<Text>,
        bio -> Nullable<Text>,
        photo_url -> Nullable<Text>,
        email -> Nullable<Text>,
        phone -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    tracks (id) {
        id -> Uuid,
        event_id -> Uuid,
        title -> Text,
        description -> Nullable<Text>,
        colour -> Nullable<Text>,
        position -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        display_name -> Text,
        role -> Text,
        password_hash -> Text,
        disabled -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        email_normalized -> Text,
        email_rule -> Int2,
        email_shared -> Bool,
    }
}

diesel::table! {
    venues (id) {
        id -> Uuid,
        event_id -> Uuid,
        name -> Text,
        city -> Nullable<Text>,
        address -> Nullable<Text>,
        capacity -> Nullable<Int4>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Int8,
        delivery_id -> Uuid,
        attempted_at -> Timestamptz,
        duration_ms -> Int4,
        status_code -> Nullable<Int4>,
        error -> Nullable<Text>,
        response_excerpt -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Uuid,
        seq -> Int8,
        endpoint_id -> Uuid,
        change_id -> Int8,
        changed_at -> Timestamptz,
        kind -> Text,
        registration_id -> Nullable<Uuid>,
        order_key -> Uuid,
        payload -> Text,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        lease_token -> Nullable<Uuid>,
        first_attempt_at -> Nullable<Timestamptz>,
        last_attempt_at -> Nullable<Timestamptz>,
        last_status_code -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        last_duration_ms -> Nullable<Int4>,
        created_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
        failed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Uuid,
        event_id -> Uuid,
        url -> Text,
        description -> Nullable<Text>,
        event_types -> Array<Nullable<Text>>,
        enabled -> Bool,
        disabled_reason -> Nullable<Text>,
        disabled_at -> Nullable<Timestamptz>,
        secret_sealed -> Bytea,
        previous_secret_sealed -> Nullable<Bytea>,
        previous_secret_expires_at -> Nullable<Timestamptz>,
        failing_since -> Nullable<Timestamptz>,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(api_keys -> events (event_id));
diesel::joinable!(api_keys -> users (created_by));
diesel::joinable!(auth_sessions -> users (user_id));
diesel::joinable!(badge_templates -> events (event_id));
diesel::joinable!(changes -> events (event_id));
diesel::joinable!(changes -> registrations (registration_id));
diesel::joinable!(checkins -> events (event_id));
diesel::joinable!(checkins -> registrations (registration_id));
diesel::joinable!(checkins -> sessions (session_id));
diesel::joinable!(email_messages -> events (event_id));
diesel::joinable!(email_messages -> registrations (registration_id));
diesel::joinable!(event_categories -> events (event_id));
diesel::joinable!(event_members -> events (event_id));
diesel::joinable!(event_members -> users (user_id));
diesel::joinable!(event_seats -> events (event_id));
diesel::joinable!(events -> users (created_by));
diesel::joinable!(form_consent_versions -> form_consents (consent_id));
diesel::joinable!(form_consents -> events (event_id));
diesel::joinable!(form_options -> form_questions (question_id));
diesel::joinable!(form_questions -> events (event_id));
diesel::joinable!(import_rows -> imports (import_id));
diesel::joinable!(import_rows -> registrations (registration_id));
diesel::joinable!(imports -> events (event_id));
diesel::joinable!(print_jobs -> events (event_id));
diesel::joinable!(print_jobs -> registrations (registration_id));
diesel::joinable!(refresh_tokens -> auth_sessions (auth_session_id));
diesel::joinable!(registration_consents -> registrations (registration_id));
diesel::joinable!(registration_sessions -> registrations (registration_id));
diesel::joinable!(registrations -> events (event_id));
diesel::joinable!(session_seats -> sessions (session_id));
diesel::joinable!(session_waitlists -> sessions (session_id));
diesel::joinable!(sessions -> events (event_id));
diesel::joinable!(speakers -> events (event_id));
diesel::joinable!(tracks -> events (event_id));
diesel::joinable!(venues -> events (event_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));
diesel::joinable!(webhook_deliveries -> changes (change_id));
diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_endpoints -> events (event_id));
diesel::joinable!(webhook_endpoints -> users (created_by));

diesel::allow_tables_to_appear_in_same_query!(
    api_keys,
    auth_sessions,
    badge_templates,
    change_consumers,
    changes,
    checkins,
    email_messages,
    event_categories,
    event_members,
    event_seats,
    events,
    form_consent_versions,
    form_consents,
    form_options,
    form_questions,
    form_seats,
    idempotency_keys,
    import_rows,
    imports,
    print_jobs,
    rate_limits,
    refresh_tokens,
    registration_consents,
    registration_sessions,
    registrations,
    session_seats,
    session_speakers,
    session_waitlists,
    sessions,
    speakers,
    tracks,
    users,
    venues,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
);

-- Imports of participants from a spreadsheet: a dry run stores the parsed rows and what
-- would happen to each; committing registers them one by one, each row's outcome written
-- in the transaction that registers it, so an interrupted commit resumes where it stopped.
CREATE TABLE imports (
    id                   uuid PRIMARY KEY,
    event_id             uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    created_by           uuid REFERENCES users (id) ON DELETE SET NULL,
    committed_by         uuid REFERENCES users (id) ON DELETE SET NULL,
    file_name            text,
    format               text NOT NULL CHECK (format IN ('csv', 'xlsx')),
    -- The file's columns and the field each was read into ([{column, field}], null field:
    -- ignored).
    column_map           jsonb NOT NULL,
    status               text NOT NULL DEFAULT 'dry_run'
                         CHECK (status IN ('dry_run', 'committing', 'committed')),
    over_capacity        boolean NOT NULL DEFAULT false,
    total_rows           integer NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    expires_at           timestamptz NOT NULL,
    commit_requested_at  timestamptz,
    committed_at         timestamptz
);

CREATE INDEX imports_event_idx ON imports (event_id, id);
CREATE INDEX imports_committing_idx ON imports (commit_requested_at) WHERE status = 'committing';

CREATE TABLE import_rows (
    import_id                 uuid NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    -- The row's line in the spreadsheet (the header is row 1).
    row_number                integer NOT NULL,
    -- The participant's details as read ({full_name, email, …, session_ids}).
    fields                    jsonb NOT NULL,
    email_normalized          text,
    -- The dry run's verdict.
    verdict                   text NOT NULL CHECK (verdict IN ('create', 'duplicate', 'invalid')),
    -- [{column, field, message}] for invalid rows.
    problems                  jsonb NOT NULL DEFAULT '[]',
    duplicate_of_registration uuid,
    duplicate_of_row          integer,
    -- Set when the row is committed, in the registering transaction.
    outcome                   text CHECK (outcome IN ('created', 'duplicate', 'invalid', 'failed')),
    registration_id           uuid REFERENCES registrations (id) ON DELETE SET NULL,
    -- The sessions' outcomes ([{session_id, status, waitlist_position}]) or why it failed
    -- ({code, detail}).
    result                    jsonb,
    PRIMARY KEY (import_id, row_number)
);

CREATE INDEX import_rows_pending_idx ON import_rows (import_id, row_number) WHERE outcome IS NULL;

-- Changes made by committing an import name it as their actor.
ALTER TABLE changes DROP CONSTRAINT changes_actor_check;
ALTER TABLE changes ADD CONSTRAINT changes_actor_check
    CHECK (actor IN ('participant', 'organiser', 'device', 'system', 'import'));

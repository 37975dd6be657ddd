-- How an event's printable badges look: which fields they show, the default layout, a colour
-- and a label per category, and a logo. An event without a row uses the defaults.
CREATE TABLE badge_templates (
    event_id uuid PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    show_organisation boolean NOT NULL DEFAULT true,
    show_position boolean NOT NULL DEFAULT true,
    show_city boolean NOT NULL DEFAULT false,
    show_event_title boolean NOT NULL DEFAULT true,
    layout text NOT NULL DEFAULT 'a6' CHECK (layout IN ('a6', 'a4x4', 'a4x8')),
    -- {"government": "#1F4E9C", ...}: only categories whose colour differs from the default.
    category_colours jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(category_colours) = 'object'),
    -- {"media": "Пресса", ...}: only categories whose label differs from the default.
    category_labels jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(category_labels) = 'object'),
    logo bytea CHECK (octet_length(logo) <= 131072),
    logo_media_type text CHECK (logo_media_type IN ('image/png', 'image/jpeg')),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((logo IS NULL) = (logo_media_type IS NULL))
);

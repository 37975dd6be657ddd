DROP TABLE session_speakers;
DROP TABLE speakers;
DROP TABLE sessions;
DROP FUNCTION session_search_document(text, text, text[]);
DROP TABLE tracks;
DROP TABLE venues;
DROP TABLE event_members;
DROP TABLE events;

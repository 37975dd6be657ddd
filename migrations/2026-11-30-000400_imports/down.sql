UPDATE changes SET actor = 'system', actor_id = NULL WHERE actor = 'import';
ALTER TABLE changes DROP CONSTRAINT changes_actor_check;
ALTER TABLE changes ADD CONSTRAINT changes_actor_check
    CHECK (actor IN ('participant', 'organiser', 'device', 'system'));

DROP TABLE import_rows;
DROP TABLE imports;

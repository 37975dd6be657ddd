DROP FUNCTION change_answers(uuid, jsonb, uuid[], uuid[], boolean);

ALTER TABLE imports DROP COLUMN personal_data_erased_at;

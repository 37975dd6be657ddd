-- When what an import read of people was removed (by the event's erasure or its retention):
-- the retention job looks only at imports not done yet.
ALTER TABLE imports ADD COLUMN personal_data_erased_at timestamptz;

DROP INDEX registrations_erased_idx;

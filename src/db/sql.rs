//! SQL functions diesel does not know about.

use diesel::sql_types::{BigInt, Bytea, Nullable};

diesel::define_sql_function! {
    /// Takes a transaction-scoped advisory lock, shared with other holders of the same key.
    fn pg_advisory_xact_lock_shared(key: BigInt);
}

diesel::define_sql_function! {
    /// Takes a transaction-scoped exclusive advisory lock.
    fn pg_advisory_xact_lock(key: BigInt);
}

diesel::define_sql_function! {
    /// `coalesce` of two byte strings: the first unless it is null.
    #[sql_name = "coalesce"]
    fn coalesce_bytes(x: Nullable<Bytea>, y: Bytea) -> Nullable<Bytea>;
}

//! Integration tests: one binary, each test against its own database cloned from a template
//! that was migrated once.

mod helpers;

mod auth;
mod badges;
mod errors;
mod fixtures;
mod operations;
mod users;

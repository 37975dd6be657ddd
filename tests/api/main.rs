//! Integration tests: one binary, each test against its own database cloned from a template
//! that was migrated once.

mod helpers;

mod answer_lists;
mod answers;
mod auth;
mod badge_pdfs;
mod badges;
mod changes;
mod concurrency;
mod consents;
mod contract;
mod demo;
mod email;
mod errors;
mod events;
mod faults;
mod fixtures;
mod forms;
mod headers;
mod imports;
mod limits;
mod matrix;
mod migrations;
mod operations;
mod privacy;
mod programme;
mod python;
mod registrations;
mod spreadsheets;
mod users;
mod webhooks;
mod widget;

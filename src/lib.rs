//! registrar: an event and business-session registration API.

pub mod access;
pub mod auth;
pub mod badges;
pub mod cli;
pub mod conditional;
pub mod config;
pub mod dates;
pub mod db;
pub mod demo;
pub mod error;
pub mod events;
pub mod extract;
pub mod maintenance;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod pagination;
pub mod patch;
pub mod programme;
pub mod ratelimit;
pub mod registrations;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod users;
pub mod validation;

//! Authentication: password login, access and refresh tokens, and resolving the caller.

mod caller;
pub mod jwt;
pub mod password;
mod routes;
pub mod tokens;

pub use caller::{Caller, DeviceCaller, ParticipantCaller, Scope, UserCaller, invalid_token};
pub use routes::routes;

//! Who may do what: every authorisation decision of the API is made here.

use crate::auth::{Caller, UserCaller};
use crate::error::{ApiError, ApiResult};

/// Any signed-in organiser or admin.
pub fn require_user(caller: &Caller) -> ApiResult<&UserCaller> {
    match caller {
        Caller::User(user) => Ok(user),
        Caller::Anonymous => Err(ApiError::unauthorized("sign in to use this route")),
    }
}

/// Admins only.
pub fn require_admin(caller: &Caller) -> ApiResult<&UserCaller> {
    let user = require_user(caller)?;
    if user.is_admin() {
        Ok(user)
    } else {
        Err(ApiError::forbidden("only admins may use this route"))
    }
}

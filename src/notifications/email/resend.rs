//! Mailing a registration's manage link again, to the address it was made with. The answer
//! is the same whether or not the address has an active registration for the event, so it
//! tells nobody who registered; it is rate-limited per client and per address.
//!
//! A registered address gets a new token: the registration's nonce and digest are replaced,
//! so the link sent before (and a token a frontend received) stops working, and the new link
//! goes to the address alone. This is how the owner of an address takes over a registration
//! someone else made with it.

use actix_web::{HttpRequest, HttpResponse, post, web};
use diesel::sql_types::{Bytea, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::access::{self, EventAction};
use crate::auth::{Caller, tokens};
use crate::changes::{self, Actor, ChangeKind, NewChange};
use crate::email;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Body;
use crate::openapi::{BodyErrors, EventErrors};
use crate::state::{AppState, State};
use crate::validation::Validator;

/// Whose link to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendBody {
    /// The address the registration was made with (compared as registrations compare
    /// addresses).
    #[schema(example = "anna@example.org", max_length = 254)]
    pub email: String,
}

/// Mail the link to manage a registration (or to confirm its address) to the address it was
/// made with, with a new manage token: the previous token stops working.
///
/// Answers 202 alike whether or not the address has an active registration for the event.
#[utoipa::path(
    tag = "registrations",
    params(("event" = String, Path, description = "Event slug or id")),
    request_body = ResendBody,
    responses(
        (status = 202, description = "If the address has an active registration for the event, a new link is on its way to it."),
        (status = 429, description = "`rate_limited`: too many requests from this client or for this address; see `Retry-After`.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors, BodyErrors,
    ),
    security((), ("bearer" = []))
)]
#[post("/events/{event}/registrations/resend")]
pub async fn resend_link(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    body: Body<ResendBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let mut v = Validator::new();
    v.email("email", &body.email);
    v.finish()?;
    let normalised = email::normalise(&body.email);
    let event_id = {
        let mut conn = state.conn().await?;
        access::event(&mut conn, &caller, &path, EventAction::View)
            .await?
            .event
            .id
    };
    state
        .rate_limits
        .check_resend(&state.db, &req, &normalised)
        .await?;
    let mut conn = state.conn().await?;
    renew_tokens(&mut conn, &state, event_id, &normalised).await?;
    Ok(HttpResponse::Accepted().finish())
}

#[derive(diesel::QueryableByName)]
struct Found {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Gives each active registration of the address (one, or more when an address rule change
/// made two the same) a new manage token, and records the change, which mails the link.
async fn renew_tokens(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    event_id: Uuid,
    normalised: &str,
) -> ApiResult<()> {
    let key = state.keys.derive("manage-token");
    conn.transaction::<_, ApiError, _>(async |conn| {
        let found: Vec<Found> = diesel::sql_query(
            "SELECT id FROM registrations \
             WHERE event_id = $1 AND email_normalized = $2 AND status = 'active' \
               AND erased_at IS NULL \
             ORDER BY id FOR NO KEY UPDATE",
        )
        .bind::<SqlUuid, _>(event_id)
        .bind::<Text, _>(normalised)
        .load(conn)
        .await?;
        for Found { id } in &found {
            let mut nonce = [0u8; 32];
            rand::fill(&mut nonce);
            let token = tokens::derived(tokens::MANAGE_PREFIX, &key, &nonce);
            diesel::sql_query(
                "UPDATE registrations SET token_nonce = $2, manage_token_hash = $3, \
                        updated_at = now() WHERE id = $1",
            )
            .bind::<SqlUuid, _>(id)
            .bind::<Bytea, _>(nonce.as_slice())
            .bind::<Bytea, _>(tokens::digest(&token))
            .execute(conn)
            .await?;
        }
        changes::record(
            conn,
            found
                .iter()
                .map(|Found { id }| {
                    NewChange::registration(
                        event_id,
                        *id,
                        None,
                        ChangeKind::RegistrationChanged,
                        Actor::SYSTEM,
                    )
                    .with_details(json!({"fields": ["manage_token"]}))
                })
                .collect(),
        )
        .await
    })
    .await
}

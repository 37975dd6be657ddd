//! Speakers, and who speaks in which session with which role.

use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::access::{self, EventAction, EventContext};
use crate::auth::Caller;
use crate::db::schema::{session_speakers, sessions, speakers};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Body, Query};
use crate::openapi::{BodyErrors, EventErrors};
use crate::pagination::{Page, PageParams};
use crate::patch;
use crate::state::State;
use crate::validation::{Validator, is_email};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_speakers)
        .service(create_speaker)
        .service(get_speaker)
        .service(update_speaker)
        .service(delete_speaker)
        .service(list_session_speakers)
        .service(put_session_speaker)
        .service(remove_session_speaker);
}

crate::text_enum! {
    /// What a speaker does in a session.
    pub enum SpeakerRole {
        Moderator => "moderator",
        Speaker => "speaker",
        Panelist => "panelist",
        GuestOfHonour => "guest_of_honour",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = speakers)]
pub struct Speaker {
    pub id: Uuid,
    pub event_id: Uuid,
    pub full_name: String,
    pub position: Option<String>,
    pub organisation: Option<String>,
    pub bio: Option<String>,
    pub photo_url: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How to reach a speaker; shown to the event's organisers only.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpeakerContact {
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// A person on the programme.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpeakerView {
    pub id: Uuid,
    pub event_id: Uuid,
    #[schema(example = "Роман Дурягин")]
    pub full_name: String,
    #[schema(example = "Заместитель губернатора Мурманской области")]
    pub position: Option<String>,
    pub organisation: Option<String>,
    pub bio: Option<String>,
    pub photo_url: Option<String>,
    /// Present for the event's organisers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub contact: Option<SpeakerContact>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SpeakerView {
    pub fn new(s: Speaker, ctx: &EventContext) -> Self {
        SpeakerView {
            id: s.id,
            event_id: s.event_id,
            full_name: s.full_name,
            position: s.position,
            organisation: s.organisation,
            bio: s.bio,
            photo_url: s.photo_url,
            contact: ctx.sees_private().then_some(SpeakerContact {
                email: s.email,
                phone: s.phone,
            }),
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSpeaker {
    #[schema(max_length = 200)]
    pub full_name: String,
    #[serde(default)]
    #[schema(max_length = 300)]
    pub position: Option<String>,
    #[serde(default)]
    #[schema(max_length = 300)]
    pub organisation: Option<String>,
    #[serde(default)]
    #[schema(max_length = 10000)]
    pub bio: Option<String>,
    /// An `https://` or `http://` URL.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub photo_url: Option<String>,
    /// Visible to organisers only.
    #[serde(default)]
    #[schema(max_length = 254)]
    pub email: Option<String>,
    /// Visible to organisers only.
    #[serde(default)]
    #[schema(max_length = 50)]
    pub phone: Option<String>,
}

/// Changes to a speaker (merge patch).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpeakerPatch {
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    #[schema(max_length = 200)]
    pub full_name: Option<String>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 300)]
    pub position: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 300)]
    pub organisation: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 10000)]
    pub bio: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 2000)]
    pub photo_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 254)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 50)]
    pub phone: Option<Option<String>>,
}

impl SpeakerPatch {
    fn apply(self, s: Speaker) -> NewSpeaker {
        NewSpeaker {
            full_name: self.full_name.unwrap_or(s.full_name),
            position: self.position.unwrap_or(s.position),
            organisation: self.organisation.unwrap_or(s.organisation),
            bio: self.bio.unwrap_or(s.bio),
            photo_url: self.photo_url.unwrap_or(s.photo_url),
            email: self.email.unwrap_or(s.email),
            phone: self.phone.unwrap_or(s.phone),
        }
    }
}

fn validate(s: &NewSpeaker) -> ApiResult<()> {
    let mut v = Validator::new();
    v.line("full_name", &s.full_name, 200);
    v.opt_line("position", s.position.as_deref(), 300);
    v.opt_line("organisation", s.organisation.as_deref(), 300);
    v.opt_text("bio", s.bio.as_deref(), 10000);
    if let Some(url) = &s.photo_url {
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        v.check(
            scheme_ok
                && url.len() <= 2000
                && !url.chars().any(|c| c.is_whitespace() || c.is_control()),
            "photo_url",
            "must be an http(s) URL of at most 2000 characters",
        );
    }
    if let Some(email) = &s.email {
        v.check(is_email(email), "email", "must be an email address");
    }
    v.opt_line("phone", s.phone.as_deref(), 50);
    v.finish()
}

/// Ids of the event's speakers who take part in one of its published sessions: the only
/// speakers the public sees (a speaker of draft sessions only is not announced yet).
fn public_speaker_ids<'a>(
    event_id: Uuid,
) -> session_speakers::BoxedQuery<'a, diesel::pg::Pg, diesel::sql_types::Uuid> {
    session_speakers::table
        .filter(session_speakers::event_id.eq(event_id))
        .filter(
            session_speakers::session_id.eq_any(
                sessions::table
                    .filter(sessions::event_id.eq(event_id))
                    .filter(sessions::status.eq(super::SessionStatus::Published))
                    .select(sessions::id),
            ),
        )
        .select(session_speakers::speaker_id)
        .into_boxed()
}

/// The event's speakers; contact details only for its organisers. The public sees the
/// speakers of published sessions only.
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id"), PageParams),
    responses(
        (status = 200, description = "One page of speakers.", body = Page<SpeakerView>),
        (status = 422, description = "`validation_failed`: bad `limit` or `cursor`.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/speakers")]
async fn list_speakers(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    page: Query<PageParams>,
) -> ApiResult<web::Json<Page<SpeakerView>>> {
    let limit = page.limit()?;
    let after: Option<Uuid> = page.after()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::View).await?;
    let mut query = speakers::table
        .filter(speakers::event_id.eq(ctx.event.id))
        .select(Speaker::as_select())
        .order(speakers::id)
        .limit(limit + 1)
        .into_boxed();
    if !ctx.sees_private() {
        query = query.filter(speakers::id.eq_any(public_speaker_ids(ctx.event.id)));
    }
    if let Some(after) = after {
        query = query.filter(speakers::id.gt(after));
    }
    let rows = query.load(&mut conn).await?;
    Ok(web::Json(
        Page::from_rows(rows, limit, |s| s.id).map(|s| SpeakerView::new(s, &ctx)),
    ))
}

/// Validates and adds a speaker to an event.
pub async fn create(
    conn: &mut diesel_async::AsyncPgConnection,
    event_id: Uuid,
    s: NewSpeaker,
) -> ApiResult<Speaker> {
    validate(&s)?;
    Ok(diesel::insert_into(speakers::table)
        .values((
            speakers::id.eq(Uuid::now_v7()),
            speakers::event_id.eq(event_id),
            speakers::full_name.eq(s.full_name),
            speakers::position.eq(s.position),
            speakers::organisation.eq(s.organisation),
            speakers::bio.eq(s.bio),
            speakers::photo_url.eq(s.photo_url),
            speakers::email.eq(s.email),
            speakers::phone.eq(s.phone),
        ))
        .returning(Speaker::as_returning())
        .get_results(conn)
        .await
        .and_then(crate::db::single)?)
}

/// Add a speaker.
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id")),
    request_body = NewSpeaker,
    responses((status = 201, description = "The speaker was added.", body = SpeakerView), EventErrors, BodyErrors),
    security(("bearer" = []))
)]
#[post("/events/{event}/speakers")]
async fn create_speaker(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: Body<NewSpeaker>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::Edit).await?;
    let speaker = create(&mut conn, ctx.event.id, body.into_inner()).await?;
    state.event_changed(ctx.event.id);
    Ok(HttpResponse::Created().json(SpeakerView::new(speaker, &ctx)))
}

async fn find(
    conn: &mut diesel_async::AsyncPgConnection,
    event_id: Uuid,
    id: Uuid,
) -> ApiResult<Speaker> {
    speakers::table
        .filter(speakers::event_id.eq(event_id))
        .find(id)
        .select(Speaker::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("speaker"))
}

/// One speaker (for the public: only a speaker of a published session).
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id"), ("speaker_id" = Uuid, Path)),
    responses((status = 200, description = "The speaker.", body = SpeakerView), EventErrors),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/speakers/{speaker_id}")]
async fn get_speaker(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<web::Json<SpeakerView>> {
    let (event_ref, id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::View).await?;
    if !ctx.sees_private() {
        let public: bool = diesel::select(diesel::dsl::exists(
            public_speaker_ids(ctx.event.id).filter(session_speakers::speaker_id.eq(id)),
        ))
        .get_results(&mut conn)
        .await
        .and_then(crate::db::single)?;
        if !public {
            return Err(ApiError::not_found("speaker"));
        }
    }
    let speaker = find(&mut conn, ctx.event.id, id).await?;
    Ok(web::Json(SpeakerView::new(speaker, &ctx)))
}

/// Change a speaker (merge patch).
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id"), ("speaker_id" = Uuid, Path)),
    request_body(content = SpeakerPatch, content_type = "application/json"),
    responses((status = 200, description = "The changed speaker.", body = SpeakerView), EventErrors, BodyErrors),
    security(("bearer" = []))
)]
#[patch("/events/{event}/speakers/{speaker_id}")]
async fn update_speaker(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
    body: Body<SpeakerPatch>,
) -> ApiResult<web::Json<SpeakerView>> {
    let (event_ref, id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    let s = body
        .into_inner()
        .apply(find(&mut conn, ctx.event.id, id).await?);
    validate(&s)?;
    let speaker = diesel::update(speakers::table.find(id))
        .set((
            speakers::full_name.eq(s.full_name),
            speakers::position.eq(s.position),
            speakers::organisation.eq(s.organisation),
            speakers::bio.eq(s.bio),
            speakers::photo_url.eq(s.photo_url),
            speakers::email.eq(s.email),
            speakers::phone.eq(s.phone),
            speakers::updated_at.eq(Utc::now()),
        ))
        .returning(Speaker::as_returning())
        .get_results(&mut conn)
        .await
        .and_then(crate::db::single)?;
    state.event_changed(ctx.event.id);
    Ok(web::Json(SpeakerView::new(speaker, &ctx)))
}

/// Delete a speaker (and their places in sessions).
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id"), ("speaker_id" = Uuid, Path)),
    responses((status = 204, description = "The speaker was deleted."), EventErrors),
    security(("bearer" = []))
)]
#[delete("/events/{event}/speakers/{speaker_id}")]
async fn delete_speaker(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (event_ref, id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    let deleted = diesel::delete(
        speakers::table
            .filter(speakers::event_id.eq(ctx.event.id))
            .find(id),
    )
    .execute(&mut conn)
    .await?;
    if deleted == 0 {
        return Err(ApiError::not_found("speaker"));
    }
    state.event_changed(ctx.event.id);
    Ok(HttpResponse::NoContent().finish())
}

/// A speaker's place in a session.
#[derive(Debug, Clone, Serialize, ToSchema, Queryable)]
pub struct SessionSpeakerView {
    pub speaker_id: Uuid,
    pub full_name: String,
    pub position: Option<String>,
    pub organisation: Option<String>,
    pub photo_url: Option<String>,
    pub role: SpeakerRole,
    /// Speakers of a session are listed by this.
    pub order: i32,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionSpeakerBody {
    pub role: SpeakerRole,
    #[serde(default)]
    pub order: Option<i32>,
}

/// Speakers of the given sessions, in order, with the session each belongs to.
pub async fn of_sessions(
    conn: &mut diesel_async::AsyncPgConnection,
    session_ids: &[Uuid],
) -> ApiResult<Vec<(Uuid, SessionSpeakerView)>> {
    Ok(session_speakers::table
        .inner_join(speakers::table)
        .filter(session_speakers::session_id.eq_any(session_ids))
        .order((
            session_speakers::session_id,
            session_speakers::position,
            speakers::full_name,
        ))
        .select((
            session_speakers::session_id,
            (
                speakers::id,
                speakers::full_name,
                speakers::position,
                speakers::organisation,
                speakers::photo_url,
                session_speakers::role,
                session_speakers::position,
            ),
        ))
        .load(conn)
        .await?)
}

/// A session of the event the caller may see.
async fn visible_session(
    conn: &mut diesel_async::AsyncPgConnection,
    ctx: &EventContext,
    session_id: Uuid,
) -> ApiResult<()> {
    let status: Option<super::SessionStatus> = sessions::table
        .filter(sessions::event_id.eq(ctx.event.id))
        .find(session_id)
        .select(sessions::status)
        .first(conn)
        .await
        .optional()?;
    match status {
        Some(super::SessionStatus::Published) => Ok(()),
        Some(_) if ctx.sees_private() => Ok(()),
        _ => Err(ApiError::not_found("session")),
    }
}

/// The speakers of a session, in order.
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id"), ("session_id" = Uuid, Path)),
    responses((status = 200, description = "The session's speakers.", body = Vec<SessionSpeakerView>), EventErrors),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/sessions/{session_id}/speakers")]
async fn list_session_speakers(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<web::Json<Vec<SessionSpeakerView>>> {
    let (event_ref, session_id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::View).await?;
    visible_session(&mut conn, &ctx, session_id).await?;
    let rows = of_sessions(&mut conn, &[session_id]).await?;
    Ok(web::Json(rows.into_iter().map(|(_, s)| s).collect()))
}

/// Puts a speaker of the event on one of its sessions, or changes their role or order.
pub async fn put_on_session(
    conn: &mut diesel_async::AsyncPgConnection,
    event_id: Uuid,
    session_id: Uuid,
    speaker_id: Uuid,
    body: SessionSpeakerBody,
) -> ApiResult<()> {
    let order = body.order.unwrap_or(0);
    let mut v = Validator::new();
    v.range("order", order, -100_000, 100_000);
    v.finish()?;
    find(conn, event_id, speaker_id).await?;
    diesel::insert_into(session_speakers::table)
        .values((
            session_speakers::event_id.eq(event_id),
            session_speakers::session_id.eq(session_id),
            session_speakers::speaker_id.eq(speaker_id),
            session_speakers::role.eq(body.role),
            session_speakers::position.eq(order),
        ))
        .on_conflict((session_speakers::session_id, session_speakers::speaker_id))
        .do_update()
        .set((
            session_speakers::role.eq(body.role),
            session_speakers::position.eq(order),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Put a speaker on a session with a role, or change their role or order.
#[utoipa::path(
    tag = "programme",
    params(
        ("event" = String, Path, description = "Event slug or id"),
        ("session_id" = Uuid, Path),
        ("speaker_id" = Uuid, Path),
    ),
    request_body = SessionSpeakerBody,
    responses(
        (status = 200, description = "The session's speakers, in order.", body = Vec<SessionSpeakerView>),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[put("/events/{event}/sessions/{session_id}/speakers/{speaker_id}")]
async fn put_session_speaker(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid, Uuid)>,
    body: Body<SessionSpeakerBody>,
) -> ApiResult<web::Json<Vec<SessionSpeakerView>>> {
    let (event_ref, session_id, speaker_id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    visible_session(&mut conn, &ctx, session_id).await?;
    put_on_session(
        &mut conn,
        ctx.event.id,
        session_id,
        speaker_id,
        body.into_inner(),
    )
    .await?;
    state.event_changed(ctx.event.id);
    let rows = of_sessions(&mut conn, &[session_id]).await?;
    Ok(web::Json(rows.into_iter().map(|(_, s)| s).collect()))
}

/// Take a speaker off a session.
#[utoipa::path(
    tag = "programme",
    params(
        ("event" = String, Path, description = "Event slug or id"),
        ("session_id" = Uuid, Path),
        ("speaker_id" = Uuid, Path),
    ),
    responses((status = 204, description = "The speaker is no longer on the session."), EventErrors),
    security(("bearer" = []))
)]
#[delete("/events/{event}/sessions/{session_id}/speakers/{speaker_id}")]
async fn remove_session_speaker(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (event_ref, session_id, speaker_id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    let deleted = diesel::delete(
        session_speakers::table
            .filter(session_speakers::event_id.eq(ctx.event.id))
            .find((session_id, speaker_id)),
    )
    .execute(&mut conn)
    .await?;
    if deleted == 0 {
        return Err(ApiError::not_found("session speaker"));
    }
    state.event_changed(ctx.event.id);
    Ok(HttpResponse::NoContent().finish())
}

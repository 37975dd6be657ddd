//! Participant categories of an event (government, business, press, volunteers, students…):
//! names in Russian and English, optional places with an optional waitlist, an optional
//! registration window, public or invite-only. Registrations name their category by `code`.
//!
//! Places are a pool in `form_seats` claimed by the registering functions; here the pool is
//! resized (and freed places given to the category's waitlist) under the category's advisory
//! lock taken exclusively, which registering takes shared.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Localized, LocalizedInput, check_code, check_localized_line};
use crate::access::{self, EventAction};
use crate::auth::Caller;
use crate::dates::Timestamp;
use crate::db::schema::{event_categories, form_questions, registrations};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Body;
use crate::openapi::{BodyErrors, EventErrors};
use crate::patch;
use crate::state::State;
use crate::validation::Validator;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_categories)
        .service(create_category)
        .service(get_category)
        .service(update_category)
        .service(delete_category);
}

/// At most this many categories per event.
const MAX_CATEGORIES: i64 = 100;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = event_categories)]
pub struct Category {
    pub id: Uuid,
    pub event_id: Uuid,
    pub code: String,
    pub name_ru: String,
    pub name_en: String,
    pub capacity: Option<i32>,
    pub waitlist: bool,
    pub registration_opens_at: Option<DateTime<Utc>>,
    pub registration_closes_at: Option<DateTime<Utc>>,
    pub public: bool,
    pub position: i32,
    pub waiting: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Category {
    /// Whether the public may register in it now (its window; invite-only ones never).
    pub fn open_at(&self, now: DateTime<Utc>) -> bool {
        self.public
            && self.registration_opens_at.is_none_or(|t| now >= t)
            && self.registration_closes_at.is_none_or(|t| now < t)
    }
}

/// How many hold a place in each category of an event, and how many places are free.
#[derive(Debug, Clone, QueryableByName)]
pub struct CategoryCount {
    #[diesel(sql_type = Text)]
    pub code: String,
    #[diesel(sql_type = BigInt)]
    pub registered: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub places_left: Option<i64>,
}

/// A participant category.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryView {
    pub id: Uuid,
    pub event_id: Uuid,
    /// What registrations name it by (`category` in their bodies).
    #[schema(example = "business")]
    pub code: String,
    pub name: Localized,
    /// Places in the category; null: unlimited.
    pub capacity: Option<i32>,
    /// When full, registrations wait in line for a place (first come, first served).
    pub waitlist: bool,
    pub registration_opens_at: Option<DateTime<Utc>>,
    pub registration_closes_at: Option<DateTime<Utc>>,
    /// False: invite-only; only the event's organisers register participants in it.
    pub public: bool,
    /// Categories are listed by this, then by code.
    pub position: i32,
    /// Active registrations holding a place in it.
    pub registered: i64,
    /// Active registrations waiting for a place in it.
    pub waiting: i64,
    /// Null when unlimited.
    pub places_left: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl CategoryView {
    fn new(c: Category, count: Option<&CategoryCount>) -> Self {
        CategoryView {
            id: c.id,
            event_id: c.event_id,
            code: c.code,
            name: Localized::new(c.name_ru, c.name_en),
            capacity: c.capacity,
            waitlist: c.waitlist,
            registration_opens_at: c.registration_opens_at,
            registration_closes_at: c.registration_closes_at,
            public: c.public,
            position: c.position,
            registered: count.map_or(0, |n| n.registered),
            waiting: i64::from(c.waiting),
            places_left: c
                .capacity
                .map(|capacity| count.and_then(|n| n.places_left).unwrap_or(capacity.into())),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCategory {
    #[schema(example = "press", pattern = "^[a-z0-9_-]{1,40}$")]
    pub code: String,
    pub name: LocalizedInput,
    /// Places; absent or null: unlimited.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000)]
    pub capacity: Option<i32>,
    #[serde(default)]
    pub waitlist: bool,
    #[serde(default)]
    pub registration_opens_at: Option<Timestamp>,
    #[serde(default)]
    pub registration_closes_at: Option<Timestamp>,
    /// False: invite-only. True when absent.
    #[serde(default)]
    pub public: Option<bool>,
    #[serde(default)]
    pub position: Option<i32>,
}

/// Changes to a category (merge patch). `code` may change only while no registration uses it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryPatch {
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false, pattern = "^[a-z0-9_-]{1,40}$")]
    pub code: Option<String>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub name: Option<LocalizedInput>,
    /// Null: unlimited. Never below the places held.
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<i32>, minimum = 0, maximum = 1000000)]
    pub capacity: Option<Option<i32>>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub waitlist: Option<bool>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<Timestamp>)]
    pub registration_opens_at: Option<Option<Timestamp>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<Timestamp>)]
    pub registration_closes_at: Option<Option<Timestamp>>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub public: Option<bool>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub position: Option<i32>,
}

/// A category as it will be stored, checked.
struct Fields {
    code: String,
    name: Localized,
    capacity: Option<i32>,
    waitlist: bool,
    opens: Option<DateTime<Utc>>,
    closes: Option<DateTime<Utc>>,
    public: bool,
    position: i32,
}

fn validate(f: &Fields) -> ApiResult<()> {
    let mut v = Validator::new();
    check_code(&mut v, "code", &f.code);
    check_localized_line(&mut v, "name", &f.name, 200);
    if let Some(capacity) = f.capacity {
        v.range("capacity", capacity, 0, 1_000_000);
    }
    if let (Some(opens), Some(closes)) = (f.opens, f.closes) {
        v.check(
            opens < closes,
            "registration_closes_at",
            "must be after registration_opens_at",
        );
    }
    v.range("position", f.position, -100_000, 100_000);
    v.finish()
}

/// The event's categories, in their order.
pub async fn of_event(conn: &mut AsyncPgConnection, event_id: Uuid) -> ApiResult<Vec<Category>> {
    Ok(event_categories::table
        .filter(event_categories::event_id.eq(event_id))
        .select(Category::as_select())
        .order((event_categories::position, event_categories::code))
        .load(conn)
        .await?)
}

/// Places held and left in each category of an event.
pub async fn counts(conn: &mut AsyncPgConnection, event_id: Uuid) -> ApiResult<Vec<CategoryCount>> {
    Ok(diesel::sql_query(
        "SELECT c.code, \
                (SELECT count(*) FROM registrations r \
                 WHERE r.event_id = c.event_id AND r.category = c.code AND r.status = 'active' \
                   AND r.category_waitlist_order IS NULL) AS registered, \
                CASE WHEN c.capacity IS NOT NULL THEN \
                    (SELECT count(*) FROM form_seats s \
                     WHERE s.pool = c.id AND s.registration_id IS NULL) END AS places_left \
         FROM event_categories c WHERE c.event_id = $1",
    )
    .bind::<SqlUuid, _>(event_id)
    .load(conn)
    .await?)
}

async fn views(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    categories: Vec<Category>,
) -> ApiResult<Vec<CategoryView>> {
    let counts = counts(conn, event_id).await?;
    Ok(categories
        .into_iter()
        .map(|c| {
            let count = counts.iter().find(|n| n.code == c.code);
            CategoryView::new(c, count)
        })
        .collect())
}

async fn find(conn: &mut AsyncPgConnection, event_id: Uuid, code: &str) -> ApiResult<Category> {
    event_categories::table
        .filter(event_categories::event_id.eq(event_id))
        .filter(event_categories::code.eq(code))
        .select(Category::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("category"))
}

/// The category's advisory lock, exclusively: nobody registers in it meanwhile.
async fn lock_exclusive(conn: &mut AsyncPgConnection, category_id: Uuid) -> ApiResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(form_pool_lock_key($1))")
        .bind::<SqlUuid, _>(category_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Resizes the category's pool to its capacity (`set_form_pool`) and gives free places to
/// those waiting. Needs the category's exclusive lock.
async fn apply_capacity(conn: &mut AsyncPgConnection, category: &Category) -> ApiResult<()> {
    diesel::sql_query("SELECT set_form_pool($1, $2)")
        .bind::<SqlUuid, _>(category.id)
        .bind::<Nullable<Integer>, _>(category.capacity)
        .execute(conn)
        .await
        .map_err(capacity_failed)?;
    diesel::sql_query(
        "SELECT record_category_promotions($1, ARRAY(SELECT fill_category($1, 'system', NULL)), \
                                           'system', NULL)",
    )
    .bind::<SqlUuid, _>(category.id)
    .execute(conn)
    .await?;
    Ok(())
}

fn capacity_failed(error: diesel::result::Error) -> ApiError {
    use diesel::result::{DatabaseErrorKind, Error};
    match &error {
        Error::DatabaseError(DatabaseErrorKind::Unknown, info)
            if info.message() == "capacity_below_taken" =>
        {
            let taken: i64 = info.details().and_then(|d| d.parse().ok()).unwrap_or(0);
            ApiError::conflict(
                "capacity_below_registered",
                format!("{taken} registrations hold a place; the capacity cannot be lower"),
            )
            .with("registered", taken)
            .with("field", "capacity")
        }
        _ => error.into(),
    }
}

fn code_taken(error: diesel::result::Error) -> ApiError {
    match crate::db::violated_constraint(&error) {
        Some("event_categories_event_id_code_key") => {
            ApiError::conflict("category_exists", "the event has a category with this code")
                .with("field", "code")
        }
        _ => error.into(),
    }
}

async fn in_use(conn: &mut AsyncPgConnection, event_id: Uuid, code: &str) -> ApiResult<bool> {
    Ok(diesel::select(diesel::dsl::exists(
        registrations::table
            .filter(registrations::event_id.eq(event_id))
            .filter(registrations::category.eq(code)),
    ))
    .get_results(conn)
    .await
    .and_then(crate::db::single)?)
}

fn category_in_use() -> ApiError {
    ApiError::conflict(
        "category_in_use",
        "registrations name this category: its code cannot change and it cannot be deleted",
    )
    .with("field", "code")
}

/// Refuses to let the category's code go (a new code, or deletion) while registrations name
/// it or questions are asked of it.
async fn check_unnamed(conn: &mut AsyncPgConnection, event_id: Uuid, code: &str) -> ApiResult<()> {
    if in_use(conn, event_id, code).await? {
        return Err(category_in_use());
    }
    let questions: Vec<String> = form_questions::table
        .filter(form_questions::event_id.eq(event_id))
        .filter(form_questions::categories.contains(vec![Some(code)]))
        .order((form_questions::position, form_questions::key))
        .select(form_questions::key)
        .load(conn)
        .await?;
    if !questions.is_empty() {
        return Err(ApiError::conflict(
            "category_in_use",
            format!(
                "questions are asked of this category ({}): take it out of their categories \
                 first",
                questions.join(", ")
            ),
        )
        .with("field", "code")
        .with("questions", questions));
    }
    Ok(())
}

/// The event's participant categories, in their order (invite-only ones for its organisers
/// only).
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id")),
    responses(
        (status = 200, description = "The categories.", body = Vec<CategoryView>),
        EventErrors,
    ),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/categories")]
async fn list_categories(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<web::Json<Vec<CategoryView>>> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::View).await?;
    let mut categories = of_event(&mut conn, ctx.event.id).await?;
    if !ctx.sees_private() {
        categories.retain(|c| c.public);
    }
    Ok(web::Json(views(&mut conn, ctx.event.id, categories).await?))
}

/// Add a participant category.
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id")),
    request_body = NewCategory,
    responses(
        (status = 201, description = "The category was added.", body = CategoryView),
        (status = 409, description = "`category_exists`: the event has a category with this code. \
            `too_many_categories`: the event has 100.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events/{event}/categories")]
async fn create_category(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: Body<NewCategory>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let fields = Fields {
        code: body.code,
        name: body.name.into(),
        capacity: body.capacity,
        waitlist: body.waitlist,
        opens: body.registration_opens_at.map(Timestamp::utc),
        closes: body.registration_closes_at.map(Timestamp::utc),
        public: body.public.unwrap_or(true),
        position: body.position.unwrap_or(0),
    };
    validate(&fields)?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::Edit).await?;
    let event_id = ctx.event.id;
    let category = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let existing: i64 = event_categories::table
                .filter(event_categories::event_id.eq(event_id))
                .count()
                .get_results(conn)
                .await
                .and_then(crate::db::single)?;
            if existing >= MAX_CATEGORIES {
                return Err(ApiError::conflict(
                    "too_many_categories",
                    format!("an event has at most {MAX_CATEGORIES} categories"),
                ));
            }
            let category: Category = diesel::insert_into(event_categories::table)
                .values((
                    event_categories::id.eq(Uuid::now_v7()),
                    event_categories::event_id.eq(event_id),
                    event_categories::code.eq(&fields.code),
                    event_categories::name_ru.eq(&fields.name.ru),
                    event_categories::name_en.eq(&fields.name.en),
                    event_categories::capacity.eq(fields.capacity),
                    event_categories::waitlist.eq(fields.waitlist),
                    event_categories::registration_opens_at.eq(fields.opens),
                    event_categories::registration_closes_at.eq(fields.closes),
                    event_categories::public.eq(fields.public),
                    event_categories::position.eq(fields.position),
                ))
                .returning(Category::as_returning())
                .get_results(conn)
                .await
                .and_then(crate::db::single)
                .map_err(code_taken)?;
            apply_capacity(conn, &category).await?;
            Ok(category)
        })
        .await?;
    state.event_changed(event_id);
    let view = views(&mut conn, event_id, vec![category]).await?.remove(0);
    Ok(HttpResponse::Created().json(view))
}

/// One category (an invite-only one for the event's organisers only).
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id"), ("code" = String, Path, description = "The category's code")),
    responses((status = 200, description = "The category.", body = CategoryView), EventErrors),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/categories/{code}")]
async fn get_category(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<web::Json<CategoryView>> {
    let (event_ref, code) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::View).await?;
    let category = find(&mut conn, ctx.event.id, &code).await?;
    if !category.public && !ctx.sees_private() {
        return Err(ApiError::not_found("category"));
    }
    Ok(web::Json(
        views(&mut conn, ctx.event.id, vec![category])
            .await?
            .remove(0),
    ))
}

/// Change a category (merge patch). A higher capacity, or none, gives places to those
/// waiting at once, first in line first.
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id"), ("code" = String, Path, description = "The category's code")),
    request_body(content = CategoryPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed category.", body = CategoryView),
        (status = 409, description = "`category_in_use`: the code of a category registrations name, or questions are asked of, cannot change. \
            `category_exists`: another category has this code. \
            `capacity_below_registered`: more registrations hold a place than the new capacity (`registered`). \
            `waitlist_not_empty`: registrations wait in the waitlist being turned off.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[patch("/events/{event}/categories/{code}")]
async fn update_category(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: Body<CategoryPatch>,
) -> ApiResult<web::Json<CategoryView>> {
    let (event_ref, code) = path.into_inner();
    let body = body.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    let event_id = ctx.event.id;
    let category = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let current = find(conn, event_id, &code).await?;
            lock_exclusive(conn, current.id).await?;
            let current = find(conn, event_id, &code).await?;
            let fields = Fields {
                code: body.code.clone().unwrap_or_else(|| current.code.clone()),
                name: body.name.clone().map_or_else(
                    || Localized::new(&current.name_ru, &current.name_en),
                    Into::into,
                ),
                capacity: body.capacity.unwrap_or(current.capacity),
                waitlist: body.waitlist.unwrap_or(current.waitlist),
                opens: body
                    .registration_opens_at
                    .map_or(current.registration_opens_at, |at| at.map(Timestamp::utc)),
                closes: body
                    .registration_closes_at
                    .map_or(current.registration_closes_at, |at| at.map(Timestamp::utc)),
                public: body.public.unwrap_or(current.public),
                position: body.position.unwrap_or(current.position),
            };
            validate(&fields)?;
            if fields.code != current.code {
                check_unnamed(conn, event_id, &current.code).await?;
            }
            if !fields.waitlist && current.waiting > 0 {
                return Err(ApiError::conflict(
                    "waitlist_not_empty",
                    format!(
                        "{} registrations wait for a place; raise the capacity first",
                        current.waiting
                    ),
                )
                .with("field", "waitlist"));
            }
            let category: Category = diesel::update(event_categories::table.find(current.id))
                .set((
                    event_categories::code.eq(&fields.code),
                    event_categories::name_ru.eq(&fields.name.ru),
                    event_categories::name_en.eq(&fields.name.en),
                    event_categories::capacity.eq(fields.capacity),
                    event_categories::waitlist.eq(fields.waitlist),
                    event_categories::registration_opens_at.eq(fields.opens),
                    event_categories::registration_closes_at.eq(fields.closes),
                    event_categories::public.eq(fields.public),
                    event_categories::position.eq(fields.position),
                    event_categories::updated_at.eq(Utc::now()),
                ))
                .returning(Category::as_returning())
                .get_results(conn)
                .await
                .and_then(crate::db::single)
                .map_err(code_taken)?;
            if category.capacity != current.capacity {
                apply_capacity(conn, &category).await?;
            }
            find(conn, event_id, &category.code).await
        })
        .await?;
    state.event_changed(event_id);
    Ok(web::Json(
        views(&mut conn, event_id, vec![category]).await?.remove(0),
    ))
}

/// Delete a category no registration names.
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id"), ("code" = String, Path, description = "The category's code")),
    responses(
        (status = 204, description = "The category was deleted."),
        (status = 409, description = "`category_in_use`: registrations (cancelled ones too) name it, or questions are asked of it (`questions`: their keys).",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[delete("/events/{event}/categories/{code}")]
async fn delete_category(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (event_ref, code) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    let event_id = ctx.event.id;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let category = find(conn, event_id, &code).await?;
        lock_exclusive(conn, category.id).await?;
        check_unnamed(conn, event_id, &category.code).await?;
        diesel::sql_query("DELETE FROM form_seats WHERE pool = $1")
            .bind::<SqlUuid, _>(category.id)
            .execute(conn)
            .await?;
        diesel::delete(event_categories::table.find(category.id))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await?;
    state.event_changed(event_id);
    Ok(HttpResponse::NoContent().finish())
}

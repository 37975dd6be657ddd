//! The public programme: published sessions grouped by day in the event's time zone, with
//! their track, venue, speakers and seats left; as JSON and as iCalendar.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, get, web};
use chrono::{DateTime, Days, FixedOffset, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::cache::{Cached, Lookup, ProgrammeCache};
use super::sessions::Session;
use super::speakers::{SessionSpeakerView, of_sessions};
use super::{SessionKind, SessionStatus, start_of_day};
use crate::access::{self, EventAction};
use crate::auth::Caller;
use crate::conditional::{etag_header, is_fresh};
use crate::dates::Day;
use crate::db::schema::{session_speakers, sessions, tracks, venues};
use crate::error::{ApiError, ApiResult, Problem};
use crate::events::{Event, EventStatus};
use crate::extract::Query;
use crate::openapi::EventErrors;
use crate::registrations::counts::{self, SessionCounts};
use crate::state::State;
use crate::validation::Validator;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(programme).service(programme_ics);
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProgrammeParams {
    /// Only sessions of this track.
    pub track: Option<Uuid>,
    /// Only sessions starting on this day (in the event's time zone).
    pub day: Option<Day>,
    /// Only sessions in this venue.
    pub venue: Option<Uuid>,
    /// Only sessions this speaker takes part in.
    pub speaker: Option<Uuid>,
    pub kind: Option<SessionKind>,
    /// Full-text search in titles, descriptions and tags, Russian and English, by word
    /// stems and prefixes («ё» and «е» are the same letter here).
    #[param(max_length = 200)]
    pub q: Option<String>,
}

impl ProgrammeParams {
    fn cache_key(&self, format: &str, event: &str) -> String {
        format!(
            "{format}|{event}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.track, self.day, self.venue, self.speaker, self.kind, self.q
        )
    }
}

/// The event, as the programme shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgrammeEvent {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub time_zone: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub city: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgrammeTrack {
    pub id: Uuid,
    pub title: String,
    pub colour: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgrammeVenue {
    pub id: Uuid,
    pub name: String,
    pub city: Option<String>,
    pub address: Option<String>,
}

/// A session as the public programme shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgrammeSession {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub kind: SessionKind,
    pub status: SessionStatus,
    #[schema(value_type = String, format = DateTime, example = "2026-04-24T11:00:00+03:00")]
    pub starts_at: DateTime<FixedOffset>,
    #[schema(value_type = String, format = DateTime, example = "2026-04-24T13:00:00+03:00")]
    pub ends_at: DateTime<FixedOffset>,
    pub language: Option<String>,
    pub tags: Vec<String>,
    pub track: Option<ProgrammeTrack>,
    pub venue: Option<ProgrammeVenue>,
    pub speakers: Vec<SessionSpeakerView>,
    /// Seats; null: unlimited.
    pub capacity: Option<i32>,
    /// Seats not yet taken; null when unlimited.
    pub seats_left: Option<i64>,
    pub waitlist_enabled: bool,
    /// How many registrations wait for a seat.
    pub waitlisted: i64,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProgrammeDay {
    /// The day, in the event's time zone.
    pub date: NaiveDate,
    pub sessions: Vec<ProgrammeSession>,
}

/// The public programme of an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct Programme {
    pub event: ProgrammeEvent,
    pub days: Vec<ProgrammeDay>,
}

/// Words of a search as a prefix query: `волонтёр движ` → `волонтер:* & движ:*`.
fn tsquery(q: &str) -> Option<String> {
    let words: Vec<String> = q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(10)
        .map(|w| format!("{}:*", w.to_lowercase().replace('ё', "е")))
        .collect();
    (!words.is_empty()).then(|| words.join(" & "))
}

/// Published sessions of the event, filtered.
async fn published_sessions(
    conn: &mut AsyncPgConnection,
    event: &Event,
    params: &ProgrammeParams,
) -> ApiResult<Vec<Session>> {
    let mut query = sessions::table
        .filter(sessions::event_id.eq(event.id))
        .filter(sessions::status.eq(SessionStatus::Published))
        .select(Session::as_select())
        .order((sessions::starts_at, sessions::id))
        .into_boxed();
    if let Some(track) = params.track {
        query = query.filter(sessions::track_id.eq(track));
    }
    if let Some(venue) = params.venue {
        query = query.filter(sessions::venue_id.eq(venue));
    }
    if let Some(kind) = params.kind {
        query = query.filter(sessions::kind.eq(kind));
    }
    if let Some(day) = params.day.map(Day::get) {
        let tz = event.tz();
        let next = day.checked_add_days(Days::new(1)).unwrap_or(day);
        query = query
            .filter(sessions::starts_at.ge(start_of_day(tz, day)))
            .filter(sessions::starts_at.lt(start_of_day(tz, next)));
    }
    if let Some(speaker) = params.speaker {
        query = query.filter(
            sessions::id.eq_any(
                session_speakers::table
                    .filter(session_speakers::speaker_id.eq(speaker))
                    .select(session_speakers::session_id),
            ),
        );
    }
    if let Some(q) = params.q.as_deref().and_then(tsquery) {
        query = query.filter(
            diesel::dsl::sql::<Bool>(
                "session_search_document(sessions.title, sessions.description, sessions.tags) \
                 @@ to_tsquery('russian', ",
            )
            .bind::<Text, _>(q)
            .sql(")"),
        );
    }
    Ok(query.load(conn).await?)
}

/// Sessions with their track, venue, speakers and counts.
pub async fn entries_for(
    conn: &mut AsyncPgConnection,
    event: &Event,
    list: Vec<Session>,
) -> ApiResult<Vec<ProgrammeSession>> {
    entries(conn, event, list, true).await
}

/// Sessions with their track, venue and speakers, for those who need no counts (a mail to a
/// participant): counting a popular session's places costs more than all the rest. Their
/// `seats_left` and `waitlisted` are not filled in (null and 0).
pub async fn entries_without_counts(
    conn: &mut AsyncPgConnection,
    event: &Event,
    list: Vec<Session>,
) -> ApiResult<Vec<ProgrammeSession>> {
    entries(conn, event, list, false).await
}

async fn entries(
    conn: &mut AsyncPgConnection,
    event: &Event,
    list: Vec<Session>,
    with_counts: bool,
) -> ApiResult<Vec<ProgrammeSession>> {
    let ids: Vec<Uuid> = list.iter().map(|s| s.id).collect();
    let track_ids: Vec<Uuid> = list.iter().filter_map(|s| s.track_id).collect();
    let venue_ids: Vec<Uuid> = list.iter().filter_map(|s| s.venue_id).collect();
    let track_map: HashMap<Uuid, ProgrammeTrack> = tracks::table
        .filter(tracks::id.eq_any(&track_ids))
        .select((tracks::id, tracks::title, tracks::colour))
        .load::<(Uuid, String, Option<String>)>(conn)
        .await?
        .into_iter()
        .map(|(id, title, colour)| (id, ProgrammeTrack { id, title, colour }))
        .collect();
    let venue_map: HashMap<Uuid, ProgrammeVenue> = venues::table
        .filter(venues::id.eq_any(&venue_ids))
        .select((venues::id, venues::name, venues::city, venues::address))
        .load::<(Uuid, String, Option<String>, Option<String>)>(conn)
        .await?
        .into_iter()
        .map(|(id, name, city, address)| {
            (
                id,
                ProgrammeVenue {
                    id,
                    name,
                    city,
                    address,
                },
            )
        })
        .collect();
    let mut speaker_map: HashMap<Uuid, Vec<SessionSpeakerView>> = HashMap::new();
    for (session_id, speaker) in of_sessions(conn, &ids).await? {
        speaker_map.entry(session_id).or_default().push(speaker);
    }
    let count_map = if with_counts {
        counts::for_sessions(conn, &ids).await?
    } else {
        HashMap::new()
    };
    let tz = event.tz();
    Ok(list
        .into_iter()
        .map(|s| {
            let c = count_map.get(&s.id).copied().unwrap_or_default();
            ProgrammeSession {
                tags: s.tags(),
                track: s.track_id.and_then(|id| track_map.get(&id).cloned()),
                venue: s.venue_id.and_then(|id| venue_map.get(&id).cloned()),
                speakers: speaker_map.remove(&s.id).unwrap_or_default(),
                seats_left: if with_counts {
                    SessionCounts::seats_left(&c, s.capacity)
                } else {
                    None
                },
                waitlisted: c.waitlisted,
                id: s.id,
                title: s.title,
                description: s.description,
                kind: s.kind,
                status: s.status,
                starts_at: s.starts_at.with_timezone(&tz).fixed_offset(),
                ends_at: s.ends_at.with_timezone(&tz).fixed_offset(),
                language: s.language,
                capacity: s.capacity,
                waitlist_enabled: s.waitlist_enabled,
                updated_at: s.updated_at,
            }
        })
        .collect())
}

fn validate(params: &ProgrammeParams) -> ApiResult<()> {
    let mut v = Validator::new();
    v.opt_line("q", params.q.as_deref(), 200);
    v.finish()
}

enum Format {
    Json,
    Calendar,
}

/// Renders the programme as the caller may see it; also tells whether it is public.
async fn render(
    state: &State,
    caller: &Caller,
    event_ref: &str,
    params: &ProgrammeParams,
    format: &Format,
) -> ApiResult<(Arc<Cached>, bool)> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, caller, event_ref, EventAction::View).await?;
    let event = ctx.event;
    let list = published_sessions(&mut conn, &event, params).await?;
    let entries = entries_for(&mut conn, &event, list).await?;
    drop(conn);
    let body = match format {
        Format::Json => {
            serde_json::to_vec(&group_by_day(&event, entries)).map_err(ApiError::internal)?
        }
        Format::Calendar => super::ics::calendar(&event, &entries).into_bytes(),
    };
    let digest = Sha256::digest(&body);
    let etag = format!("\"p{}\"", hex::encode(&digest[..12]));
    let public = event.status == EventStatus::Published;
    Ok((Arc::new(Cached::new(event.id, etag, body.into())), public))
}

/// Renders (or takes from the cache) the programme, and answers with it or with 304.
async fn serve(
    state: State,
    caller: Caller,
    req: HttpRequest,
    event_ref: &str,
    params: ProgrammeParams,
    format: Format,
) -> ApiResult<HttpResponse> {
    validate(&params)?;
    let key = params.cache_key(
        match format {
            Format::Json => "json",
            Format::Calendar => "ics",
        },
        event_ref,
    );
    let (rendered, public) = match state.caches.get::<ProgrammeCache>().lookup(&key) {
        Lookup::Hit(hit) => (hit, true),
        Lookup::Build(old) => {
            let built = render(&state, &caller, event_ref, &params, &format).await;
            let (rendered, public) = match built {
                Ok(built) => built,
                Err(error) => {
                    if let Some(old) = old {
                        if error.status() == actix_web::http::StatusCode::NOT_FOUND {
                            // Unpublished or gone: the old copy must not be served either.
                            state.event_changed(old.event_id);
                        } else {
                            old.refresh_failed();
                        }
                    }
                    return Err(error);
                }
            };
            if public {
                state
                    .caches
                    .get::<ProgrammeCache>()
                    .put(key, rendered.clone());
            }
            (rendered, public)
        }
    };
    let cache_control = HeaderValue::from_static(if public {
        "public, max-age=5, stale-while-revalidate=30"
    } else {
        "private, no-cache"
    });
    if is_fresh(&req, &rendered.etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header(etag_header(&rendered.etag))
            .insert_header((header::CACHE_CONTROL, cache_control))
            .finish());
    }
    let content_type = match format {
        Format::Json => "application/json",
        Format::Calendar => "text/calendar; charset=utf-8",
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(etag_header(&rendered.etag))
        .insert_header((header::CACHE_CONTROL, cache_control))
        .body(rendered.body.clone()))
}

fn group_by_day(event: &Event, entries: Vec<ProgrammeSession>) -> Programme {
    let mut days: BTreeMap<NaiveDate, Vec<ProgrammeSession>> = BTreeMap::new();
    for entry in entries {
        days.entry(entry.starts_at.date_naive())
            .or_default()
            .push(entry);
    }
    Programme {
        event: ProgrammeEvent {
            id: event.id,
            slug: event.slug.clone(),
            title: event.title.clone(),
            time_zone: event.time_zone.clone(),
            starts_on: event.starts_on,
            ends_on: event.ends_on,
            city: event.city.clone(),
        },
        days: days
            .into_iter()
            .map(|(date, sessions)| ProgrammeDay { date, sessions })
            .collect(),
    }
}

/// The public programme: published sessions by day, with tracks, venues, speakers and
/// seats left. Cacheable: send the `ETag` back as `If-None-Match` to get 304.
#[utoipa::path(
    tag = "programme",
    params(
        ("event" = String, Path, description = "Event slug or id"),
        ProgrammeParams,
        ("If-None-Match" = Option<String>, Header, description = "ETag of a copy the caller holds; 304 when it is current"),
    ),
    responses(
        (status = 200, description = "The programme.", body = Programme,
         headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "The copy named by `If-None-Match` is current.",
         headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 400, description = "`invalid_query`: an unknown parameter or a malformed value.",
         body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `q` is longer than 200 characters.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/programme")]
async fn programme(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    params: Query<ProgrammeParams>,
) -> ApiResult<HttpResponse> {
    serve(state, caller, req, &path, params.into_inner(), Format::Json).await
}

/// The public programme as an iCalendar file (RFC 5545) with the event's time zone.
#[utoipa::path(
    tag = "programme",
    params(
        ("event" = String, Path, description = "Event slug or id"),
        ProgrammeParams,
        ("If-None-Match" = Option<String>, Header, description = "ETag of a copy the caller holds; 304 when it is current"),
    ),
    responses(
        (status = 200, description = "The programme as a calendar.", body = String, content_type = "text/calendar",
         headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "The copy named by `If-None-Match` is current.",
         headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 400, description = "`invalid_query`: an unknown parameter or a malformed value.",
         body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `q` is longer than 200 characters.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/programme.ics")]
async fn programme_ics(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    params: Query<ProgrammeParams>,
) -> ApiResult<HttpResponse> {
    serve(
        state,
        caller,
        req,
        &path,
        params.into_inner(),
        Format::Calendar,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_become_prefix_queries_with_e_for_yo() {
        assert_eq!(
            tsquery("Волонтёр движ").as_deref(),
            Some("волонтер:* & движ:*")
        );
        assert_eq!(tsquery("  ,;!  "), None);
        assert_eq!(tsquery("a'b:*|c").as_deref(), Some("a:* & b:* & c:*"));
    }
}

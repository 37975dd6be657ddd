//! Per event, how its printable badges look: which fields they show, the default layout, a
//! colour and a label per category, and a logo (PNG or JPEG, up to 128 KiB, checked to decode
//! before it is stored). An event that never set one gets the defaults.

use std::collections::BTreeMap;

use actix_web::{get, put, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::render::{Design, Layout, Logo};
use crate::access::{self, EventAction};
use crate::auth::Caller;
use crate::db::schema::badge_templates;
use crate::error::{ApiError, ApiResult};
use crate::events::{Event, Language};
use crate::extract::Body;
use crate::forms::categories::{self, Category};
use crate::openapi::{BodyErrors, EventErrors};
use crate::state::State;
use crate::validation::Validator;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(get_template).service(put_template);
}

/// The largest logo, in bytes.
pub const MAX_LOGO_BYTES: usize = 128 * 1024;
/// The largest logo, in pixels each way.
const MAX_LOGO_PIXELS: u32 = 4000;
const MAX_LABEL_CHARS: usize = 40;

/// Colours of the built-in categories' bands, and a palette for the event's own categories.
fn default_colour(category: &Category) -> String {
    const PALETTE: [&str; 8] = [
        "#1F4E9C", "#1E8449", "#D68910", "#C0392B", "#6C3483", "#117A65", "#A04000", "#2E4053",
    ];
    match category.code.as_str() {
        "government" => "#1F4E9C",
        "business" => "#1E8449",
        "nonprofit" => "#D68910",
        "media" => "#C0392B",
        "other" => "#5D6D7E",
        _ => PALETTE[category.position.unsigned_abs() as usize % PALETTE.len()],
    }
    .to_owned()
}

/// A category's band says its name in the event's language.
fn default_label(category: &Category, language: Language) -> String {
    match language {
        Language::Ru => category.name_ru.clone(),
        Language::En => category.name_en.clone(),
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = badge_templates, treat_none_as_null = true)]
struct TemplateRow {
    event_id: Uuid,
    show_organisation: bool,
    show_position: bool,
    show_city: bool,
    show_event_title: bool,
    layout: String,
    category_colours: serde_json::Value,
    category_labels: serde_json::Value,
    logo: Option<Vec<u8>>,
    logo_media_type: Option<String>,
    updated_at: DateTime<Utc>,
}

/// Which fields the badges show; the name and the QR code always are.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BadgeFields {
    pub organisation: bool,
    pub position: bool,
    pub city: bool,
    /// The event's name at the top.
    pub event_title: bool,
}

/// Which fields the badges show; the name and the QR code always are.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBadgeFields {
    pub organisation: bool,
    pub position: bool,
    pub city: bool,
    /// The event's name at the top.
    pub event_title: bool,
}

/// A logo image.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BadgeLogo {
    /// `image/png` or `image/jpeg`.
    pub media_type: String,
    /// The image, base64 (standard alphabet).
    pub data: String,
}

/// A logo image.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBadgeLogo {
    /// `image/png` or `image/jpeg`.
    pub media_type: String,
    /// The image, base64 (standard alphabet), at most 128 KiB decoded.
    pub data: String,
}

/// How the event's badges look.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BadgeTemplate {
    pub fields: BadgeFields,
    /// The layout `badges.pdf` uses when none is asked for.
    pub layout: Layout,
    /// The band colour of every category, `#RRGGBB`.
    #[schema(example = json!({"government": "#1F4E9C", "business": "#1E8449", "nonprofit": "#D68910", "media": "#C0392B", "other": "#5D6D7E"}))]
    pub category_colours: BTreeMap<String, String>,
    /// The band label of every category (in the event's language unless set).
    pub category_labels: BTreeMap<String, String>,
    pub logo: Option<BadgeLogo>,
    /// When it was last changed; absent while the event uses the defaults.
    pub updated_at: Option<DateTime<Utc>>,
}

/// A new template: it replaces the event's whole template; what is left out takes its
/// default.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBadgeTemplate {
    /// All shown but the city when absent.
    #[serde(default)]
    pub fields: Option<NewBadgeFields>,
    /// `a6` when absent.
    #[serde(default)]
    pub layout: Option<Layout>,
    /// Colours of the categories that should not have the default, `#RRGGBB`.
    #[serde(default)]
    pub category_colours: BTreeMap<String, String>,
    /// Labels of the categories that should not have the default, 1 to 40 characters.
    #[serde(default)]
    pub category_labels: BTreeMap<String, String>,
    /// No logo when absent.
    #[serde(default)]
    pub logo: Option<NewBadgeLogo>,
}

fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::A6 => "a6",
        Layout::A4x4 => "a4x4",
        Layout::A4x8 => "a4x8",
    }
}

fn parse_layout(name: &str) -> Layout {
    match name {
        "a4x4" => Layout::A4x4,
        "a4x8" => Layout::A4x8,
        _ => Layout::A6,
    }
}

/// `#RRGGBB` as bytes.
pub fn parse_colour(text: &str) -> Option<[u8; 3]> {
    let hex = text.strip_prefix('#').filter(|h| h.len() == 6)?;
    let mut colour = [0; 3];
    for (i, byte) in colour.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(colour)
}

/// Checks that the image decodes whole as what it claims to be, within the size limits.
fn check_logo(media_type: &str, bytes: &[u8]) -> Result<(), String> {
    let (width, height) = match media_type {
        "image/png" => {
            let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
            let mut reader = decoder
                .read_info()
                .map_err(|e| format!("is not a PNG image: {e}"))?;
            let mut buffer = vec![0; reader.output_buffer_size().ok_or("is too large")?];
            let info = reader
                .next_frame(&mut buffer)
                .map_err(|e| format!("is not a whole PNG image: {e}"))?;
            (info.width, info.height)
        }
        "image/jpeg" => {
            let mut decoder =
                zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(bytes));
            decoder
                .decode()
                .map_err(|e| format!("is not a whole JPEG image: {e:?}"))?;
            let (width, height) = decoder.dimensions().ok_or("is not a JPEG image")?;
            (width as u32, height as u32)
        }
        _ => return Err("must be image/png or image/jpeg".to_owned()),
    };
    if width == 0 || height == 0 || width > MAX_LOGO_PIXELS || height > MAX_LOGO_PIXELS {
        return Err(format!("must be at most {MAX_LOGO_PIXELS} pixels each way"));
    }
    Ok(())
}

impl NewBadgeTemplate {
    fn validate(&self, categories: &[Category]) -> ApiResult<Option<Vec<u8>>> {
        let known = |code: &str| categories.iter().any(|c| c.code == code);
        let mut v = Validator::new();
        for (category, colour) in &self.category_colours {
            let field = format!("category_colours.{category}");
            if !known(category) {
                v.error(field, "is not a category");
            } else if parse_colour(colour).is_none() {
                v.error(field, "must be a colour written #RRGGBB");
            }
        }
        for (category, label) in &self.category_labels {
            let field = format!("category_labels.{category}");
            if !known(category) {
                v.error(field, "is not a category");
            } else {
                v.line(&field, label, MAX_LABEL_CHARS);
            }
        }
        let mut logo = None;
        if let Some(given) = &self.logo {
            match STANDARD.decode(given.data.as_bytes()) {
                Err(_) => v.error("logo.data", "must be base64"),
                Ok(bytes) if bytes.len() > MAX_LOGO_BYTES => v.error(
                    "logo.data",
                    format!("must be at most {MAX_LOGO_BYTES} bytes decoded"),
                ),
                Ok(bytes) => match check_logo(&given.media_type, &bytes) {
                    Ok(()) => logo = Some(bytes),
                    Err(message) if message.starts_with("must be image") => {
                        v.error("logo.media_type", message)
                    }
                    Err(message) => v.error("logo.data", message),
                },
            }
        }
        v.finish()?;
        Ok(logo)
    }
}

/// The event's stored template, if it has one.
async fn stored(conn: &mut AsyncPgConnection, event_id: Uuid) -> ApiResult<Option<TemplateRow>> {
    Ok(badge_templates::table
        .find(event_id)
        .select(TemplateRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

fn overrides(value: &serde_json::Value) -> BTreeMap<String, String> {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

fn view(event: &Event, categories: &[Category], row: Option<&TemplateRow>) -> BadgeTemplate {
    let colours = row
        .map(|r| overrides(&r.category_colours))
        .unwrap_or_default();
    let labels = row
        .map(|r| overrides(&r.category_labels))
        .unwrap_or_default();
    BadgeTemplate {
        fields: BadgeFields {
            organisation: row.is_none_or(|r| r.show_organisation),
            position: row.is_none_or(|r| r.show_position),
            city: row.is_some_and(|r| r.show_city),
            event_title: row.is_none_or(|r| r.show_event_title),
        },
        layout: row.map_or(Layout::A6, |r| parse_layout(&r.layout)),
        category_colours: categories
            .iter()
            .map(|c| {
                let colour = colours
                    .get(&c.code)
                    .cloned()
                    .unwrap_or_else(|| default_colour(c));
                (c.code.clone(), colour)
            })
            .collect(),
        category_labels: categories
            .iter()
            .map(|c| {
                let label = labels
                    .get(&c.code)
                    .cloned()
                    .unwrap_or_else(|| default_label(c, event.default_language));
                (c.code.clone(), label)
            })
            .collect(),
        logo: row.and_then(|r| {
            Some(BadgeLogo {
                media_type: r.logo_media_type.clone()?,
                data: STANDARD.encode(r.logo.as_ref()?),
            })
        }),
        updated_at: row.map(|r| r.updated_at),
    }
}

/// What the badge renderer needs of an event's template.
pub struct Look {
    pub design: Design,
    pub layout: Layout,
    pub fields: BadgeFields,
    colours: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
}

impl Look {
    /// The band's label and colour for `category`.
    pub fn band(&self, category: &str) -> (String, [u8; 3]) {
        let label = self.labels.get(category).cloned().unwrap_or_default();
        let colour = self
            .colours
            .get(category)
            .and_then(|c| parse_colour(c))
            .unwrap_or([0x5D, 0x6D, 0x7E]);
        (label, colour)
    }
}

/// The event's badge look, with the defaults for what it did not set.
pub async fn look(conn: &mut AsyncPgConnection, event: &Event) -> ApiResult<Look> {
    let row = stored(conn, event.id).await?;
    let categories = categories::of_event(conn, event.id).await?;
    let template = view(event, &categories, row.as_ref());
    let logo = row.as_ref().and_then(|r| {
        Some(Logo {
            jpeg: r.logo_media_type.as_deref()? == "image/jpeg",
            bytes: r.logo.clone()?,
        })
    });
    Ok(Look {
        design: Design {
            event_title: template.fields.event_title.then(|| event.title.clone()),
            logo,
            language: event.default_language.as_str().to_owned(),
        },
        layout: template.layout,
        fields: template.fields,
        colours: template.category_colours,
        labels: template.category_labels,
    })
}

/// The event's badge template (the defaults until it is set).
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id")),
    responses(
        (status = 200, description = "The template, every category's colour and label included.", body = BadgeTemplate),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[get("/events/{event}/badge-template")]
async fn get_template(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<web::Json<BadgeTemplate>> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::ViewPrivate).await?;
    let row = stored(&mut conn, ctx.event.id).await?;
    let categories = categories::of_event(&mut conn, ctx.event.id).await?;
    Ok(web::Json(view(&ctx.event, &categories, row.as_ref())))
}

/// Set the event's badge template: it replaces the whole template, and what is left out takes
/// its default. A logo must decode whole as the PNG or JPEG it claims to be.
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id")),
    request_body = NewBadgeTemplate,
    responses(
        (status = 200, description = "The template as stored.", body = BadgeTemplate),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[put("/events/{event}/badge-template")]
async fn put_template(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: Body<NewBadgeTemplate>,
) -> ApiResult<web::Json<BadgeTemplate>> {
    let new = body.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::Edit).await?;
    let categories = categories::of_event(&mut conn, ctx.event.id).await?;
    let logo = new.validate(&categories)?;
    let fields = new.fields.clone().unwrap_or(NewBadgeFields {
        organisation: true,
        position: true,
        city: false,
        event_title: true,
    });
    let row = TemplateRow {
        event_id: ctx.event.id,
        show_organisation: fields.organisation,
        show_position: fields.position,
        show_city: fields.city,
        show_event_title: fields.event_title,
        layout: layout_name(new.layout.unwrap_or(Layout::A6)).to_owned(),
        category_colours: serde_json::to_value(&new.category_colours)
            .map_err(ApiError::internal)?,
        category_labels: serde_json::to_value(&new.category_labels).map_err(ApiError::internal)?,
        logo_media_type: logo
            .is_some()
            .then(|| new.logo.as_ref().map(|l| l.media_type.clone()))
            .flatten(),
        logo,
        updated_at: Utc::now(),
    };
    let saved: TemplateRow = diesel::insert_into(badge_templates::table)
        .values(&row)
        .on_conflict(badge_templates::event_id)
        .do_update()
        .set(&row)
        .returning(TemplateRow::as_returning())
        .get_results(&mut conn)
        .await
        .and_then(crate::db::single)?;
    Ok(web::Json(view(&ctx.event, &categories, Some(&saved))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_read_from_hash_and_six_hex_digits_only() {
        assert_eq!(parse_colour("#1F4E9c"), Some([0x1F, 0x4E, 0x9C]));
        for bad in ["1F4E9C", "#1F4E9", "#1F4E9CC", "#GGGGGG", "#ЖЖЖЖЖЖ", ""] {
            assert_eq!(parse_colour(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_logo_must_decode_as_what_it_claims_to_be() {
        assert!(check_logo("image/png", b"\x89PNG\r\n\x1a\nbroken").is_err());
        assert!(check_logo("image/jpeg", b"\xff\xd8\xff\xe0broken").is_err());
        assert!(check_logo("image/gif", b"GIF89a").is_err());
    }
}

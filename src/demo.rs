//! `registrar demo`: a demonstration event, so that a newcomer sees a real programme at once.
//!
//! It is built from a short news report about the final day of the VII Murmansk
//! International Business Week: a business session «Социальное партнёрство. Социальное
//! проектирование» in Monchegorsk, opened by a deputy governor, with projects in three
//! directions presented by speakers from four towns, and more than 70 participants. The
//! other sessions, the venues and the key speakers' names are invented, and say so.
//!
//! The programme is created through the same functions the API's handlers use. Participants
//! register through the public registration route of the application, run in-process, so
//! every seat and waitlist place is taken as a real registration would take it.

use std::time::Duration;

use actix_web::test as in_process;
use actix_web::{App, web};
use anyhow::{Context, bail};
use chrono::{DateTime, Datelike, Days, FixedOffset, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Moscow;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use utoipa_actix_web::AppExt;
use uuid::Uuid;

use crate::config::Config;
use crate::db::schema::{events, idempotency_keys, users};
use crate::db::{self, MigrationAction};
use crate::error::{ApiError, ApiResult};
use crate::events::{Event, EventStatus, NewEvent};
use crate::programme::sessions::{self, NewSession};
use crate::programme::speakers::{self, NewSpeaker, SessionSpeakerBody, SpeakerRole};
use crate::programme::tracks::{self, NewTrack};
use crate::programme::venues::{self, NewVenue};
use crate::programme::{SessionKind, SessionStatus};
use crate::state::AppState;

/// The demo event's slug.
pub const SLUG: &str = "vii-mmdn";

/// How many days the demo event lasts (Monday to Friday).
pub const DAYS: u64 = 5;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Delete the demo event (with its registrations) and create it again.
    pub reset: bool,
    /// Email of an existing account to make the event's owner; without one, admins manage it.
    pub owner: Option<String>,
}

/// What `load` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The event exists already and was left as it is.
    Exists {
        event_id: Uuid,
    },
    Created(Summary),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub event_id: Uuid,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    pub sessions: usize,
    pub speakers: usize,
    pub registrations: usize,
    pub waitlisted: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "created the demo event «{TITLE}» ({SLUG}), {} to {}: {} sessions, 3 tracks, \
             {} speakers, {} registrations ({} on waitlists).\n\
             Programme: /api/v1/events/{SLUG}/programme (and programme.ics)",
            self.first_day,
            self.last_day,
            self.sessions,
            self.speakers,
            self.registrations,
            self.waitlisted
        )
    }
}

const TITLE: &str = "VII Мурманская международная деловая неделя";

/// Creates the demo event unless it exists (or, with `reset`, replaces it). Creates and
/// migrates the database first when needed.
pub async fn load(config: &Config, options: &Options) -> anyhow::Result<Outcome> {
    let url = config.database_url.expose_secret().to_owned();
    db::ensure_database(&url).await?;
    db::migrate(&url, MigrationAction::Run).await?;
    crate::email::bring_to_rule(&url).await?;
    let mut conn = AsyncPgConnection::establish(&url)
        .await
        .context("connecting to the database")?;
    let owner = match &options.owner {
        Some(email) => Some(
            users::table
                .filter(users::email_normalized.eq(crate::email::normalise(email)))
                .select(users::id)
                .first::<Uuid>(&mut conn)
                .await
                .optional()?
                .with_context(|| format!("no account has the email {email}"))?,
        ),
        None => None,
    };
    let existing: Option<Uuid> = events::table
        .filter(events::slug.eq(SLUG))
        .select(events::id)
        .first(&mut conn)
        .await
        .optional()?;
    if let Some(event_id) = existing {
        if !options.reset {
            return Ok(Outcome::Exists { event_id });
        }
        remove(&mut conn, event_id).await?;
    }
    let first_day = first_day(Utc::now());
    let programme = conn
        .transaction::<_, ApiError, _>(async |conn| create_programme(conn, first_day, owner).await)
        .await
        .map_err(|error| anyhow::anyhow!("creating the demo programme: {error}"))?;
    create_form(&mut conn, programme.event.id)
        .await
        .context("creating the demo registration form")?;
    let (registrations, waitlisted) = register_participants(config, &programme).await?;
    Ok(Outcome::Created(Summary {
        event_id: programme.event.id,
        first_day,
        last_day: last_day(first_day),
        sessions: programme.sessions.len(),
        speakers: programme.speakers,
        registrations,
        waitlisted,
    }))
}

/// Deletes the event and everything in it, registrations included.
async fn remove(conn: &mut AsyncPgConnection, event_id: Uuid) -> anyhow::Result<()> {
    conn.transaction::<_, anyhow::Error, _>(async |conn| {
        diesel::delete(idempotency_keys::table.filter(idempotency_keys::event_id.eq(event_id)))
            .execute(conn)
            .await?;
        diesel::delete(events::table.find(event_id))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

/// The Monday at least four weeks after `now` (in Moscow), so the demo is always ahead, and
/// outside the New Year holidays (30 December to 8 January), when no business week is held.
pub fn first_day(now: DateTime<Utc>) -> NaiveDate {
    let soon = now.with_timezone(&Moscow).date_naive() + Days::new(28);
    let to_monday = (7 - soon.weekday().num_days_from_monday()) % 7;
    let mut monday = soon + Days::new(u64::from(to_monday));
    while (0..DAYS).any(|day| is_holiday(monday + Days::new(day))) {
        monday = monday + Days::new(7);
    }
    monday
}

fn is_holiday(date: NaiveDate) -> bool {
    matches!((date.month(), date.day()), (12, 30..=31) | (1, 1..=8))
}

fn last_day(first_day: NaiveDate) -> NaiveDate {
    first_day + Days::new(DAYS - 1)
}

/// `hh:mm` in Moscow on the `day`-th day (0-based) of the event.
fn at(first_day: NaiveDate, day: u64, time: &str) -> DateTime<FixedOffset> {
    let (hour, minute) = time.split_once(':').expect("hh:mm");
    let local = (first_day + Days::new(day))
        .and_hms_opt(hour.parse().unwrap(), minute.parse().unwrap(), 0)
        .expect("a valid time");
    Moscow
        .from_local_datetime(&local)
        .single()
        .expect("Moscow keeps one offset")
        .fixed_offset()
}

fn text(value: &str) -> Option<String> {
    Some(value.to_owned())
}

// ---- the programme --------------------------------------------------------------------

/// The sessions of the demo, by what participants register for.
#[derive(Debug)]
struct Programme {
    event: Event,
    sessions: Vec<(Key, Uuid)>,
    speakers: usize,
}

impl Programme {
    fn session(&self, key: Key) -> Uuid {
        self.sessions
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, id)| *id)
            .expect("every key has a session")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Opening,
    NonprofitRoundTable,
    Workshop,
    Volunteering,
    ProjectLab,
    Excursion,
    SocialPartnership,
    Closing,
}

const VOLUNTEERING: &str = "Роль волонтёрского движения в жизни города";
const EVENT_DESIGN: &str = "Опыт проектирования мероприятий и применение различных методик в \
                            организации городских событий";
const CITY_EVENTS: &str = "Городские события как фактор развития территорий. Социальное \
                           партнёрство в организации";

const PLACEHOLDER: &str = "Имя вымышленное: в сообщении о деловой сессии ключевые спикеры \
                           названы только представителями своих городов, поэтому для \
                           демонстрационных данных имя придумано.";

async fn create_programme(
    conn: &mut AsyncPgConnection,
    first_day: NaiveDate,
    owner: Option<Uuid>,
) -> ApiResult<Programme> {
    let event = crate::events::create(
        conn,
        &NewEvent {
            slug: SLUG.to_owned(),
            title: TITLE.to_owned(),
            description: text(
                "Деловая неделя Мурманской области: пленарные заседания, деловые сессии, \
                 круглые столы, мастерские и экскурсии в Мурманске, Кандалакше, Полярных Зорях, \
                 Оленегорске и Мончегорске.\n\
                 Демонстрационные данные: заключительный день построен по сообщению о деловой \
                 сессии «Социальное партнёрство. Социальное проектирование» в Мончегорске; \
                 остальные сессии, площадки и имена ключевых спикеров придуманы.",
            ),
            time_zone: "Europe/Moscow".to_owned(),
            starts_on: first_day.into(),
            ends_on: last_day(first_day).into(),
            city: text("Мурманск"),
            status: Some(EventStatus::Published),
            registration_opens_at: None,
            registration_closes_at: None,
            capacity: None,
            allow_overlapping_sessions: Some(false),
            default_language: None,
            manage_url_template: None,
            require_email_confirmation: None,
            email_confirmation_hours: None,
            reminder_hours: None,
            personal_data_retention_days: None,
        },
        owner,
        false,
    )
    .await?;

    let track = async |conn: &mut AsyncPgConnection, title: &str, colour: &str, order: i32| {
        tracks::create(
            conn,
            event.id,
            NewTrack {
                title: title.to_owned(),
                description: None,
                colour: text(colour),
                order: Some(order),
            },
        )
        .await
        .map(|t| t.id)
    };
    let volunteering = track(conn, VOLUNTEERING, "#2e7d32", 1).await?;
    let event_design = track(conn, EVENT_DESIGN, "#1565c0", 2).await?;
    let city_events = track(conn, CITY_EVENTS, "#c62828", 3).await?;

    let venue = async |conn: &mut AsyncPgConnection,
                       name: &str,
                       city: &str,
                       address: &str,
                       capacity: i32| {
        venues::create(
            conn,
            event.id,
            NewVenue {
                name: name.to_owned(),
                city: text(city),
                address: text(address),
                capacity: Some(capacity),
            },
        )
        .await
        .map(|v| v.id)
    };
    let congress_hall = venue(
        conn,
        "Конгресс-зал делового центра",
        "Мурманск",
        "проспект Ленина",
        400,
    )
    .await?;
    let small_hall = venue(
        conn,
        "Малый зал делового центра",
        "Мурманск",
        "проспект Ленина",
        60,
    )
    .await?;
    let kandalaksha = venue(
        conn,
        "Городской дом культуры",
        "Кандалакша",
        "улица Первомайская",
        150,
    )
    .await?;
    let polyarnye_zori = venue(
        conn,
        "Молодёжный центр",
        "Полярные Зори",
        "улица Ломоносова",
        80,
    )
    .await?;
    let olenegorsk = venue(
        conn,
        "Центр общественных инициатив",
        "Оленегорск",
        "Парковая улица",
        50,
    )
    .await?;
    let plant = venue(
        conn,
        "Горно-обогатительный комбинат, сбор у главной проходной",
        "Оленегорск",
        "Заводская улица",
        25,
    )
    .await?;
    let monchegorsk = venue(
        conn,
        "Дворец культуры",
        "Мончегорск",
        "проспект Металлургов",
        300,
    )
    .await?;

    struct Plan<'a> {
        key: Key,
        title: &'a str,
        description: &'a str,
        kind: SessionKind,
        day: u64,
        from: &'a str,
        to: &'a str,
        venue: Uuid,
        track: Option<Uuid>,
        capacity: Option<i32>,
        waitlist: bool,
        tags: &'a [&'a str],
    }
    let plans = [
        Plan {
            key: Key::Opening,
            title: "Открытие деловой недели. Пленарное заседание",
            description: "Приветствие участников, итоги прошлого года и приоритеты социальной \
                          политики Мурманской области.",
            kind: SessionKind::Plenary,
            day: 0,
            from: "10:00",
            to: "12:30",
            venue: congress_hall,
            track: None,
            capacity: Some(400),
            waitlist: true,
            tags: &["открытие"],
        },
        Plan {
            key: Key::NonprofitRoundTable,
            title: "Некоммерческие организации на рынке социальных услуг",
            description: "В области зарегистрировано более тысячи некоммерческих организаций. \
                          Как им стать полноправными участниками рынка социальных услуг и \
                          конкурировать с бюджетными организациями за финансирование.",
            kind: SessionKind::RoundTable,
            day: 0,
            from: "14:00",
            to: "16:00",
            venue: small_hall,
            track: Some(city_events),
            capacity: Some(40),
            waitlist: false,
            tags: &["НКО", "социальные услуги"],
        },
        Plan {
            key: Key::Workshop,
            title: "Городской праздник своими силами",
            description: "Мастерская: как небольшой город собирает большой праздник — \
                          сценарий, команда, площадка, партнёры.",
            kind: SessionKind::Workshop,
            day: 1,
            from: "11:00",
            to: "13:30",
            venue: kandalaksha,
            track: Some(event_design),
            capacity: Some(30),
            waitlist: true,
            tags: &["городские события"],
        },
        Plan {
            key: Key::Volunteering,
            title: "Корпоративное волонтёрство: опыт градообразующих предприятий",
            description: "Предприятия, работающие в Мурманской области, придерживаются \
                          «политики открытых дверей»: как сотрудники становятся волонтёрами \
                          городских проектов.",
            kind: SessionKind::RoundTable,
            day: 2,
            from: "11:00",
            to: "13:00",
            venue: polyarnye_zori,
            track: Some(volunteering),
            capacity: Some(60),
            waitlist: true,
            tags: &["волонтёрство"],
        },
        Plan {
            key: Key::ProjectLab,
            title: "Проектная мастерская: от идеи городского события до заявки на грант",
            description: "Методики проектирования мероприятий: цели, аудитория, бюджет, \
                          оценка результата.",
            kind: SessionKind::Workshop,
            day: 3,
            from: "10:00",
            to: "12:00",
            venue: olenegorsk,
            track: Some(event_design),
            capacity: Some(40),
            waitlist: true,
            tags: &["проектирование", "гранты"],
        },
        Plan {
            key: Key::Excursion,
            title: "Экскурсия на горно-обогатительный комбинат",
            description: "Знакомство с градообразующим предприятием и его социальными \
                          программами. Число мест ограничено условиями безопасности.",
            kind: SessionKind::Excursion,
            day: 3,
            from: "14:00",
            to: "16:30",
            venue: plant,
            track: None,
            capacity: Some(20),
            waitlist: true,
            tags: &["экскурсия"],
        },
        Plan {
            key: Key::SocialPartnership,
            title: "Социальное партнёрство. Социальное проектирование",
            description: "Представители власти, бизнеса и общества делятся опытом совместной \
                          работы по организации в регионе социально направленных проектов и \
                          мероприятий. Проекты представлены по трём направлениям: «Роль \
                          волонтёрского движения в жизни города», «Опыт проектирования \
                          мероприятий и применение различных методик в организации городских \
                          событий», «Городские события как фактор развития территорий. \
                          Социальное партнёрство в организации». Основные темы дискуссии — \
                          опыт корпоративного волонтёрства, социальное партнёрство и совместная \
                          организация значимых городских событий.",
            kind: SessionKind::BusinessSession,
            day: DAYS - 1,
            from: "11:00",
            to: "14:00",
            venue: monchegorsk,
            track: Some(city_events),
            capacity: Some(80),
            waitlist: true,
            tags: &["социальное партнёрство", "волонтёрство", "НКО"],
        },
        Plan {
            key: Key::Closing,
            title: "Подведение итогов деловой недели",
            description: "Итоги площадок недели и договорённости о сотрудничестве.",
            kind: SessionKind::Plenary,
            day: DAYS - 1,
            from: "15:00",
            to: "16:30",
            venue: monchegorsk,
            track: None,
            capacity: None,
            waitlist: true,
            tags: &[],
        },
    ];
    let mut created = Vec::with_capacity(plans.len());
    for plan in &plans {
        let session = sessions::create(
            conn,
            &event,
            &NewSession {
                title: plan.title.to_owned(),
                description: text(plan.description),
                kind: plan.kind,
                starts_at: at(first_day, plan.day, plan.from).into(),
                ends_at: at(first_day, plan.day, plan.to).into(),
                venue_id: Some(plan.venue),
                track_id: plan.track,
                capacity: plan.capacity,
                waitlist_enabled: Some(plan.waitlist),
                registration_opens_at: None,
                registration_closes_at: None,
                status: Some(SessionStatus::Published),
                language: text("ru"),
                tags: Some(plan.tags.iter().map(|t| (*t).to_owned()).collect()),
            },
        )
        .await?;
        created.push((plan.key, session.id));
    }
    let programme = Programme {
        event: event.clone(),
        sessions: created,
        speakers: 0,
    };

    struct Person<'a> {
        name: &'a str,
        position: &'a str,
        organisation: &'a str,
        bio: String,
        places: &'a [(Key, SpeakerRole, i32)],
    }
    let key_speaker = |town: &str| format!("Представитель г. {town}. {PLACEHOLDER}");
    let people = [
        Person {
            name: "Роман Дурягин",
            position: "Заместитель губернатора Мурманской области",
            organisation: "Правительство Мурманской области",
            bio: "Открывает деловую сессию «Социальное партнёрство. Социальное \
                  проектирование»: желание граждан реализовывать свои инициативы должно \
                  поддерживаться государством, а условия для социальной деятельности — один \
                  из приоритетов правительства области."
                .to_owned(),
            places: &[(Key::SocialPartnership, SpeakerRole::GuestOfHonour, 0)],
        },
        Person {
            name: "Ольга Северова",
            position: "Руководитель городского волонтёрского центра",
            organisation: "Волонтёрский центр, г. Полярные Зори",
            bio: key_speaker("Полярные Зори"),
            places: &[
                (Key::Volunteering, SpeakerRole::Moderator, 0),
                (Key::SocialPartnership, SpeakerRole::Speaker, 1),
            ],
        },
        Person {
            name: "Игорь Рудаков",
            position: "Координатор социальных программ предприятия",
            organisation: "Горно-обогатительный комбинат, г. Оленегорск",
            bio: key_speaker("Оленегорск"),
            places: &[
                (Key::Excursion, SpeakerRole::Speaker, 0),
                (Key::Volunteering, SpeakerRole::Panelist, 1),
                (Key::SocialPartnership, SpeakerRole::Speaker, 2),
            ],
        },
        Person {
            name: "Марина Озерова",
            position: "Руководитель проектного офиса городских событий",
            organisation: "Администрация г. Мончегорска",
            bio: key_speaker("Мончегорск"),
            places: &[
                (Key::ProjectLab, SpeakerRole::Moderator, 0),
                (Key::SocialPartnership, SpeakerRole::Speaker, 3),
            ],
        },
        Person {
            name: "Денис Беломоров",
            position: "Директор городского дома культуры",
            organisation: "Городской дом культуры, г. Кандалакша",
            bio: key_speaker("Кандалакша"),
            places: &[
                (Key::Workshop, SpeakerRole::Moderator, 0),
                (Key::SocialPartnership, SpeakerRole::Speaker, 4),
            ],
        },
    ];
    for person in &people {
        let speaker = speakers::create(
            conn,
            event.id,
            NewSpeaker {
                full_name: person.name.to_owned(),
                position: text(person.position),
                organisation: text(person.organisation),
                bio: Some(person.bio.clone()),
                photo_url: None,
                email: None,
                phone: None,
            },
        )
        .await?;
        for (key, role, order) in person.places {
            speakers::put_on_session(
                conn,
                event.id,
                programme.session(*key),
                speaker.id,
                SessionSpeakerBody {
                    role: *role,
                    order: Some(*order),
                },
            )
            .await?;
        }
    }
    Ok(Programme {
        speakers: people.len(),
        ..programme
    })
}

// ---- participants -----------------------------------------------------------------------

const PARTICIPANTS: usize = 100;

/// Who registers for what: ranges of participant numbers (1-based, inclusive). Registrations
/// are made in number order, so the last ones for a full session wait in its waitlist.
const CHOICES: &[(Key, usize, usize)] = &[
    (Key::Opening, 1, 90),
    (Key::NonprofitRoundTable, 88, 99),
    (Key::Workshop, 61, 87),          // 27 of 30 seats
    (Key::Volunteering, 1, 35),       // 35 of 60
    (Key::ProjectLab, 20, 37),        // 18 of 40
    (Key::Excursion, 41, 63),         // 23 for 20 seats: three wait
    (Key::SocialPartnership, 11, 84), // 74 of 80: «более 70 участников»
];

const FIRST_NAMES: [[&str; 10]; 2] = [
    [
        "Алексей",
        "Дмитрий",
        "Сергей",
        "Андрей",
        "Михаил",
        "Николай",
        "Павел",
        "Виктор",
        "Артём",
        "Егор",
    ],
    [
        "Анна",
        "Елена",
        "Мария",
        "Татьяна",
        "Ольга",
        "Наталья",
        "Ирина",
        "Светлана",
        "Юлия",
        "Дарья",
    ],
];

const SURNAMES: [(&str, &str); 10] = [
    ("Иванов", "Иванова"),
    ("Смирнов", "Смирнова"),
    ("Кузнецов", "Кузнецова"),
    ("Попов", "Попова"),
    ("Соколов", "Соколова"),
    ("Лебедев", "Лебедева"),
    ("Морозов", "Морозова"),
    ("Волков", "Волкова"),
    ("Фёдоров", "Фёдорова"),
    ("Зайцев", "Зайцева"),
];

const CITIES: [&str; 7] = [
    "Мончегорск",
    "Мурманск",
    "Оленегорск",
    "Кандалакша",
    "Полярные Зори",
    "Апатиты",
    "Кировск",
];

/// (organisation, position, category)
const AFFILIATIONS: [(&str, &str, &str); 6] = [
    (
        "Администрация города",
        "Специалист по молодёжной политике",
        "government",
    ),
    (
        "Градообразующее предприятие",
        "Специалист по корпоративной социальной ответственности",
        "business",
    ),
    (
        "АНО «Городские события»",
        "Координатор волонтёров",
        "nonprofit",
    ),
    (
        "Ресурсный центр поддержки НКО",
        "Руководитель проектов",
        "nonprofit",
    ),
    ("Городская газета", "Корреспондент", "media"),
    ("Студенческий совет колледжа", "Председатель", "other"),
];

/// The registration form, in the spirit of the report: an invite-only category for speakers
/// beside the five standard ones, the direction of work (the three of the report), the town,
/// a transfer from Murmansk with the arrival date asked only then, and the excursion to the
/// plant with 30 places. The consent to the processing of personal data every event has.
async fn create_form(conn: &mut AsyncPgConnection, event_id: Uuid) -> anyhow::Result<()> {
    diesel::sql_query(
        "INSERT INTO event_categories (id, event_id, code, name_ru, name_en, public, position) \
         VALUES (gen_random_uuid(), $1, 'speakers', 'Спикеры', 'Speakers', false, 6)",
    )
    .bind::<diesel::sql_types::Uuid, _>(event_id)
    .execute(conn)
    .await?;
    diesel::sql_query(
        "WITH q AS (INSERT INTO form_questions \
             (id, event_id, key, type, label_ru, label_en, help_ru, help_en, required, position, \
              max_length, shown_when, personal) VALUES \
             (gen_random_uuid(), $1, 'direction', 'single_choice', 'Направление работы', \
              'Direction of work', NULL, NULL, true, 1, NULL, NULL, false), \
             (gen_random_uuid(), $1, 'town', 'text', 'Ваш город', 'Your town', \
              'Город, из которого вы приедете', 'The town you come from', true, 2, 100, NULL, true), \
             (gen_random_uuid(), $1, 'transfer', 'yes_no', 'Нужен трансфер из Мурманска?', \
              'Do you need a transfer from Murmansk?', NULL, NULL, true, 3, NULL, NULL, false), \
             (gen_random_uuid(), $1, 'arrival', 'date', 'Дата приезда в Мурманск', \
              'Arrival in Murmansk', NULL, NULL, true, 4, NULL, \
              '{\"question\": \"transfer\", \"equals\": true}', false), \
             (gen_random_uuid(), $1, 'excursion', 'single_choice', 'Экскурсия', 'Excursion', \
              NULL, NULL, false, 5, NULL, NULL, false) \
             RETURNING id, key) \
         INSERT INTO form_options (id, question_id, key, label_ru, label_en, capacity, position) \
         SELECT gen_random_uuid(), q.id, o.key, o.ru, o.en, o.capacity, o.position \
         FROM q JOIN (VALUES \
             ('direction', 'volunteering', 'Роль волонтёрского движения в жизни города', \
              'Volunteering in city life', NULL::integer, 0), \
             ('direction', 'event_design', 'Проектирование мероприятий и городских событий', \
              'Designing city events', NULL, 1), \
             ('direction', 'partnership', 'Городские события и социальное партнёрство', \
              'City events and social partnership', NULL, 2), \
             ('excursion', 'plant', 'Экскурсия на комбинат', 'Visit to the plant', 30, 0), \
             ('excursion', 'museum', 'Городской музей', 'The town museum', NULL, 1)) \
           AS o(question, key, ru, en, capacity, position) ON o.question = q.key",
    )
    .bind::<diesel::sql_types::Uuid, _>(event_id)
    .execute(conn)
    .await?;
    diesel::sql_query(
        "SELECT set_form_pool(o.id, o.capacity) FROM form_options o \
         JOIN form_questions q ON q.id = o.question_id \
         WHERE q.event_id = $1 AND o.capacity IS NOT NULL",
    )
    .bind::<diesel::sql_types::Uuid, _>(event_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A participant's answers to the demo form.
fn answers(n: usize) -> Value {
    let direction = ["volunteering", "event_design", "partnership"][n % 3];
    let mut answers = json!({
        "direction": direction,
        "town": CITIES[n % CITIES.len()],
        "transfer": n.is_multiple_of(4),
    });
    if n.is_multiple_of(4) {
        answers["arrival"] = json!("2027-04-19");
    }
    if n.is_multiple_of(3) {
        answers["excursion"] = json!(if n.is_multiple_of(6) {
            "plant"
        } else {
            "museum"
        });
    }
    answers
}

fn participant(n: usize, sessions: &[Uuid]) -> Value {
    let gender = n % 2;
    let first = FIRST_NAMES[gender][(n / 2) % 10];
    let (male, female) = SURNAMES[(n / 2 + n / 20) % 10];
    let surname = if gender == 0 { male } else { female };
    let (organisation, position, category) = AFFILIATIONS[n % AFFILIATIONS.len()];
    json!({
        "full_name": format!("{first} {surname}"),
        "email": format!("participant{n:03}@example.org"),
        "organisation": organisation,
        "position": position,
        "city": CITIES[n % CITIES.len()],
        "category": category,
        "consents": {"personal_data": true},
        "answers": answers(n),
        "session_ids": sessions,
    })
}

/// Registers the demo participants through the application's public registration route;
/// returns how many registered and how many places are on waitlists.
async fn register_participants(
    config: &Config,
    programme: &Programme,
) -> anyhow::Result<(usize, usize)> {
    let mut config = config.clone();
    config.registration_rate_limit = 0;
    config.public_cache_ms = 0;
    let mut secret = [0u8; 32];
    rand::fill(&mut secret);
    let pool = db::pool(
        config.database_url.expose_secret(),
        2,
        Duration::from_secs(30),
    )?;
    let sealing = crate::secrets::KeyRing::from_config(&config)?;
    let state = web::Data::new(AppState::new(
        config,
        pool,
        hex::encode(secret).into(),
        sealing,
    ));
    let (app, _) = App::new()
        .into_utoipa_app()
        .configure(crate::startup::routes)
        .split_for_parts();
    let service = in_process::init_service(app.app_data(state)).await;
    let path = format!("/api/v1/events/{}/registrations", programme.event.id);
    let (mut registered, mut waitlisted) = (0, 0);
    for n in 1..=PARTICIPANTS {
        let sessions: Vec<Uuid> = CHOICES
            .iter()
            .filter(|(_, from, to)| (*from..=*to).contains(&n))
            .map(|(key, _, _)| programme.session(*key))
            .collect();
        let request = in_process::TestRequest::post()
            .uri(&path)
            .set_json(participant(n, &sessions))
            .to_request();
        let response = in_process::call_service(&service, request).await;
        let status = response.status();
        let body = in_process::read_body(response).await;
        if !status.is_success() {
            bail!(
                "registering demo participant {n}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        let created: Value = serde_json::from_slice(&body)?;
        registered += 1;
        waitlisted += created["sessions"].as_array().map_or(0, |places| {
            places
                .iter()
                .filter(|place| place["status"] == "waitlisted")
                .count()
        });
    }
    Ok((registered, waitlisted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_starts_on_a_monday_four_to_five_weeks_ahead() {
        // A Wednesday.
        let now = Utc.with_ymd_and_hms(2027, 3, 3, 12, 0, 0).unwrap();
        assert_eq!(first_day(now), NaiveDate::from_ymd_opt(2027, 4, 5).unwrap());
        // Late on a Sunday in UTC is already Monday in Moscow.
        let now = Utc.with_ymd_and_hms(2027, 2, 28, 22, 0, 0).unwrap();
        assert_eq!(
            first_day(now),
            NaiveDate::from_ymd_opt(2027, 3, 29).unwrap()
        );
    }

    #[test]
    fn the_demo_avoids_the_new_year_holidays() {
        // Four weeks on is Monday 28 December: the week would end on 1 January.
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        assert_eq!(
            first_day(now),
            NaiveDate::from_ymd_opt(2027, 1, 11).unwrap()
        );
    }
}

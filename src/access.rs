//! Who may do what: every authorisation decision of the API is made here.
//!
//! Accounts: admins may do everything; organisers create events and act on the events they
//! are members of, as their member role allows. For anyone else an event that is not
//! published does not exist (404), and a published one may be read but not changed (401 for
//! anonymous callers, 403 for others).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use uuid::Uuid;

use crate::auth::{Caller, Scope, UserCaller};
use crate::db::schema::{event_members, events, imports, registrations};
use crate::error::{ApiError, ApiResult};
use crate::events::{Event, EventRef, EventStatus, MemberRole};
use crate::registrations::Registration;
use crate::registrations::history::Actor;

/// Any signed-in organiser or admin.
pub fn require_user(caller: &Caller) -> ApiResult<&UserCaller> {
    match caller {
        Caller::User(user) => Ok(user),
        Caller::Anonymous => Err(ApiError::unauthorized("sign in to use this route")),
        Caller::Participant(_) => Err(ApiError::forbidden(
            "a manage token opens its own registration only",
        )),
        Caller::Device(_) => Err(ApiError::forbidden("device keys cannot use this route")),
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

/// What a caller wants to do with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    /// Read what the public sees of a published event (organisers: of any of theirs).
    View,
    /// Read what only organisers see: drafts, members, contact details.
    ViewPrivate,
    /// Change the event, its programme or registrations.
    Edit,
    /// Add, change or remove members; delete the event.
    Manage,
    /// Read the attendee feed, lists and export: organisers, and device keys with
    /// `attendees:read`.
    ReadAttendees,
    /// Claim and complete badge print jobs: owners and editors, and device keys with
    /// `badges:print`.
    PrintBadges,
    /// Check attendees in: owners and editors, and device keys with `checkin:write`.
    CheckIn,
    /// See the event's webhook endpoints and what was delivered to them (participants'
    /// details included): organisers, viewers too. Never device keys.
    ViewWebhooks,
    /// Add, change, delete webhook endpoints, rotate their secrets, send messages again:
    /// owners and editors, as an endpoint receives participants' details, like a device key
    /// with `attendees:read` (which they may also make). Never device keys.
    ManageWebhooks,
    /// Erase the personal data of every registration of the event before its retention
    /// period ends: owners only, as it cannot be undone. Never device keys.
    ErasePersonalData,
}

impl EventAction {
    /// The device-key scope that allows this action, if any does.
    fn scope(self) -> Option<Scope> {
        match self {
            EventAction::ReadAttendees => Some(Scope::AttendeesRead),
            EventAction::PrintBadges => Some(Scope::BadgesPrint),
            EventAction::CheckIn => Some(Scope::CheckinWrite),
            _ => None,
        }
    }
}

/// An event, with what the caller may do with it.
#[derive(Debug, Clone)]
pub struct EventContext {
    pub event: Event,
    /// The caller's membership, if any.
    pub member_role: Option<MemberRole>,
    pub is_admin: bool,
}

impl EventContext {
    /// Organisers of this event (and admins) also see unpublished parts of it.
    pub fn sees_private(&self) -> bool {
        self.is_admin || self.member_role.is_some()
    }
}

/// Finds `{event}` and checks that the caller may perform `action` on it.
pub async fn event(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    reference: &str,
    action: EventAction,
) -> ApiResult<EventContext> {
    let user_id = caller.user().map(|user| user.id);
    let mut query = events::table
        .left_join(
            event_members::table.on(event_members::event_id
                .eq(events::id)
                .and(event_members::user_id.nullable().eq(user_id))),
        )
        .select((Event::as_select(), event_members::role.nullable()))
        .into_boxed();
    query = match EventRef::parse(reference) {
        Some(EventRef::Id(id)) => query.filter(events::id.eq(id)),
        Some(EventRef::Slug(slug)) => query.filter(events::slug.eq(slug)),
        None => return Err(ApiError::not_found("event")),
    };
    let (event, member_role): (Event, Option<MemberRole>) = query
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("event"))?;
    let context = EventContext {
        member_role,
        is_admin: caller.user().is_some_and(UserCaller::is_admin),
        event,
    };
    decide(caller, &context, action)?;
    Ok(context)
}

/// The rule itself, separate from loading so it can be tested exhaustively.
/// The event of an import, for `action` on it: viewing an import's rows (participants'
/// details) takes `ViewPrivate`, uploading and committing `Edit`. An import of an event the
/// caller may not see does not exist (404).
pub async fn import(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    import_id: Uuid,
    action: EventAction,
) -> ApiResult<EventContext> {
    let event_id: Uuid = imports::table
        .find(import_id)
        .select(imports::event_id)
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("import"))?;
    match event(conn, caller, &event_id.to_string(), action).await {
        Err(error) if error.status() == actix_web::http::StatusCode::NOT_FOUND => {
            Err(ApiError::not_found("import"))
        }
        Err(error)
            if error.status() == actix_web::http::StatusCode::FORBIDDEN
                && event(
                    conn,
                    caller,
                    &event_id.to_string(),
                    EventAction::ViewPrivate,
                )
                .await
                .is_err() =>
        {
            // Strangers to the event learn nothing of its imports.
            Err(ApiError::not_found("import"))
        }
        result => result,
    }
}

pub fn decide(caller: &Caller, context: &EventContext, action: EventAction) -> ApiResult<()> {
    let published = context.event.status == EventStatus::Published;
    let own_device = match caller {
        Caller::Device(device) => (device.event_id == context.event.id).then_some(device),
        _ => None,
    };
    if !published && !context.sees_private() && own_device.is_none() {
        return Err(ApiError::not_found("event"));
    }
    let allowed = context.is_admin
        || match (action, context.member_role, own_device) {
            (EventAction::View, _, _) => true,
            (_, _, Some(device)) => action.scope().is_some_and(|s| device.scopes.contains(&s)),
            (_, None, None) => false,
            (
                EventAction::ViewPrivate | EventAction::ReadAttendees | EventAction::ViewWebhooks,
                Some(_),
                _,
            ) => true,
            (
                EventAction::Edit
                | EventAction::PrintBadges
                | EventAction::CheckIn
                | EventAction::ManageWebhooks,
                Some(role),
                _,
            ) => role != MemberRole::Viewer,
            (EventAction::Manage | EventAction::ErasePersonalData, Some(role), _) => {
                role == MemberRole::Owner
            }
        };
    match (allowed, caller) {
        (true, _) => Ok(()),
        (false, Caller::Anonymous) => Err(ApiError::unauthorized("sign in to do this")),
        (false, Caller::Participant(_)) => Err(ApiError::forbidden(
            "a manage token opens its own registration only",
        )),
        (false, Caller::Device(_)) => Err(ApiError::forbidden(match own_device {
            Some(_) => "this API key lacks the scope for this",
            None => "this API key belongs to another event",
        })),
        (false, _) => Err(ApiError::forbidden(match action {
            EventAction::Manage | EventAction::ErasePersonalData => {
                "only the event's owners may do this"
            }
            EventAction::Edit | EventAction::ManageWebhooks => {
                "only the event's owners and editors may do this"
            }
            _ => "only the event's organisers may see this",
        })),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::users::Role;

    fn context(
        status: EventStatus,
        member_role: Option<MemberRole>,
        is_admin: bool,
    ) -> EventContext {
        EventContext {
            event: Event {
                id: Uuid::now_v7(),
                slug: "e".into(),
                title: "E".into(),
                description: None,
                time_zone: "Europe/Moscow".into(),
                starts_on: Utc::now().date_naive(),
                ends_on: Utc::now().date_naive(),
                city: None,
                status,
                registration_opens_at: None,
                registration_closes_at: None,
                capacity: None,
                allow_overlapping_sessions: false,
                version: 1,
                created_by: None,
                created_at: Utc::now(),
                updated_at: Utc::now(),
                default_language: crate::events::Language::Ru,
                manage_url_template: None,
                require_email_confirmation: false,
                email_confirmation_hours: 48,
                reminder_hours: None,
                personal_data_retention_days: 90,
            },
            member_role,
            is_admin,
        }
    }

    fn user(role: Role) -> Caller {
        Caller::User(UserCaller {
            id: Uuid::now_v7(),
            role,
            auth_session_id: Uuid::now_v7(),
        })
    }

    fn status_of(result: ApiResult<()>) -> u16 {
        result.map_or_else(|e| e.status().as_u16(), |()| 200)
    }

    #[test]
    fn strangers_do_not_see_unpublished_events() {
        for status in [EventStatus::Draft, EventStatus::Archived] {
            for action in [EventAction::View, EventAction::Edit] {
                let ctx = context(status, None, false);
                assert_eq!(status_of(decide(&Caller::Anonymous, &ctx, action)), 404);
                assert_eq!(status_of(decide(&user(Role::Organiser), &ctx, action)), 404);
            }
        }
    }

    #[test]
    fn strangers_read_but_do_not_change_published_events() {
        let ctx = context(EventStatus::Published, None, false);
        assert_eq!(
            status_of(decide(&Caller::Anonymous, &ctx, EventAction::View)),
            200
        );
        assert_eq!(
            status_of(decide(&Caller::Anonymous, &ctx, EventAction::Edit)),
            401
        );
        let other = user(Role::Organiser);
        assert_eq!(status_of(decide(&other, &ctx, EventAction::View)), 200);
        assert_eq!(
            status_of(decide(&other, &ctx, EventAction::ViewPrivate)),
            403
        );
        assert_eq!(status_of(decide(&other, &ctx, EventAction::Edit)), 403);
    }

    #[test]
    fn member_roles_grant_what_they_say() {
        let organiser = user(Role::Organiser);
        let expect = [
            (MemberRole::Viewer, [200, 200, 403, 403]),
            (MemberRole::Editor, [200, 200, 200, 403]),
            (MemberRole::Owner, [200, 200, 200, 200]),
        ];
        for (role, statuses) in expect {
            let ctx = context(EventStatus::Draft, Some(role), false);
            let actions = [
                EventAction::View,
                EventAction::ViewPrivate,
                EventAction::Edit,
                EventAction::Manage,
            ];
            for (action, status) in actions.into_iter().zip(statuses) {
                assert_eq!(
                    status_of(decide(&organiser, &ctx, action)),
                    status,
                    "{role} {action:?}"
                );
            }
        }
    }

    fn device(ctx: &EventContext, scopes: Vec<Scope>, own: bool) -> Caller {
        Caller::Device(crate::auth::DeviceCaller {
            key_id: Uuid::now_v7(),
            event_id: if own { ctx.event.id } else { Uuid::now_v7() },
            scopes,
        })
    }

    #[test]
    fn device_keys_act_only_within_their_scopes_and_event() {
        let ctx = context(EventStatus::Draft, None, false);
        let reader = device(&ctx, vec![Scope::AttendeesRead], true);
        assert_eq!(status_of(decide(&reader, &ctx, EventAction::View)), 200);
        assert_eq!(
            status_of(decide(&reader, &ctx, EventAction::ReadAttendees)),
            200
        );
        assert_eq!(status_of(decide(&reader, &ctx, EventAction::CheckIn)), 403);
        assert_eq!(status_of(decide(&reader, &ctx, EventAction::Edit)), 403);
        let desk = device(&ctx, vec![Scope::CheckinWrite], true);
        assert_eq!(status_of(decide(&desk, &ctx, EventAction::CheckIn)), 200);
        assert_eq!(
            status_of(decide(&desk, &ctx, EventAction::ReadAttendees)),
            403
        );
        let stranger = device(&ctx, vec![Scope::AttendeesRead], false);
        assert_eq!(
            status_of(decide(&stranger, &ctx, EventAction::ReadAttendees)),
            404
        );
        let published = context(EventStatus::Published, None, false);
        let stranger = device(&published, vec![Scope::AttendeesRead], false);
        assert_eq!(
            status_of(decide(&stranger, &published, EventAction::ReadAttendees)),
            403
        );
        assert_eq!(
            status_of(decide(&stranger, &published, EventAction::View)),
            200
        );
    }

    #[test]
    fn viewers_read_attendees_but_do_not_print_or_check_in() {
        let organiser = user(Role::Organiser);
        let ctx = context(EventStatus::Published, Some(MemberRole::Viewer), false);
        assert_eq!(
            status_of(decide(&organiser, &ctx, EventAction::ReadAttendees)),
            200
        );
        assert_eq!(
            status_of(decide(&organiser, &ctx, EventAction::PrintBadges)),
            403
        );
        assert_eq!(
            status_of(decide(&organiser, &ctx, EventAction::CheckIn)),
            403
        );
        let editor = context(EventStatus::Published, Some(MemberRole::Editor), false);
        assert_eq!(
            status_of(decide(&organiser, &editor, EventAction::CheckIn)),
            200
        );
    }

    #[test]
    fn organisers_see_webhooks_and_owners_and_editors_manage_them() {
        let organiser = user(Role::Organiser);
        for (role, view, manage) in [
            (MemberRole::Viewer, 200, 403),
            (MemberRole::Editor, 200, 200),
            (MemberRole::Owner, 200, 200),
        ] {
            let ctx = context(EventStatus::Published, Some(role), false);
            assert_eq!(
                status_of(decide(&organiser, &ctx, EventAction::ViewWebhooks)),
                view
            );
            assert_eq!(
                status_of(decide(&organiser, &ctx, EventAction::ManageWebhooks)),
                manage
            );
        }
        let ctx = context(EventStatus::Published, None, false);
        let all = vec![
            Scope::AttendeesRead,
            Scope::BadgesPrint,
            Scope::CheckinWrite,
        ];
        let own_device = device(&ctx, all, true);
        for action in [EventAction::ViewWebhooks, EventAction::ManageWebhooks] {
            assert_eq!(status_of(decide(&own_device, &ctx, action)), 403);
            assert_eq!(status_of(decide(&Caller::Anonymous, &ctx, action)), 401);
            assert_eq!(status_of(decide(&organiser, &ctx, action)), 403);
        }
    }

    #[test]
    fn only_owners_erase_an_events_personal_data() {
        let organiser = user(Role::Organiser);
        for (role, status) in [
            (MemberRole::Viewer, 403),
            (MemberRole::Editor, 403),
            (MemberRole::Owner, 200),
        ] {
            let ctx = context(EventStatus::Published, Some(role), false);
            assert_eq!(
                status_of(decide(&organiser, &ctx, EventAction::ErasePersonalData)),
                status,
                "{role}"
            );
        }
        let ctx = context(EventStatus::Published, None, false);
        let all = vec![
            Scope::AttendeesRead,
            Scope::BadgesPrint,
            Scope::CheckinWrite,
        ];
        let own_device = device(&ctx, all, true);
        assert_eq!(
            status_of(decide(&own_device, &ctx, EventAction::ErasePersonalData)),
            403
        );
        let admin = context(EventStatus::Published, None, true);
        assert_eq!(
            status_of(decide(
                &user(Role::Admin),
                &admin,
                EventAction::ErasePersonalData
            )),
            200
        );
    }

    #[test]
    fn admins_may_do_everything() {
        let ctx = context(EventStatus::Draft, None, true);
        for action in [
            EventAction::View,
            EventAction::ViewPrivate,
            EventAction::Edit,
            EventAction::Manage,
        ] {
            assert_eq!(status_of(decide(&user(Role::Admin), &ctx, action)), 200);
        }
    }
}

/// What a caller wants to do with one registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationAction {
    /// Read it (its participant, the event's organisers).
    View,
    /// Change or cancel it (its participant, the event's owners and editors).
    Change,
    /// Read its history (the event's organisers).
    ViewHistory,
    /// Organisers' decisions, such as promoting out of turn (owners and editors).
    Manage,
    /// Download everything stored about the participant (its participant, the event's
    /// organisers).
    Export,
    /// Anonymise its personal data (its participant, the event's owners and editors).
    Erase,
}

/// A registration, its event, and who acts on it.
pub struct RegistrationContext {
    pub registration: Registration,
    pub event: Event,
    pub actor: Actor,
    /// The caller is the participant (with the manage token), not an organiser.
    pub by_participant: bool,
}

/// Finds a registration and checks that the caller may perform `action` on it. A manage
/// token opens only its own registration; to anyone else, another registration does not
/// exist.
pub async fn registration(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    id: Uuid,
    action: RegistrationAction,
) -> ApiResult<RegistrationContext> {
    match caller {
        Caller::Anonymous => {
            return Err(ApiError::unauthorized(
                "send the registration's manage token or an organiser's access token",
            ));
        }
        Caller::Device(_) => {
            return Err(ApiError::forbidden("device keys cannot use this route"));
        }
        _ => {}
    }
    if let Caller::Participant(participant) = caller
        && participant.registration_id != id
    {
        return Err(ApiError::not_found("registration"));
    }
    let registration: Registration = registrations::table
        .find(id)
        .select(Registration::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("registration"))?;
    let event_ref = registration.event_id.to_string();
    match caller {
        Caller::Participant(_) => {
            if matches!(
                action,
                RegistrationAction::ViewHistory | RegistrationAction::Manage
            ) {
                return Err(ApiError::forbidden(
                    "only the event's organisers may do this",
                ));
            }
            let event = events::table
                .find(registration.event_id)
                .select(Event::as_select())
                .first(conn)
                .await?;
            Ok(RegistrationContext {
                actor: Actor::participant(id),
                registration,
                event,
                by_participant: true,
            })
        }
        Caller::User(user) => {
            let event_action = match action {
                RegistrationAction::View
                | RegistrationAction::ViewHistory
                | RegistrationAction::Export => EventAction::ViewPrivate,
                RegistrationAction::Change
                | RegistrationAction::Manage
                | RegistrationAction::Erase => EventAction::Edit,
            };
            // To those who may not see the event's registrations at all, this one does not
            // exist; those who may see but not change it are told so.
            let context = event(conn, caller, &event_ref, EventAction::ViewPrivate)
                .await
                .map_err(|error| match error.status().as_u16() {
                    401 | 403 | 404 => ApiError::not_found("registration"),
                    _ => error,
                })?;
            decide(caller, &context, event_action)?;
            Ok(RegistrationContext {
                actor: Actor::organiser(user.id),
                registration,
                event: context.event,
                by_participant: false,
            })
        }
        Caller::Anonymous | Caller::Device(_) => unreachable!("handled above"),
    }
}

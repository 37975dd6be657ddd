"""Drives the API with the Python client generated from openapi/openapi.json.

    python smoke.py <base URL> <admin email> <admin password>

The generated package (registrar_client) must be importable (clients/check puts it on
PYTHONPATH). An admin sets up an event; a participant registers, reads the registration
with the manage token and cancels it; a badge printer pulls the attendee feed. Every answer
is parsed into the generated models, which fail on a missing required field.
"""

import datetime
import sys
import uuid

from registrar_client import AuthenticatedClient, Client
from registrar_client.api.auth import login
from registrar_client.api.badges import attendee_feed, create_api_key
from registrar_client.api.events import create_event
from registrar_client.api.programme import create_session, programme
from registrar_client.api.registrations import cancel_registration, get_registration, register
from registrar_client.models import (
    AttendeeFeed,
    EventStatus,
    LoginRequest,
    NewApiKey,
    NewEvent,
    NewRegistrationBody,
    NewSession,
    Programme,
    RegistrationCreated,
    RegistrationStatus,
    RegistrationView,
    Scope,
    SessionKind,
    SessionRegistrationStatus,
    SessionStatus,
    TokenResponse,
)


def expect(kind, answer):
    """The parsed body, which must be of the documented success type."""
    if not isinstance(answer.parsed, kind):
        raise SystemExit(f"{answer.status_code}: {answer.content.decode()}")
    return answer.parsed


def main(base_url: str, email: str, password: str) -> None:
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)
    tokens = expect(
        TokenResponse,
        login.sync_detailed(client=anonymous, body=LoginRequest(email=email, password=password)),
    )
    admin = AuthenticatedClient(
        base_url=base_url, token=tokens.access_token, raise_on_unexpected_status=True
    )
    event = create_event.sync(
        client=admin,
        body=NewEvent(
            slug="python-client",
            title="Деловая неделя",
            time_zone="Europe/Moscow",
            starts_on=datetime.date(2027, 4, 20),
            ends_on=datetime.date(2027, 4, 24),
            status=EventStatus.PUBLISHED,
        ),
    ).slug
    session = create_session.sync(
        event,
        client=admin,
        body=NewSession(
            title="Социальное партнёрство",
            kind=SessionKind.BUSINESS_SESSION,
            starts_at=datetime.datetime.fromisoformat("2027-04-24T11:00:00+03:00"),
            ends_at=datetime.datetime.fromisoformat("2027-04-24T13:00:00+03:00"),
            capacity=80,
            status=SessionStatus.PUBLISHED,
        ),
    ).id
    device_key = create_api_key.sync(
        event, client=admin, body=NewApiKey(name="Принтер", scopes=[Scope.ATTENDEESREAD])
    ).key

    # The public side, anonymously. (The generator types operations whose security is
    # optional as needing an AuthenticatedClient; an anonymous Client works the same.)
    shown = expect(Programme, programme.sync_detailed(event, client=anonymous))
    [day] = shown.days
    assert [s.seats_left for s in day.sessions] == [80], day.sessions
    created = expect(
        RegistrationCreated,
        register.sync_detailed(
            event,
            client=anonymous,
            idempotency_key=str(uuid.uuid4()),
            body=NewRegistrationBody(
                full_name="Анна Сергеевна Иванова",
                email="anna@example.org",
                category="nonprofit",
                consent=True,
                session_ids=[session],
            ),
        ),
    )
    [outcome] = created.sessions
    assert outcome.status == SessionRegistrationStatus.CONFIRMED
    assert outcome.waitlist_position is None

    participant = AuthenticatedClient(
        base_url=base_url, token=created.manage_token, raise_on_unexpected_status=True
    )
    mine = expect(RegistrationView, get_registration.sync_detailed(created.id, client=participant))
    assert mine.organisation is None and mine.cancelled_at is None
    gone = expect(
        RegistrationView, cancel_registration.sync_detailed(created.id, client=participant)
    )
    assert gone.status == RegistrationStatus.CANCELLED and gone.cancelled_at is not None

    printer = AuthenticatedClient(
        base_url=base_url, token=device_key, raise_on_unexpected_status=True
    )
    feed = expect(AttendeeFeed, attendee_feed.sync_detailed(event, client=printer, limit=100))
    statuses = {record.registration_id: record.status for record in feed.items}
    assert statuses in ({}, {created.id: RegistrationStatus.CANCELLED}), statuses
    print(f"python client: {event}: registered, read, cancelled; feed at {feed.next_cursor}")


if __name__ == "__main__":
    main(*sys.argv[1:4])

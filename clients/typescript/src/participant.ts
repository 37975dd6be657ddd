// A participant on a third-party site: reads the programme, registers (safe to retry with an
// Idempotency-Key), reads the registration with the manage token, changes sessions, cancels.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

import { api, ok, type Schemas } from "./api.js";

/** A session with a seat left, as the programme shows it. */
function open(session: Schemas["ProgrammeSession"]): boolean {
  // Always sent: null means unlimited, never "unknown".
  const seatsLeft: number | null = session.seats_left;
  return session.status === "published" && (seatsLeft === null || seatsLeft > 0);
}

export async function participantFlow(
  baseUrl: string,
  event: string,
  email: string,
): Promise<Schemas["RegistrationView"]> {
  const anonymous = api(baseUrl);
  const programme = ok(
    await anonymous.GET("/api/v1/events/{event}/programme", {
      params: { path: { event } },
    }),
    "the programme",
  );
  const sessions = programme.days.flatMap((day) => day.sessions).filter(open);
  const [first, second] = sessions;
  if (first === undefined || second === undefined) {
    throw new Error(`two open sessions expected in ${event}'s programme`);
  }
  const venue: string | null = first.venue === null ? null : first.venue.name;
  console.log(`programme: ${sessions.length} open sessions; the first at ${venue ?? "no venue yet"}`);

  const body: Schemas["NewRegistrationBody"] = {
    full_name: "Анна Сергеевна Иванова",
    email,
    organisation: "АНО «Городские события»",
    city: "Мончегорск",
    category: "nonprofit",
    consent: true,
    session_ids: [first.id],
  };
  const key = randomUUID();
  const register = () =>
    anonymous.POST("/api/v1/events/{event}/registrations", {
      params: { path: { event }, header: { "Idempotency-Key": key } },
      body,
    });
  const created = ok(await register(), "registering");
  const [outcome] = created.sessions;
  assert.ok(outcome !== undefined);
  const position: number | null = outcome.waitlist_position;
  assert.equal(outcome.status, "confirmed");
  assert.equal(position, null);

  // A retry with the same key gets the same answer, marked as a replay.
  const retried = await register();
  assert.equal(ok(retried, "registering again").id, created.id);
  assert.equal(retried.response.headers.get("Idempotent-Replayed"), "true");
  assert.equal(retried.response.headers.get("Location"), `/api/v1/registrations/${created.id}`);

  // Null only where the event makes participants confirm their address first: the token then
  // arrives by mail, in the confirming link.
  const token: string | null = created.manage_token;
  if (token === null) {
    throw new Error(`${event} asks participants to confirm their address; this flow expects it not to`);
  }
  const participant = api(baseUrl, token);
  const path = { params: { path: { id: created.id } } };
  const mine = ok(await participant.GET("/api/v1/registrations/{id}", path), "reading it");
  const phone: string | null = mine.phone;
  assert.equal(phone, null);
  assert.equal(mine.cancelled_at, null);

  const changed = ok(
    await participant.PATCH("/api/v1/registrations/{id}", {
      ...path,
      body: { session_ids: [second.id], city: null },
    }),
    "changing sessions",
  );
  // The session given up stays listed, as cancelled.
  const held = changed.sessions.filter((place) => place.status !== "cancelled");
  assert.deepEqual(
    held.map((place) => place.session_id),
    [second.id],
  );
  assert.equal(changed.city, null);

  // The name cannot be cleared, and the types say so before the server does.
  // @ts-expect-error `full_name` is not nullable in a patch
  const clearing: Schemas["RegistrationPatch"] = { full_name: null };
  const refused = await participant.PATCH("/api/v1/registrations/{id}", {
    ...path,
    body: clearing,
  });
  assert.equal(refused.response.status, 422);

  const cancelled = ok(
    await participant.DELETE("/api/v1/registrations/{id}", path),
    "cancelling",
  );
  assert.equal(cancelled.status, "cancelled");
  const when: string | null = cancelled.cancelled_at;
  assert.notEqual(when, null);
  return cancelled;
}

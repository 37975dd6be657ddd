// Runs the participant flow and the badge printer's feed pull against a running service:
//   node build/main.js <base URL> <admin email> <admin password>
// An admin account sets up an event with two sessions and a device key first.

import assert from "node:assert/strict";

import { api, ok } from "./api.js";
import { participantFlow } from "./participant.js";
import { pullFeed } from "./printer.js";

const [baseUrl, email, password] = process.argv.slice(2);
if (baseUrl === undefined || email === undefined || password === undefined) {
  throw new Error("usage: node build/main.js <base URL> <admin email> <admin password>");
}

const tokens = ok(
  await api(baseUrl).POST("/api/v1/auth/login", { body: { email, password } }),
  "logging in",
);
const admin = api(baseUrl, tokens.access_token);
const event = ok(
  await admin.POST("/api/v1/events", {
    body: {
      slug: "typed-clients",
      title: "Деловая неделя",
      time_zone: "Europe/Moscow",
      starts_on: "2027-04-20",
      ends_on: "2027-04-24",
      status: "published",
    },
  }),
  "creating the event",
).slug;
for (const { title, starts, ends } of [
  { title: "Социальное партнёрство", starts: "11:00", ends: "13:00" },
  { title: "Волонтёрские проекты", starts: "14:00", ends: "15:30" },
]) {
  ok(
    await admin.POST("/api/v1/events/{event}/sessions", {
      params: { path: { event } },
      body: {
        title,
        kind: "business_session",
        starts_at: `2027-04-24T${starts}:00+03:00`,
        ends_at: `2027-04-24T${ends}:00+03:00`,
        capacity: 80,
        status: "published",
      },
    }),
    "adding a session",
  );
}
const deviceKey = ok(
  await admin.POST("/api/v1/events/{event}/api-keys", {
    params: { path: { event } },
    body: { name: "Принтер бейджей", scopes: ["attendees:read"] },
  }),
  "creating a device key",
).key;

const empty = await pullFeed(baseUrl, event, deviceKey);
assert.equal(empty.attendees.size, 0);

const cancelled = await participantFlow(baseUrl, event, "anna@example.org");
// Another participant, who keeps the registration.
const kept = ok(
  await api(baseUrl).POST("/api/v1/events/{event}/registrations", {
    params: { path: { event } },
    body: {
      full_name: "Ольга Петрова",
      email: "olga@example.org",
      category: "business",
      consent: true,
    },
  }),
  "registering",
);

// The feed brings the printer up to date from where it stopped, cancellations included.
let feed = await pullFeed(baseUrl, event, deviceKey, empty);
for (let tries = 0; !feed.attendees.has(kept.id) && tries < 50; tries++) {
  await new Promise((resolve) => setTimeout(resolve, 100));
  feed = await pullFeed(baseUrl, event, deviceKey, feed);
}
assert.deepEqual([...feed.attendees.keys()], [kept.id]);
assert.ok(!feed.attendees.has(cancelled.id));
const badge = feed.attendees.get(kept.id);
assert.ok(badge !== undefined);
const organisation: string | null = badge.organisation;
assert.equal(organisation, null);
assert.match(badge.qr_code, /^RG1\./);
console.log(`feed: ${feed.attendees.size} attendee(s) to print, cursor ${feed.cursor}`);

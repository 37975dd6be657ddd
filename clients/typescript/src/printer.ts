// A badge printer: pulls the attendee feed with its device key, from the start or from the
// cursor it kept, until it has caught up.

import { api, ok, type Schemas } from "./api.js";

export interface Feed {
  /** Active attendees, by registration id. */
  attendees: Map<string, Schemas["Attendee"]>;
  /** Where to resume the next time. */
  cursor: string;
}

export async function pullFeed(
  baseUrl: string,
  event: string,
  deviceKey: string,
  from?: Feed,
): Promise<Feed> {
  const printer = api(baseUrl, deviceKey);
  const attendees = new Map(from?.attendees ?? []);
  let since: string | undefined = from?.cursor;
  for (;;) {
    const page = ok(
      await printer.GET("/api/v1/events/{event}/attendees", {
        params: {
          path: { event },
          query: since === undefined ? { limit: 2 } : { since, limit: 2 },
        },
      }),
      "the attendee feed",
    );
    for (const attendee of page.items) {
      if (attendee.status === "cancelled") {
        attendees.delete(attendee.registration_id);
      } else {
        attendees.set(attendee.registration_id, attendee);
      }
    }
    since = page.next_cursor;
    if (page.items.length === 0) {
      return { attendees, cursor: since };
    }
  }
}

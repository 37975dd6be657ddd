"""Prints a schemathesis configuration that feeds path parameters with ids that exist.

Random ids only reach the "not found" branch of a handler; this reads the demo event's own
sessions, speakers, venues, tracks, registrations, device keys and users through the API, so
that most generated requests name real things and reach the handlers' logic. A share of the
requests keeps random values. Date and date-time members and the programme's `day` also get
extreme years now and then (FAR_DAYS, FAR_TIMES).

    python3 tests/fuzz/known_values.py BASE_URL ACCESS_TOKEN EVENT_SLUG BASE_CONFIG > config.toml
"""

import json
import sys
import urllib.request

# How often a path parameter takes a known value rather than a generated one.
PROBABILITY = 0.8

# Dates and date-times chrono reads but the API refuses (years outside 0001 to 9999, some
# of which PostgreSQL cannot store): each must be a 4xx naming the field, never a 500.
FAR_DAYS = ["-262143-01-01", "+262142-12-31", "0000-12-31", "10000-01-01", "9999-12-31"]
FAR_TIMES = [
    "-262143-04-24T11:00:00+03:00",
    "+262142-12-31T23:59:59Z",
    "0001-01-01T01:00:00+03:00",
    "9999-12-31T23:00:00-05:00",
    "9999-12-31T23:59:59Z",
]
FAR_DAY_FIELDS = ["query.day", "body.starts_on", "body.ends_on"]
FAR_TIME_FIELDS = [
    "body.starts_at",
    "body.ends_at",
    "body.registration_opens_at",
    "body.registration_closes_at",
    "body.scanned_at",
    "body.scans[*].scanned_at",
]
# How often a date field takes one of those instead of a generated value.
FAR_PROBABILITY = 0.2


def fetch(base, token, path):
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def every(base, token, path):
    """All items of a paginated list."""
    items, cursor = [], None
    while True:
        query = "?limit=200" + (f"&cursor={cursor}" if cursor else "")
        page = fetch(base, token, path + query)
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def toml_list(values):
    return "[" + ", ".join(json.dumps(str(v)) for v in values) + "]"


def main():
    base, token, slug, base_config = sys.argv[1:5]
    event = fetch(base, token, f"/api/v1/events/{slug}")["id"]
    root = f"/api/v1/events/{event}"
    users = [u["id"] for u in every(base, token, "/api/v1/users")]
    known = {
        # The id rather than the slug, which the run may change.
        "event": [event],
        "session_id": [s["id"] for s in every(base, token, f"{root}/sessions")],
        "speaker_id": [s["id"] for s in every(base, token, f"{root}/speakers")],
        "venue_id": [v["id"] for v in every(base, token, f"{root}/venues")],
        "track_id": [t["id"] for t in every(base, token, f"{root}/tracks")],
        "key_id": [k["id"] for k in every(base, token, f"{root}/api-keys")],
        "user_id": users,
        # Registrations and users both go by `{id}`.
        "id": [r["id"] for r in every(base, token, f"{root}/registrations")] + users,
    }
    with open(base_config, encoding="utf-8") as f:
        print(f.read())
    for name, values in known.items():
        if not values:
            sys.exit(f"the demo data has no {name} to offer")
        print(f"[dictionaries.{name}]\nvalues = {toml_list(values)}\n")
    print(f"[dictionaries.far_days]\nvalues = {toml_list(FAR_DAYS)}\n")
    print(f"[dictionaries.far_times]\nvalues = {toml_list(FAR_TIMES)}\n")
    print("[parameters]")
    for name in known:
        print(f'"path.{name}" = {{ dictionary = "{name}", probability = {PROBABILITY} }}')
    for dictionary, fields in [("far_days", FAR_DAY_FIELDS), ("far_times", FAR_TIME_FIELDS)]:
        for field in fields:
            print(f'"{field}" = {{ dictionary = "{dictionary}", probability = {FAR_PROBABILITY} }}')


if __name__ == "__main__":
    main()

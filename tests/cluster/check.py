"""The cluster test's client: drives a running deploy/cluster through HAProxy (and each
instance directly where it matters), kills an instance and the PostgreSQL primary under load,
and checks what clients were told against what the database holds. Run by tests/cluster/run,
which starts the cluster and passes its settings in the environment.

Every answer a client saw is recorded; every 201 must be in the database afterwards.
"""

import asyncio
import collections
import json
import os
import random
import resource
import subprocess
import sys
import time
import uuid

import aiohttp
import psycopg

ENV = os.environ
REPO = ENV["REPO"]
CLUSTER_DIR = ENV["CLUSTER_DIR"]
API = f"http://127.0.0.1:{ENV['CLUSTER_API_PORT']}"
INSTANCES = [
    f"http://127.0.0.1:{int(ENV['CLUSTER_INSTANCE_PORT']) + i}"
    for i in range(int(ENV["CLUSTER_INSTANCES"]))
]
NODES = {
    name: (int(ENV[f"CLUSTER_{name.upper()}_PG_PORT"]), int(ENV[f"CLUSTER_{name.upper()}_API_PORT"]))
    for name in ("node1", "node2")
}
PRIMARY_URL = f"postgresql://postgres@127.0.0.1:{ENV['CLUSTER_PRIMARY_PORT']}/registrar"
RATE_LIMIT = int(ENV["REGISTRAR_REGISTRATION_RATE_LIMIT"])
PASSWORD = "a long admin password for the cluster test"

results = []  # (passed, what)


def check(passed, what):
    results.append((bool(passed), what))
    print(f"  [{'ok' if passed else 'FAILED'}] {what}", flush=True)
    return passed


def say(text):
    print(text, flush=True)


def node_url(name, database="registrar"):
    return f"postgresql://postgres@127.0.0.1:{NODES[name][0]}/{database}"


def query(url, sql, *args):
    with psycopg.connect(url, connect_timeout=10) as conn:
        return conn.execute(sql, args).fetchall()


def pid_of(name):
    with open(os.path.join(CLUSTER_DIR, "pids", name)) as f:
        return int(f.read().strip())


# ---------------------------------------------------------------------------------------
# HTTP


class Answer:
    def __init__(self, status, headers, text, sent, received):
        self.status, self.headers, self.text = status, headers, text
        self.sent, self.received = sent, received

    def json(self):
        return json.loads(self.text)

    def is_problem(self):
        return self.headers.get("content-type", "").startswith("application/problem+json")

    def code(self):
        try:
            return self.json().get("code")
        except ValueError:
            return None


# The load's connections are kept alive (and its requests retried when a kept connection
# turns out closed); every other request gets a connection of its own, so that none is sent
# on a connection the other side is just closing.
http = None
control = None


async def call(method, url, body=None, headers=None, token=None, load=False):
    headers = dict(headers or {})
    if token:
        headers["authorization"] = f"Bearer {token}"
    sent = time.monotonic()
    async with (http if load else control).request(
        method, url, json=body, headers=headers
    ) as response:
        text = await response.text()
        return Answer(response.status, response.headers, text, sent, time.monotonic())


def registration_body(email, session_id):
    return {
        "full_name": "Участник Кластерного Теста",
        "email": email,
        "organisation": "АНО «Городские события»",
        "city": "Мончегорск",
        "category": "nonprofit",
        "consent": True,
        "session_ids": [session_id],
    }


class Participant:
    def __init__(self, scenario, number, session_id):
        self.email = f"s{scenario}-p{number}@example.org"
        self.key = f"cluster-{scenario}-{number}-{uuid.uuid4().hex[:8]}"
        # One client address each (X-Forwarded-For, which HAProxy extends and the instances
        # read behind their trusted proxy): the per-address limit is not what is measured.
        self.address = f"10.{scenario}.{number // 250}.{number % 250 + 1}"
        self.body = registration_body(self.email, session_id)
        self.answer = None  # the 201
        self.attempts = 0

    def headers(self):
        return {"idempotency-key": self.key, "x-forwarded-for": self.address}


class Load:
    """Participants registering, each retrying with its Idempotency-Key until it has a final
    answer; every answer is counted."""

    def __init__(self, label):
        self.label = label
        self.statuses = collections.Counter()
        self.unexpected = []  # (status, body) of answers that are failures
        self.transport_errors = 0
        self.replayed = 0
        self.done = []
        self.answers_503 = []  # (received, problem+json with Retry-After and a known code)
        self.created_times = []  # (sent, received) of each 201

    async def register(self, participant, base=API):
        while True:
            participant.attempts += 1
            try:
                answer = await call(
                    "POST",
                    f"{base}/api/v1/events/{EVENT}/registrations",
                    participant.body,
                    participant.headers(),
                    load=True,
                )
            except (aiohttp.ClientError, asyncio.TimeoutError):
                self.transport_errors += 1
                await asyncio.sleep(0.3)
                continue
            self.statuses[answer.status] += 1
            if answer.status == 201:
                participant.answer = answer
                self.created_times.append((answer.sent, answer.received))
                if answer.headers.get("idempotent-replayed") == "true":
                    self.replayed += 1
                self.done.append(participant)
                return
            if answer.status == 503:
                good = (
                    answer.is_problem()
                    and answer.headers.get("retry-after") is not None
                    and answer.code() in ("database_unavailable", "concurrent_request")
                )
                self.answers_503.append((answer.received, good))
                if not good:
                    self.unexpected.append((answer.status, answer.text[:300]))
                await asyncio.sleep(0.5)
                continue
            if answer.status == 502:
                # HAProxy: the instance that had the request died. Retry with the same key.
                await asyncio.sleep(0.2)
                continue
            if answer.status == 409 and answer.code() == "idempotency_key_in_use":
                await asyncio.sleep(0.2)
                continue
            self.unexpected.append((answer.status, answer.text[:300]))
            return

    async def run(self, participants, concurrency, base=API, during=None):
        queue = asyncio.Queue()
        for p in participants:
            queue.put_nowait(p)

        async def worker():
            while True:
                try:
                    p = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await self.register(p, base)

        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        if during:
            tasks.append(asyncio.create_task(during()))
        await asyncio.gather(*tasks)

    def summary(self):
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"{sum(self.statuses.values())} requests ({statuses}), "
            f"{self.transport_errors} connection errors, {self.replayed} replayed answers"
        )


# ---------------------------------------------------------------------------------------
# What the database holds


def stored(url, participants):
    """Registration id by email, for these participants (several ids if duplicated)."""
    emails = [p.email for p in participants]
    rows = query(
        url,
        "SELECT email, id::text FROM registrations WHERE email = ANY(%s) AND status = 'active'",
        emails,
    )
    by_email = collections.defaultdict(list)
    for email, rid in rows:
        by_email[email].append(rid)
    return by_email


def check_stored(url, participants, where):
    by_email = stored(url, participants)
    answered = [p for p in participants if p.answer is not None]
    missing = [p.email for p in answered if p.answer.json()["id"] not in by_email.get(p.email, [])]
    duplicated = [e for e, ids in by_email.items() if len(ids) > 1]
    check(
        not missing,
        f"every 201 is in the database {where}: {len(answered) - len(missing)} of {len(answered)} found"
        + (f"; missing: {missing[:5]}" if missing else ""),
    )
    check(
        not duplicated,
        f"one registration per participant, retries included ({len(by_email)} participants)"
        + (f"; duplicated: {duplicated[:5]}" if duplicated else ""),
    )


def check_session(url, session_id, capacity, participants, where):
    """Exact seats and a dense waitlist whose positions are those the clients were told."""
    rows = query(
        url,
        "SELECT rs.registration_id::text, rs.status, "
        "       CASE WHEN rs.status = 'waitlisted' THEN row_number() OVER ("
        "           PARTITION BY rs.status ORDER BY rs.waitlist_order) END, rs.seat_no "
        "FROM registration_sessions rs JOIN registrations r ON r.id = rs.registration_id "
        "WHERE rs.session_id = %s AND r.status = 'active'",
        session_id,
    )
    confirmed = [r for r in rows if r[1] == "confirmed"]
    waitlisted = sorted(r[2] for r in rows if r[1] == "waitlisted")
    expected_confirmed = min(capacity, len(rows))
    check(
        len(confirmed) == expected_confirmed,
        f"{where}: exactly {expected_confirmed} confirmed of {len(rows)} ({len(confirmed)})",
    )
    seats = sorted(r[3] for r in confirmed)
    check(
        seats == list(range(1, expected_confirmed + 1)),
        f"{where}: each of the {capacity} seats held by one confirmed registration",
    )
    check(
        waitlisted == list(range(1, len(rows) - expected_confirmed + 1)),
        f"{where}: the waitlist is dense, positions 1..{len(waitlisted)}",
    )
    in_db = {r[0]: (r[1], r[2]) for r in rows}
    told = {}
    for p in participants:
        if p.answer is None:
            continue
        body = p.answer.json()
        place = body["sessions"][0]
        told[body["id"]] = (place["status"], place["waitlist_position"])
    disagree = [rid for rid, place in told.items() if in_db.get(rid) != place]
    check(
        not disagree,
        f"{where}: what {len(told)} clients were told (status, position) is what is stored"
        + (f"; differs for {disagree[:3]}" if disagree else ""),
    )
    return in_db


async def replay_all(participants, label, bases=None):
    """Sends every completed registration again, with its key, spread over the instances
    (or `bases`): each must get its original answer."""
    mismatched, statuses = [], collections.Counter()
    bases = bases or INSTANCES

    async def one(i, p):
        base = bases[i % len(bases)]
        while True:
            try:
                answer = await call(
                    "POST", f"{base}/api/v1/events/{EVENT}/registrations", p.body, p.headers()
                )
                break
            except (aiohttp.ClientError, asyncio.TimeoutError):
                await asyncio.sleep(0.3)
        statuses[answer.status] += 1
        if answer.status != 201 or answer.headers.get("idempotent-replayed") != "true":
            mismatched.append((p.email, answer.status, answer.text[:200]))
            return
        original, again = p.answer.json(), answer.json()
        if (again["id"], again["manage_token"], again["sessions"]) != (
            original["id"],
            original["manage_token"],
            original["sessions"],
        ):
            mismatched.append((p.email, "different answer"))

    done = [p for p in participants if p.answer is not None]
    semaphore = asyncio.Semaphore(64)

    async def limited(i, p):
        async with semaphore:
            await one(i, p)

    await asyncio.gather(*(limited(i, p) for i, p in enumerate(done)))
    check(
        not mismatched,
        f"{label}: all {len(done)} keys sent again to {len(bases)} instances in turn got their original "
        f"answer (same id, manage token and place)" + (f"; not: {mismatched[:3]}" if mismatched else ""),
    )


# ---------------------------------------------------------------------------------------
# The cluster


def haproxy_servers():
    """HAProxy's view of the API instances: name -> (status, total sessions)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{ENV['CLUSTER_STATS_PORT']}/;csv", timeout=5) as r:
        lines = r.read().decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    servers = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == "instances" and row.get("svname", "").startswith("api"):
            servers[row["svname"]] = (row["status"], int(row["stot"] or 0))
    return servers


def patroni_role(name):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{NODES[name][1]}/patroni", timeout=3) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def primary_node():
    for name in NODES:
        state = patroni_role(name)
        if state and state.get("role") in ("master", "primary") and state.get("state") == "running":
            return name
    return None


def children_of(parent):
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # pid (comm) state ppid ...: comm may hold spaces, so split after it.
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent:
            children.append(int(entry))
    return children


def kill_node(name):
    """Kills a PostgreSQL node the way a machine dies: Patroni and every PostgreSQL process
    at once, with SIGKILL."""
    postmaster_pid = os.path.join(CLUSTER_DIR, name, "data", "postmaster.pid")
    with open(postmaster_pid) as f:
        postmaster = int(f.readline())
    pids = [pid_of(f"patroni-{name}"), postmaster] + children_of(postmaster)
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def script(*args):
    subprocess.run([os.path.join(REPO, "deploy/cluster", args[0]), *args[1:]], check=True)


async def wait_until(predicate, timeout, step=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


# ---------------------------------------------------------------------------------------
# Arranging


EVENT = "cluster-forum"


async def arrange():
    secrets = dict(
        line.split("=", 1) for line in open(os.path.join(CLUSTER_DIR, "secrets.env")).read().split()
    )
    env = dict(os.environ)
    env.update(secrets)
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{ENV['CLUSTER_POOLER_PORT']}/registrar",
        REGISTRAR_ENV="production",
        RUST_LOG="warn",
    )
    subprocess.run(
        [ENV["REGISTRAR_BIN"], "create-admin", "--email", "admin@example.org"],
        input=PASSWORD,
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )
    login = await call(
        "POST", f"{API}/api/v1/auth/login", {"email": "admin@example.org", "password": PASSWORD}
    )
    assert login.status == 200, login.text
    token = login.json()["access_token"]
    answer = await call(
        "POST",
        f"{API}/api/v1/events",
        {
            "slug": EVENT,
            "title": "Федеральный форум: проверка кластера",
            "time_zone": "Europe/Moscow",
            "starts_on": "2027-04-20",
            "ends_on": "2027-04-24",
            "status": "published",
        },
        token=token,
    )
    assert answer.status == 201, answer.text
    sessions = {}
    for name, capacity in (("A", 100), ("B", 5000), ("C", 100), ("D", 5000)):
        answer = await call(
            "POST",
            f"{API}/api/v1/events/{EVENT}/sessions",
            {
                "title": f"Сессия {name}",
                "kind": "business_session",
                "starts_at": "2027-04-24T11:00:00+03:00",
                "ends_at": "2027-04-24T13:00:00+03:00",
                "capacity": capacity,
                "status": "published",
            },
            token=token,
        )
        assert answer.status == 201, answer.text
        sessions[name] = answer.json()["id"]
    return token, sessions


# ---------------------------------------------------------------------------------------
# Scenarios


async def simultaneous_registrations(token, session_id):
    say("\n== 3,000 simultaneous registrations for a session of 100 seats, through HAProxy")
    before = haproxy_servers()
    participants = [Participant(1, i, session_id) for i in range(3000)]
    load = Load("burst")
    started = time.monotonic()
    await load.run(participants, concurrency=3000)
    took = time.monotonic() - started
    after = haproxy_servers()
    say(f"  {load.summary()} in {took:.1f} s ({len(participants) / took:.0f} registrations/s)")
    spread = {name: after[name][1] - before.get(name, (None, 0))[1] for name in after}
    check(
        len(spread) == len(INSTANCES) and all(n > 0 for n in spread.values()),
        f"spread over every instance: {spread}",
    )
    check(
        set(load.statuses) == {201} and load.transport_errors == 0 and not load.unexpected,
        f"every answer 201, no 5xx ({dict(load.statuses)}"
        + (f"; e.g. {load.unexpected[:2]}" if load.unexpected else "")
        + ")",
    )
    confirmed = sum(1 for p in load.done if p.answer.json()["sessions"][0]["status"] == "confirmed")
    check(confirmed == 100, f"exactly 100 clients were told 'confirmed' ({confirmed})")
    told = sorted(
        p.answer.json()["sessions"][0]["waitlist_position"]
        for p in load.done
        if p.answer.json()["sessions"][0]["status"] == "waitlisted"
    )
    check(told == list(range(1, 2901)), "each waitlist position 1..2900 was told to exactly one client")
    check_stored(PRIMARY_URL, participants, "(primary)")
    check_session(PRIMARY_URL, session_id, 100, participants, "session A")
    listing = await call(
        "GET", f"{API}/api/v1/events/{EVENT}/sessions/{session_id}/waitlist", token=token
    )
    by_id = {p.answer.json()["id"]: p.answer.json()["sessions"][0]["waitlist_position"] for p in load.done}
    entries = listing.json()
    check(
        listing.status == 200
        and [e["position"] for e in entries] == list(range(1, 2901))
        and all(by_id.get(e["registration_id"]) == e["position"] for e in entries),
        f"the organisers' waitlist lists the {len(entries)} places in the order and at the positions told",
    )
    return participants


async def idempotency_across_instances(participants, session_id):
    say("\n== Idempotency keys across instances")
    sample = random.Random(15).sample([p for p in participants if p.answer], 300)
    await replay_all(sample, "replays")
    # The same new request at the same moment on every instance: one registration.
    fresh = [Participant(4, i, session_id) for i in range(20)]
    ids, extra_statuses = collections.defaultdict(set), collections.Counter()

    async def everywhere(p):
        async def at(base):
            while True:
                try:
                    answer = await call(
                        "POST", f"{base}/api/v1/events/{EVENT}/registrations", p.body, p.headers()
                    )
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    await asyncio.sleep(0.2)
                    continue
                extra_statuses[answer.status] += 1
                if answer.status == 409 and answer.code() == "idempotency_key_in_use":
                    await asyncio.sleep(0.2)
                    continue
                if answer.status == 201:
                    ids[p.email].add(answer.json()["id"])
                    p.answer = answer
                return answer.status

        return await asyncio.gather(*(at(base) for base in INSTANCES))

    finals = await asyncio.gather(*(everywhere(p) for p in fresh))
    check(
        all(set(f) == {201} for f in finals) and all(len(ids[p.email]) == 1 for p in fresh),
        f"20 requests sent to all {len(INSTANCES)} instances at once with one key each: one id per "
        f"key in every answer (answers seen: {dict(extra_statuses)})",
    )
    by_email = stored(PRIMARY_URL, fresh)
    check(
        all(len(by_email.get(p.email, [])) == 1 for p in fresh),
        "and one registration each in the database",
    )
    p = fresh[0]
    other = dict(p.body, full_name="Другое Имя")
    answer = await call(
        "POST", f"{INSTANCES[-1]}/api/v1/events/{EVENT}/registrations", other, p.headers()
    )
    check(
        answer.status == 422 and answer.code() == "idempotency_key_reused",
        f"the key with another body, on another instance: 422 idempotency_key_reused ({answer.status})",
    )


async def rate_limit_across_instances(session_id):
    say(f"\n== The registration rate limit ({RATE_LIMIT} a minute per address) across instances")
    attempts = RATE_LIMIT + 15
    participants = [Participant(5, i, session_id) for i in range(attempts)]
    for p in participants:
        p.address = "10.250.0.1"
    statuses = collections.Counter()
    retry_after = []
    started = time.monotonic()

    async def one(i, p):
        answer = await call(
            "POST",
            f"{INSTANCES[i % len(INSTANCES)]}/api/v1/events/{EVENT}/registrations",
            p.body,
            p.headers(),
        )
        statuses[answer.status] += 1
        if answer.status == 429:
            retry_after.append(answer.headers.get("retry-after") is not None and answer.is_problem())

    await asyncio.gather(*(one(i, p) for i, p in enumerate(participants)))
    took = time.monotonic() - started
    # The limit lets RATE_LIMIT through at once, then one more per minute / RATE_LIMIT.
    refill = int(took / (60 / RATE_LIMIT))
    allowed = statuses[201]
    check(
        RATE_LIMIT <= allowed <= RATE_LIMIT + refill and statuses[429] == attempts - allowed,
        f"{attempts} registrations from one address over {len(INSTANCES)} instances in {took:.1f} s: "
        f"{allowed} accepted (limit {RATE_LIMIT}, +{refill} refilled meanwhile), {statuses[429]} refused 429",
    )
    check(all(retry_after), "each 429 is problem+json with Retry-After")


async def instance_killed(session_id):
    say("\n== One instance killed (SIGKILL) under load")
    participants = [Participant(2, i, session_id) for i in range(1500)]
    load = Load("instance")
    victim = "api2"
    killed_at = None

    async def kill_when_busy():
        nonlocal killed_at
        while len(load.done) < 300:
            await asyncio.sleep(0.01)
        os.kill(pid_of(victim), 9)
        killed_at = time.monotonic()

    await load.run(participants, concurrency=60, during=kill_when_busy)
    say(f"  killed {victim} after 300 registrations; {load.summary()}")
    retried = [p for p in participants if p.attempts > 1]
    say(f"  {len(retried)} participants retried with their key")
    down = await wait_until(lambda: haproxy_servers()[victim][0].startswith("DOWN"), 10)
    check(down, f"HAProxy marked {victim} down and routed around it")
    check(
        not load.unexpected and len(load.done) == len(participants),
        f"every participant ended with a 201 (no 500, no lost request: {len(load.done)} of "
        f"{len(participants)})" + (f"; e.g. {load.unexpected[:2]}" if load.unexpected else ""),
    )
    check_stored(PRIMARY_URL, participants, "(primary)")
    alive = [base for i, base in enumerate(INSTANCES) if f"api{i + 1}" != victim]
    await replay_all(retried + random.Random(2).sample(load.done, 100), "after the kill", alive)
    script("instance", victim[3:])
    up = await wait_until(lambda: haproxy_servers()[victim][0].startswith("UP"), 15)
    check(up, f"{victim} restarted and back in HAProxy's rotation")


async def primary_killed(session_id):
    say("\n== The PostgreSQL primary killed (Patroni and PostgreSQL, SIGKILL) under load")
    old = primary_node()
    check(old is not None, f"the primary is {old}")
    participants = [Participant(3, i, session_id) for i in range(1500)]
    load = Load("primary")
    killed_at = None

    async def kill_when_busy():
        nonlocal killed_at
        while len(load.done) < 200:
            await asyncio.sleep(0.01)
        kill_node(old)
        killed_at = time.monotonic()

    await load.run(participants, concurrency=60, during=kill_when_busy)
    new = primary_node()
    say(f"  killed {old} after 200 registrations; {load.summary()}")
    first_201_after = min(
        (received for sent, received in load.created_times if sent > killed_at), default=None
    )
    last_503 = max((t for t, _ in load.answers_503), default=None)
    if first_201_after is not None:
        say(
            f"  failover: no registration completed for {first_201_after - killed_at:.1f} s after "
            f"the kill; {len(load.answers_503)} answers 503"
            + (f", the last {last_503 - killed_at:.1f} s after the kill" if last_503 else "")
        )
    check(new is not None and new != old, f"Patroni promoted {new}")
    check(
        len(load.answers_503) > 0 and all(good for _, good in load.answers_503),
        f"while there was no primary: {len(load.answers_503)} answers 503 problem+json with "
        "Retry-After (database_unavailable)",
    )
    check(
        not load.unexpected and len(load.done) == len(participants),
        f"recovered by itself: every participant ended with a 201 ({len(load.done)} of "
        f"{len(participants)}; no 500 or 502)" + (f"; e.g. {load.unexpected[:2]}" if load.unexpected else ""),
    )
    check_stored(node_url(new), participants, f"on the new primary {new}")
    check_session(node_url(new), session_id, 100, participants, f"session C on {new}")
    await replay_all(
        [p for p in participants if p.attempts > 1] + random.Random(3).sample(load.done, 100),
        "after the failover",
    )
    # The old primary comes back as a standby of the new one (pg_rewind), synchronous again.
    script("node", old[4:])
    started = time.monotonic()
    rejoined = await wait_until(
        lambda: (patroni_role(old) or {}).get("role") == "replica"
        and subprocess.run(
            ["curl", "-fs", "-o", "/dev/null", f"http://127.0.0.1:{NODES[old][1]}/sync"]
        ).returncode
        == 0,
        120,
    )
    check(rejoined, f"{old} rejoined as the synchronous standby in {time.monotonic() - started:.0f} s")
    if rejoined:
        await asyncio.sleep(1)
        check_stored(node_url(old), participants, f"on the rejoined standby {old}")


async def feed_and_print_leases(token):
    say("\n== Feed cursors and print leases, whichever instance answers")
    keys = []
    for name in ("Принтер A", "Принтер B"):
        answer = await call(
            "POST",
            f"{API}/api/v1/events/{EVENT}/api-keys",
            {"name": name, "scopes": ["attendees:read", "badges:print", "checkin:write"]},
            token=token,
        )
        assert answer.status == 201, answer.text
        keys.append(answer.json()["key"])
    active = {
        r[0]
        for r in query(
            PRIMARY_URL,
            "SELECT r.id::text FROM registrations r JOIN events e ON e.id = r.event_id "
            "WHERE e.slug = %s AND r.status = 'active'",
            EVENT,
        )
    }
    seen, pages, cursor = collections.Counter(), 0, None
    while True:
        base = INSTANCES[pages % len(INSTANCES)]
        url = f"{base}/api/v1/events/{EVENT}/attendees?limit=1000" + (f"&since={cursor}" if cursor else "")
        answer = await call("GET", url, token=keys[0])
        assert answer.status == 200, answer.text
        page = answer.json()
        pages += 1
        for item in page["items"]:
            seen[item["registration_id"]] += 1
        cursor = page["next_cursor"] or cursor
        if not page["items"]:
            break
    check(
        set(seen) == active and all(n == 1 for n in seen.values()),
        f"the feed, paged over the instances in turn ({pages} pages), gave each of the {len(active)} "
        f"attendees once",
    )
    late = [Participant(6, i, SESSIONS["D"]) for i in range(5)]
    load = Load("late")
    await load.run(late, concurrency=5, base=INSTANCES[0])
    late_ids = {p.answer.json()["id"] for p in late}
    answers = []
    for base in INSTANCES[1:] + INSTANCES[:1]:
        answer = await call(
            "GET", f"{base}/api/v1/events/{EVENT}/attendees?limit=1000&since={cursor}", token=keys[0]
        )
        answers.append({i["registration_id"] for i in answer.json()["items"]})
    check(
        all(a == late_ids for a in answers),
        "5 registrations made on one instance: the same cursor gives exactly them on every instance",
    )

    # Claiming queues a job for every attendee without a printed badge: all of them here.
    active = {
        r[0]
        for r in query(
            PRIMARY_URL,
            "SELECT r.id::text FROM registrations r JOIN events e ON e.id = r.event_id "
            "WHERE e.slug = %s AND r.status = 'active' AND r.badge_printed_at IS NULL",
            EVENT,
        )
    }
    attendees = collections.Counter()
    claimed = collections.Counter()
    holder = {}

    async def printer(index):
        calls = 0
        while True:
            base = INSTANCES[(calls + index) % len(INSTANCES)]
            calls += 1
            answer = await call(
                "POST",
                f"{base}/api/v1/events/{EVENT}/print-jobs/claim",
                {"batch_size": 100, "lease_seconds": 600},
                token=keys[index],
            )
            assert answer.status == 200, answer.text
            jobs = answer.json()["jobs"]
            if not jobs:
                return
            for job in jobs:
                claimed[job["id"]] += 1
                attendees[job["attendee"]["registration_id"]] += 1
                holder[job["id"]] = index

    await asyncio.gather(printer(0), printer(1))
    check(
        set(attendees) == active
        and all(n == 1 for n in attendees.values())
        and all(n == 1 for n in claimed.values()),
        f"two printers claiming over all instances at once: one badge job for each of the "
        f"{len(active)} attendees, each leased to exactly one printer "
        f"({sum(1 for h in holder.values() if h == 0)} / "
        f"{sum(1 for h in holder.values() if h == 1)})",
    )
    job = next(j for j, h in holder.items() if h == 0)
    wrong = await call(
        "POST", f"{INSTANCES[2 % len(INSTANCES)]}/api/v1/events/{EVENT}/print-jobs/{job}/done", token=keys[1]
    )
    right = await call("POST", f"{INSTANCES[1]}/api/v1/events/{EVENT}/print-jobs/{job}/done", token=keys[0])
    again = await call("POST", f"{INSTANCES[0]}/api/v1/events/{EVENT}/print-jobs/{job}/done", token=keys[0])
    check(
        wrong.status == 409 and wrong.code() == "lease_lost" and right.status == 200 and again.status == 200,
        f"a lease taken on one instance: the other printer is refused on another ({wrong.status}), "
        f"the holder completes it on a third ({right.status}, again {again.status})",
    )


SESSIONS = {}


async def main():
    global http, control
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 16384), hard), hard))
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=90)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=timeout
    ) as session, aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=True), timeout=timeout
    ) as fresh:
        http, control = session, fresh
        token, sessions = await arrange()
        SESSIONS.update(sessions)
        burst = await simultaneous_registrations(token, sessions["A"])
        await idempotency_across_instances(burst, sessions["D"])
        await rate_limit_across_instances(sessions["D"])
        await instance_killed(sessions["B"])
        await primary_killed(sessions["C"])
        await feed_and_print_leases(token)
    failed = sum(1 for passed, _ in results if not passed)
    say(f"\ncluster test: {time.monotonic() - started:.0f} s")
    for passed, what in results:
        if not passed:
            say(f"FAILED: {what}")
    say(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

// The registration widget in a real browser: Debian's Chromium driven by playwright-core, the
// widget embedded (with the README's integrity hash) in pages of two other origins, one the
// service allows and one it does not. Run by ./run, which starts the service; arguments come
// from the environment:
//   REGISTRAR_URL  the service, e.g. http://127.0.0.1:8123
//   HOST_PORT      port of the allowed page's origin (in REGISTRAR_CORS_ORIGINS)
//   FOREIGN_PORT   port of an origin the service does not allow
//   ADMIN_EMAIL, ADMIN_PASSWORD, ARTIFACTS (screenshots), CHROMIUM (the browser)
import assert from "node:assert/strict";
import { readFileSync, mkdirSync } from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env("REGISTRAR_URL");
const hostPort = Number(env("HOST_PORT"));
const foreignPort = Number(env("FOREIGN_PORT"));
const artifacts = env("ARTIFACTS");
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
mkdirSync(artifacts, { recursive: true });

// The snippet's integrity hash, as the README gives it: the page embeds exactly that.
const readme = readFileSync(path.join(here, "../../README.md"), "utf8");
const integrity = /integrity="(sha384-[A-Za-z0-9+/=]+)"/.exec(readme)?.[1];
assert.ok(integrity, "README gives the widget's integrity hash");

/* ---------- the API, as the organiser and as other participants ---------- */

async function call(method, url, { token, body, headers = {} } = {}) {
  const response = await fetch(`${base}/api/v1${url}`, {
    method,
    headers: {
      ...(body ? { "content-type": "application/json" } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function ok(promise, what, status = [200, 201]) {
  const answer = await promise;
  assert.ok(status.includes(answer.status), `${what}: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body;
}

const login = await ok(call("POST", "/auth/login", { body: { email: env("ADMIN_EMAIL"), password: env("ADMIN_PASSWORD") } }), "logging in");
const token = login.access_token;
const EVENT = "widget-check";

// Dates a few weeks ahead, so that registration is open.
const start = new Date(Date.now() + 30 * 86400_000);
const day = (offset) => new Date(start.getTime() + offset * 86400_000).toISOString().slice(0, 10);

await ok(
  call("POST", "/events", {
    token,
    body: {
      slug: EVENT,
      title: "Деловая неделя: проверка виджета",
      time_zone: "Europe/Moscow",
      starts_on: day(0),
      ends_on: day(1),
      city: "Мончегорск",
      status: "published",
      manage_url_template: `http://127.0.0.1:${hostPort}/manage?r={id}&t={token}`,
    },
  }),
  "creating the event",
);
const venue = await ok(call("POST", `/events/${EVENT}/venues`, { token, body: { name: "ДК «Металлург»", city: "Мончегорск" } }), "venue");
const track = await ok(
  call("POST", `/events/${EVENT}/tracks`, { token, body: { title: "Социальное партнёрство", colour: "#1f6feb" } }),
  "track",
);

async function session(title, offset, hours, capacity, waitlist) {
  const [from, to] = hours;
  const created = await ok(
    call("POST", `/events/${EVENT}/sessions`, {
      token,
      body: {
        title,
        kind: "business_session",
        starts_at: `${day(offset)}T${from}:00+03:00`,
        ends_at: `${day(offset)}T${to}:00+03:00`,
        capacity,
        waitlist_enabled: waitlist,
        status: "published",
        venue_id: venue.id,
        track_id: track.id,
      },
    }),
    `session ${title}`,
  );
  return created.id;
}

const S = {
  open: await session("Пленарное заседание", 0, ["10:00", "12:00"], 100, false),
  waitlist: await session("Мастер-класс по социальному проектированию", 0, ["13:00", "14:30"], 1, true),
  full: await session("Круглый стол волонтёров", 0, ["15:00", "16:30"], 1, false),
  last: await session("Экскурсия на комбинат", 1, ["10:00", "13:00"], 1, false),
};

let people = 0;
function participant(email, sessions) {
  return ok(
    call("POST", `/events/${EVENT}/registrations`, {
      body: { full_name: `Участник ${++people}`, email, category: "business", consent: true, session_ids: sessions },
    }),
    `registering ${email}`,
  );
}
// The waitlisted session: one seat taken, one already waiting. The full one: its seat taken.
await participant("first@example.org", [S.waitlist]);
await participant("second@example.org", [S.waitlist]);
await participant("third@example.org", [S.full]);

async function registrations() {
  const page = await ok(call("GET", `/events/${EVENT}/registrations?limit=200`, { token }), "listing registrations");
  return page.items;
}

// Today's service has no registration form (404): the widget falls back to the fixed fields.
const formAnswer = await call("GET", `/events/${EVENT}/registration-form`);
assert.ok([200, 404].includes(formAnswer.status), `registration-form: ${formAnswer.status}`);
const hasForms = formAnswer.status === 200;

/* ---------- the pages that embed it, on two other origins ---------- */

function page(lang) {
  return `<!doctype html>
<html lang="ru">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Партнёрский портал</title>
<style>
  /* A host page's own styles, which must not reach into the widget. */
  body { font-family: Georgia, serif; background: #f6f8fa; margin: 0; padding: 24px; color: #222; }
  input, select { border: 5px dashed rgb(255, 0, 0); }
  label { text-transform: uppercase; }
  .field, .session { display: none; }
  /* Styling the widget the documented ways. */
  registrar-registration { --registrar-accent: #0b5394; --registrar-radius: 12px; }
  registrar-registration::part(button) { letter-spacing: 0.02em; }
</style>
<script src="${base}/widget/v1/registrar.js" integrity="${integrity}" crossorigin="anonymous" defer></script>
</head>
<body>
<main>
  <h1>Партнёрский портал</h1>
  <registrar-registration event="${EVENT}"${lang ? ` lang="${lang}"` : ""}></registrar-registration>
  <p class="muted">Текст страницы вне виджета.</p>
  <button id="host-button" type="button">Кнопка страницы</button>
</main>
</body>
</html>`;
}

function serve(port) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, `http://127.0.0.1:${port}`);
    if (url.pathname === "/favicon.ico") {
      res.writeHead(204);
      res.end();
    } else if (url.pathname === "/" || url.pathname === "/en") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(page(url.pathname === "/en" ? "en" : null));
    } else {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
    }
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}
const servers = [await serve(hostPort), await serve(foreignPort)];
const allowedPage = `http://127.0.0.1:${hostPort}/`;
const foreignPage = `http://127.0.0.1:${foreignPort}/`;

/* ---------- the browser ---------- */

const browser = await chromium.launch({
  executablePath: browserPath,
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
});
const context = await browser.newContext({ viewport: { width: 900, height: 1000 }, locale: "ru-RU" });
// Generous: the machine running the tests may be busy with other work.
context.setDefaultTimeout(20_000);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const results = [];
const tabs = [];

async function open(url = allowedPage) {
  const tab = await context.newPage();
  const problems = [];
  tab.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  tab.on("console", (message) => {
    // The service answers 404 for a registration form it does not have; that is expected.
    const where = message.location().url || "";
    if (message.type() === "error" && !where.endsWith("/registration-form")) {
      problems.push(`console: ${message.text()} (${where})`);
    }
  });
  tab.problems = problems;
  // What the widget asked the service for, by path: it loads the event once.
  tab.fetched = [];
  tab.on("request", (request) => {
    if (request.url().startsWith(base)) tab.fetched.push(new URL(request.url()).pathname);
  });
  tabs.push(tab);
  await tab.goto(url);
  return tab;
}

const widget = (tab) => tab.locator("registrar-registration");
const field = (tab, name) => widget(tab).locator(`[data-field="${name}"]`);
const sessionRow = (tab, id) => widget(tab).locator(`li[data-session="${id}"]`);
const outcome = (tab) => widget(tab).locator(".outcome");

async function ready(tab) {
  await widget(tab).locator("form").waitFor();
}

async function shot(tab, name) {
  await widget(tab).screenshot({ path: path.join(artifacts, `${name}.png`) });
}

/** axe-core on the rendered widget: no serious or critical violations. */
async function accessible(tab, state) {
  await tab.evaluate(axeSource);
  const violations = await tab.evaluate(async () => {
    const result = await window.axe.run(document.querySelector("registrar-registration"), { resultTypes: ["violations"] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")) }));
  });
  const serious = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(serious, [], `axe-core (${state}): ${JSON.stringify(serious, null, 2)}`);
  return violations.length;
}

async function fillPerson(tab, name, email) {
  await field(tab, "full_name").locator("input").fill(name);
  await field(tab, "email").locator("input").fill(email);
  if (await field(tab, "organisation").count()) await field(tab, "organisation").locator("input").fill("АНО «Городские события»");
  const category = field(tab, "category").locator("select");
  if (await category.count()) {
    const codes = await category.locator("option:not([disabled])").evaluateAll((options) => options.map((o) => o.value));
    await category.selectOption(codes.includes("nonprofit") ? "nonprofit" : codes.find(Boolean));
  }
  // Every consent: the fixed one (`consent`) or the event's own (`consents.<key>`).
  for (const box of await widget(tab).locator('[data-field^="consent"] input[type=checkbox]').all()) await box.check();
}

async function scenario(name, run) {
  const started = Date.now();
  try {
    await run();
    results.push(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    results.push(`FAIL ${name}`);
    console.error(`FAIL ${name}\n${error.stack || error}`);
    for (const [i, tab] of tabs.entries()) {
      if (tab.problems.length) console.error(tab.problems.join("\n"));
      if (!tab.isClosed()) await tab.screenshot({ path: path.join(artifacts, `failed-${results.length}-${i}.png`), fullPage: true });
    }
    process.exitCode = 1;
  }
  for (const tab of tabs.splice(0)) if (!tab.isClosed()) await tab.close();
}

await scenario("renders the programme and the form, isolated from the page's styles, accessible", async () => {
  const tab = await open();
  await ready(tab);
  // Loaded once: a second load would draw the form again over what the person typed. The
  // host element's own attributes are the page's (`lang` set by the widget reloaded it).
  await tab.waitForLoadState("networkidle");
  const programme = `/api/v1/events/${EVENT}/programme`;
  assert.equal(tab.fetched.filter((p) => p === programme).length, 1, `the programme fetched once: ${tab.fetched.join(", ")}`);
  assert.equal(await widget(tab).getAttribute("lang"), null);
  // The programme: days, tracks, seats left, full and waitlist states.
  assert.equal(await widget(tab).locator("fieldset[part~=day]").count(), 2);
  assert.match(await sessionRow(tab, S.open).locator(".seats").innerText(), /Свободных мест: 100/);
  assert.match(await sessionRow(tab, S.waitlist).locator(".seats").innerText(), /лист ожидания \(в очереди: 1\)/);
  assert.match(await sessionRow(tab, S.full).locator(".seats").innerText(), /^Мест нет$/);
  assert.ok(await sessionRow(tab, S.full).locator("input").isDisabled());
  assert.match(await sessionRow(tab, S.open).innerText(), /Социальное партнёрство/);
  // Russian, the event's language, without a `lang` attribute; every field labelled.
  assert.match(await field(tab, "full_name").locator("label").innerText(), /Фамилия, имя, отчество/);
  if (!hasForms) {
    for (const name of ["full_name", "email", "organisation", "position", "city", "phone", "category", "consent"]) {
      assert.equal(await field(tab, name).count(), 1, `the fixed field ${name}`);
    }
  }
  // The page's styles do not reach in...
  const input = field(tab, "email").locator("input");
  assert.notEqual(await input.evaluate((el) => getComputedStyle(el).borderTopStyle), "dashed");
  assert.equal(await field(tab, "email").locator("label").evaluate((el) => getComputedStyle(el).textTransform), "none");
  assert.ok(await field(tab, "email").isVisible());
  // ...and the widget's do not reach out; the documented hooks do reach in.
  assert.equal(await tab.locator("#host-button").evaluate((el) => getComputedStyle(el).backgroundColor) === "rgb(11, 83, 148)", false);
  const button = widget(tab).locator("button[type=submit]");
  assert.equal(await button.evaluate((el) => getComputedStyle(el).backgroundColor), "rgb(11, 83, 148)");
  assert.equal(await button.evaluate((el) => getComputedStyle(el).letterSpacing), "0.32px");
  await shot(tab, "1-form");
  await accessible(tab, "form");
  assert.deepEqual(tab.problems, []);
  await tab.close();
});

let confirmedEmail = "anna@example.org";
await scenario("confirmed: the answer lost once, the retry keeps its Idempotency-Key, one registration", async () => {
  const tab = await open();
  await ready(tab);
  const keys = [];
  let lost = false;
  await tab.route(`${base}/api/v1/events/${EVENT}/registrations`, async (route) => {
    if (route.request().method() !== "POST") return route.continue();
    keys.push(route.request().headers()["idempotency-key"]);
    if (!lost) {
      // The request reaches the service, its answer never reaches the page.
      lost = true;
      await route.fetch();
      return route.abort("connectionreset");
    }
    return route.continue();
  });
  await fillPerson(tab, "Анна Сергеевна Иванова", confirmedEmail);
  await sessionRow(tab, S.open).locator("input").check();
  await widget(tab).locator("button[type=submit]").click();
  await outcome(tab).filter({ hasText: "Не удалось отправить" }).waitFor();
  await widget(tab).locator("button[type=submit]").click();
  await outcome(tab).locator("strong").filter({ hasText: "Вы зарегистрированы" }).waitFor();

  assert.equal(keys.length, 2);
  assert.ok(keys[0] && keys[0] === keys[1], `the same key both times: ${keys}`);
  assert.equal(await outcome(tab).getAttribute("data-status"), "confirmed");
  assert.equal(await outcome(tab).getAttribute("aria-live"), "polite");
  assert.ok(await outcome(tab).evaluate((el) => el.getRootNode().activeElement === el), "the outcome has the focus");
  assert.match(await outcome(tab).innerText(), /Пленарное заседание: место подтверждено/);
  assert.match(await outcome(tab).innerText(), /Эта регистрация уже была получена/);
  const manageToken = await outcome(tab).locator("[part=token]").innerText();
  assert.match(manageToken, /^rgm_/);
  const href = await outcome(tab).locator("a[part=manage-link]").getAttribute("href");
  const link = new URL(href);
  assert.equal(link.origin, `http://127.0.0.1:${hostPort}`);
  assert.equal(link.searchParams.get("t"), manageToken);
  // The token works, and there is one registration however many times it was sent.
  const own = await ok(call("GET", `/registrations/${link.searchParams.get("r")}`, { token: manageToken }), "the manage token");
  assert.equal(own.email, confirmedEmail);
  const mine = (await registrations()).filter((r) => r.email === confirmedEmail);
  assert.equal(mine.length, 1);
  await shot(tab, "2-confirmed");
  await accessible(tab, "confirmed");
  await tab.close();
});

await scenario("waitlisted with its position, by keyboard alone", async () => {
  const tab = await open();
  await ready(tab);
  await field(tab, "full_name").locator("input").focus();
  await tab.keyboard.type("Пётр Николаевич Смирнов");
  await tab.keyboard.press("Tab");
  await tab.keyboard.type("petr@example.org");
  await field(tab, "category").locator("select").focus();
  await tab.keyboard.press("ArrowDown");
  const box = sessionRow(tab, S.waitlist).locator("input");
  await box.focus();
  await tab.keyboard.press("Space");
  assert.ok(await box.isChecked());
  await widget(tab).locator('[data-field^="consent"] input[type=checkbox]').first().focus();
  await tab.keyboard.press("Space");
  await field(tab, "email").locator("input").focus();
  await tab.keyboard.press("Enter");
  await outcome(tab).locator("strong").waitFor();

  assert.equal(await outcome(tab).getAttribute("data-status"), "waitlisted");
  const row = outcome(tab).locator(`li[data-session="${S.waitlist}"]`);
  assert.equal(await row.getAttribute("data-status"), "waitlisted");
  assert.match(await row.innerText(), /лист ожидания, место в очереди: 2/);
  await shot(tab, "3-waitlisted");
  await accessible(tab, "waitlisted");
  await tab.close();
});

await scenario("full session: shown full, and one filled meanwhile is named at the session", async () => {
  const tab = await open();
  await ready(tab);
  assert.ok(await sessionRow(tab, S.full).locator("input").isDisabled());
  assert.match(await sessionRow(tab, S.last).locator(".seats").innerText(), /Свободных мест: 1/);
  await fillPerson(tab, "Мария Ивановна Кузнецова", "maria@example.org");
  await sessionRow(tab, S.last).locator("input").check();
  // Someone else takes the last seat while the page is open, before this participant sends.
  await participant("quick@example.org", [S.last]);
  await widget(tab).locator("button[type=submit]").click();
  await sessionRow(tab, S.last).locator(".error").filter({ hasText: "мест больше нет" }).waitFor();

  assert.ok(await sessionRow(tab, S.last).locator("input").isDisabled());
  assert.equal(await sessionRow(tab, S.last).locator("input").getAttribute("aria-invalid"), "true");
  assert.match(await sessionRow(tab, S.last).locator(".seats").innerText(), /^Мест нет$/);
  assert.ok(await widget(tab).locator(".summary").evaluate((el) => el.getRootNode().activeElement === el), "the summary has the focus");
  assert.equal((await registrations()).filter((r) => r.email === "maria@example.org").length, 0);
  await shot(tab, "4-full");
  await accessible(tab, "full");
  await tab.close();
});

await scenario("validation error from the service, shown at its field", async () => {
  const tab = await open();
  await ready(tab);
  await fillPerson(tab, "Ольга Петрова", "olga.example.org");
  const answer = tab.waitForResponse((r) => r.url().endsWith("/registrations") && r.request().method() === "POST");
  await widget(tab).locator("button[type=submit]").click();
  const problem = await (await answer).json();
  assert.equal(problem.code, "validation_failed");
  assert.deepEqual(problem.errors.map((e) => e.field), ["email"]);

  const email = field(tab, "email");
  await email.locator(".error").filter({ hasText: "Это не адрес электронной почты" }).waitFor();
  const input = email.locator("input");
  assert.equal(await input.getAttribute("aria-invalid"), "true");
  assert.match(await input.getAttribute("aria-describedby"), new RegExp(await email.locator(".error").getAttribute("id")));
  assert.ok(await input.evaluate((el) => el.getRootNode().activeElement === el), "the field in error has the focus");
  assert.equal(await widget(tab).locator(".summary").getAttribute("role"), "alert");
  await shot(tab, "5-validation");
  await accessible(tab, "validation");
  // A required field left empty is named before anything is sent.
  await field(tab, "full_name").locator("input").fill("");
  await widget(tab).locator("button[type=submit]").click();
  await field(tab, "full_name").locator(".error").filter({ hasText: "Заполните это поле" }).waitFor();
  assert.equal(await field(tab, "full_name").locator("input").getAttribute("aria-invalid"), "true");
  await shot(tab, "5-validation-required");
  await tab.close();
});

await scenario("duplicate registration: said so, and the link can be sent again", async () => {
  const tab = await open();
  await ready(tab);
  await fillPerson(tab, "Анна Иванова", confirmedEmail.toUpperCase());
  await widget(tab).locator("button[type=submit]").click();
  await outcome(tab).filter({ hasText: "уже зарегистрирован" }).waitFor();
  const resent = tab.waitForResponse((r) => r.url().endsWith("/registrations/resend"));
  await outcome(tab).locator("button").click();
  assert.equal((await resent).status(), 202);
  await outcome(tab).filter({ hasText: "новая ссылка" }).waitFor();
  assert.equal((await registrations()).filter((r) => r.email === confirmedEmail).length, 1);
  await shot(tab, "6-duplicate");
  await accessible(tab, "duplicate");
  await tab.close();
});

await scenario("English on request (lang=\"en\")", async () => {
  const tab = await open(`${allowedPage}en`);
  await ready(tab);
  assert.equal(await field(tab, "full_name").locator("label").innerText(), "Full name (required)");
  assert.match(await sessionRow(tab, S.open).locator(".seats").innerText(), /99 seats left|100 seats left/);
  assert.match(await sessionRow(tab, S.waitlist).locator(".seats").innerText(), /Full: waitlist \(\d+ waiting\)/);
  await shot(tab, "7-english");
  await accessible(tab, "english");
  await tab.close();
});

await scenario("an event that asks for the address to be confirmed: the deadline, no token", async () => {
  await ok(call("PATCH", `/events/${EVENT}`, { token, body: { require_email_confirmation: true } }), "asking for confirmation");
  const tab = await open();
  await ready(tab);
  await fillPerson(tab, "Вера Павловна Соколова", "vera@example.org");
  await widget(tab).locator("button[type=submit]").click();
  await outcome(tab).locator("strong").waitFor();
  assert.equal(await outcome(tab).getAttribute("data-status"), "confirmed");
  assert.match(await outcome(tab).innerText(), /Вы зарегистрированы на мероприятие/);
  assert.match(await outcome(tab).innerText(), /Подтвердите адрес электронной почты по ссылке из письма до \d/);
  assert.equal(await outcome(tab).locator("[part=token]").count(), 0);
  assert.equal(await outcome(tab).locator("a[part=manage-link]").count(), 0);
  await ok(call("PATCH", `/events/${EVENT}`, { token, body: { require_email_confirmation: false } }), "confirmation off");
  await accessible(tab, "address to be confirmed");
  await tab.close();
});

// The event's own form: its questions, an option with places, a condition, and the required
// consent.
if (hasForms) {
  await scenario("the event's own form: a question, a condition, an option with places, the consent", async () => {
    const label = (ru, en) => ({ ru, en });
    await ok(
      call("POST", `/events/${EVENT}/questions`, {
        token,
        body: { key: "transfer", type: "yes_no", label: label("Нужен трансфер из аэропорта?", "Do you need an airport transfer?"), required: true },
      }),
      "question transfer",
    );
    await ok(
      call("POST", `/events/${EVENT}/questions`, {
        token,
        body: {
          key: "visit",
          type: "single_choice",
          label: label("Что посетить по дороге?", "What to visit on the way?"),
          required: true,
          shown_when: { question: "transfer", equals: true },
          options: [
            { key: "plant", label: label("Комбинат", "The plant"), capacity: 1 },
            { key: "museum", label: label("Музей", "The museum"), capacity: null },
          ],
        },
      }),
      "question visit",
    );
    // Every event asks for the consent to the processing of personal data (`personal_data`).
    const form = await ok(call("GET", `/events/${EVENT}/registration-form`), "the form");

    const tab = await open();
    await ready(tab);
    assert.equal(await field(tab, "consent").count(), 0, "the event's consents replace the fixed one");
    assert.equal(await field(tab, "consents.personal_data").count(), 1);
    const transfer = field(tab, "answers.transfer");
    assert.equal(await transfer.evaluate((el) => el.tagName), "FIELDSET");
    assert.match(await transfer.locator("legend").innerText(), /Нужен трансфер/);
    const visit = field(tab, "answers.visit");
    assert.ok(await visit.isHidden(), "shown only when a transfer is needed");
    assert.match(await visit.locator("label").first().innerText(), /осталось 1/);

    // Someone else takes the option's last place while the page is open.
    const category = form.categories.find((c) => !c.full && c.open !== false)?.code;
    await ok(
      call("POST", `/events/${EVENT}/registrations`, {
        body: {
          full_name: "Быстрый участник",
          email: "fast@example.org",
          ...(category ? { category } : {}),
          answers: { transfer: true, visit: "plant" },
          consents: { personal_data: true },
        },
      }),
      "taking the option's last place",
    );
    await fillPerson(tab, "Иван Андреевич Орлов", "ivan@example.org");
    await field(tab, "consents.personal_data").locator("input").uncheck();
    await transfer.getByLabel("Да").check();
    await visit.waitFor();
    await visit.getByLabel(/Комбинат/).check();
    await widget(tab).locator("button[type=submit]").click();
    // The required consent is named before anything is sent.
    await field(tab, "consents.personal_data").locator(".error").filter({ hasText: "Без этого согласия" }).waitFor();
    await field(tab, "consents.personal_data").locator("input").check();
    await widget(tab).locator("button[type=submit]").click();
    // The option filled meanwhile: refused by the service, named at the question.
    await visit.locator(".error").filter({ hasText: /\S/ }).waitFor();
    assert.equal(await visit.locator("input").first().getAttribute("aria-invalid"), "true");
    await shot(tab, "9-form-option-full");
    await accessible(tab, "form questions");
    await visit.getByLabel(/Музей/).check();
    await widget(tab).locator("button[type=submit]").click();
    await outcome(tab).locator("strong").filter({ hasText: "Вы зарегистрированы" }).waitFor();
    const mine = (await registrations()).find((r) => r.email === "ivan@example.org");
    assert.ok(mine, "registered");
    const full = await ok(call("GET", `/registrations/${mine.id}`, { token }), "the registration");
    assert.deepEqual(full.answers, { transfer: true, visit: "museum" });
    await shot(tab, "10-form-registered");
    await tab.close();
  });
} else {
  results.push("skip the event's own form: the service has no registration forms (GET …/registration-form answers 404)");
}

await scenario("a page on an origin the service does not allow is refused", async () => {
  const before = (await registrations()).length;
  const tab = await open(foreignPage);
  // The script itself is public; the API refuses this origin, and the widget says so.
  await widget(tab).locator(".outcome[role=alert]").waitFor();
  assert.match(await widget(tab).locator(".outcome").innerText(), /недоступен с этой страницы/);
  assert.equal(await widget(tab).locator("form").count(), 0);
  const direct = await tab.evaluate(async ({ base, event }) => {
    try {
      const response = await fetch(`${base}/api/v1/events/${event}/registrations`, {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": "foreign-1" },
        body: JSON.stringify({ full_name: "Чужой", email: "foreign@example.org", category: "other", consent: true }),
      });
      return `answered ${response.status}`;
    } catch (error) {
      return `refused: ${error.name}`;
    }
  }, { base, event: EVENT });
  assert.equal(direct, "refused: TypeError");
  assert.equal((await registrations()).length, before);
  await shot(tab, "8-foreign-origin");
  await tab.close();
});

await browser.close();
for (const server of servers) server.close();
console.log(results.join("\n"));

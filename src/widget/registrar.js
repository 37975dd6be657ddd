/*! registrar registration widget, v1.
 *
 *   <script src="https://registrar.example.org/widget/v1/registrar.js" defer></script>
 *   <registrar-registration event="vii-mmdn" lang="ru"></registrar-registration>
 *
 * Attributes: `event` (slug or id, required), `lang` (`ru` or `en`; default: the event's
 * language), `api` (the service's address; default: where this script was loaded from).
 * Renders the event's public programme and its registration form in a shadow root, so the
 * page's styles do not reach in and the widget's do not reach out. Styling: the CSS custom
 * properties `--registrar-*` and the parts listed in the service's README.
 * Plain JavaScript, no build step; it talks to the service's public API only.
 */
(() => {
  "use strict";

  const TAG = "registrar-registration";
  if (window.customElements === undefined || customElements.get(TAG)) return;

  const script = document.currentScript;
  // The service's root: the script lives at <root>/widget/v1/registrar.js.
  const SERVICE_ROOT = script && script.src ? new URL("../../", script.src).href : location.origin + "/";

  const COUNTRIES = (
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ " +
    "BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM " +
    "DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS " +
    "GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN " +
    "KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ " +
    "MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM " +
    "PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV " +
    "SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI " +
    "VN VU WF WS YE YT ZA ZM ZW"
  ).split(" ");

  // The fields of a registration when the service has no registration form of its own.
  const FIXED_CATEGORIES = ["business", "government", "nonprofit", "media", "other"];
  const PERSON_FIELDS = [
    { key: "full_name", required: true, autocomplete: "name", max: 200 },
    { key: "email", required: true, type: "email", autocomplete: "email", max: 254 },
    { key: "organisation", autocomplete: "organization", max: 300 },
    { key: "position", autocomplete: "organization-title", max: 300 },
    { key: "city", autocomplete: "address-level2", max: 200 },
    { key: "phone", type: "tel", autocomplete: "tel", max: 50 },
  ];

  const TEXT = {
    en: {
      loading: "Loading the programme…",
      unreachable:
        "The registration service cannot be reached from this page. If this persists, the site may not be allowed to use it.",
      not_found: "This event was not found or is not published.",
      programme: "Programme",
      choose_sessions: "Choose the sessions you want to attend",
      no_sessions: "The programme has not been published yet.",
      seats_left: (n) => (n === 1 ? "1 seat left" : `${n} seats left`),
      unlimited: "No seat limit",
      full: "Full",
      full_waitlist: (n) => (n > 0 ? `Full: waitlist (${n} waiting)` : "Full: waitlist"),
      details: "Your details",
      full_name: "Full name",
      email: "Email",
      organisation: "Organisation",
      position: "Position",
      city: "City",
      phone: "Phone",
      category: "Category",
      categories: {
        government: "Government",
        business: "Business",
        nonprofit: "Non-profit organisation",
        media: "Media",
        other: "Other",
      },
      category_full: "full",
      category_waitlist: "waitlist",
      category_closed: "closed",
      questions: "Questions",
      consents: "Consents",
      consent: "I agree to the processing of my personal data for this registration",
      required: "required",
      yes: "Yes",
      no: "No",
      choose: "Choose…",
      places_left: (n) => `${n} left`,
      option_full: "full",
      max_choices: (n) => `At most ${n}`,
      submit: "Register",
      sending: "Sending…",
      missing: "Please fill in this field.",
      missing_choice: "Please choose an answer.",
      missing_consent: "This consent is needed to register.",
      too_many_choices: (n) => `Choose at most ${n}.`,
      fix_fields: "Please correct the marked fields.",
      registered: "You are registered.",
      registered_waitlist: "You are registered; some sessions are full and you are on their waitlist.",
      session_confirmed: "seat confirmed",
      session_waitlisted: (n) => `waitlist, position ${n}`,
      event_only: "You are registered for the event.",
      manage: "Manage your registration",
      manage_token:
        "Keep this code: with it you can view, change or cancel your registration. It is shown only once.",
      confirm_email: (date) =>
        `Please confirm your email address by following the link we have sent you, by ${date}. Your places are held until then.`,
      already_registered: "This email address is already registered for this event.",
      resend: "Email me the link to my registration",
      resent: "If this address is registered, a new link to the registration has been sent to it.",
      session_full: "This session is now full.",
      session_cancelled: "This session was cancelled.",
      event_full: "The event has no places left.",
      closed: "Registration is closed.",
      opens: (date) => `Registration opens on ${date}.`,
      schedule_conflict: "These sessions overlap in time: choose one of them.",
      rate_limited: "Too many attempts from this network. Please try again in a minute.",
      busy: "The service is busy. Please try again in a moment.",
      network: "The registration could not be sent. Your answers are kept: press the button again to retry.",
      failed: "Registration failed:",
      another: "Register another participant",
      replayed: "This registration had already been received.",
    },
    ru: {
      loading: "Загружаем программу…",
      unreachable:
        "Сервис регистрации недоступен с этой страницы. Если ошибка повторяется, этому сайту, возможно, не разрешено им пользоваться.",
      not_found: "Мероприятие не найдено или ещё не опубликовано.",
      programme: "Программа",
      choose_sessions: "Выберите сессии, в которых хотите участвовать",
      no_sessions: "Программа ещё не опубликована.",
      seats_left: (n) => `Свободных мест: ${n}`,
      unlimited: "Без ограничения мест",
      full: "Мест нет",
      full_waitlist: (n) => (n > 0 ? `Мест нет: лист ожидания (в очереди: ${n})` : "Мест нет: лист ожидания"),
      details: "Участник",
      full_name: "Фамилия, имя, отчество",
      email: "Электронная почта",
      organisation: "Организация",
      position: "Должность",
      city: "Город",
      phone: "Телефон",
      category: "Категория участника",
      categories: {
        government: "Органы власти",
        business: "Бизнес",
        nonprofit: "Некоммерческая организация",
        media: "СМИ",
        other: "Другое",
      },
      category_full: "мест нет",
      category_waitlist: "лист ожидания",
      category_closed: "регистрация закрыта",
      questions: "Вопросы",
      consents: "Согласия",
      consent: "Даю согласие на обработку моих персональных данных для этой регистрации",
      required: "обязательно",
      yes: "Да",
      no: "Нет",
      choose: "Выберите…",
      places_left: (n) => `осталось ${n}`,
      option_full: "мест нет",
      max_choices: (n) => `Не больше ${n}`,
      submit: "Зарегистрироваться",
      sending: "Отправляем…",
      missing: "Заполните это поле.",
      missing_choice: "Выберите ответ.",
      missing_consent: "Без этого согласия зарегистрироваться нельзя.",
      too_many_choices: (n) => `Выберите не больше ${n}.`,
      fix_fields: "Исправьте отмеченные поля.",
      registered: "Вы зарегистрированы.",
      registered_waitlist: "Вы зарегистрированы; на некоторые сессии мест нет, и вы в листе ожидания.",
      session_confirmed: "место подтверждено",
      session_waitlisted: (n) => `лист ожидания, место в очереди: ${n}`,
      event_only: "Вы зарегистрированы на мероприятие.",
      manage: "Управление регистрацией",
      manage_token:
        "Сохраните этот код: с ним можно посмотреть, изменить или отменить регистрацию. Он показывается один раз.",
      confirm_email: (date) =>
        `Подтвердите адрес электронной почты по ссылке из письма до ${date}. До тех пор места за вами сохраняются.`,
      already_registered: "Этот адрес уже зарегистрирован на мероприятие.",
      resend: "Прислать ссылку на мою регистрацию",
      resent: "Если этот адрес зарегистрирован, на него отправлена новая ссылка на регистрацию.",
      session_full: "На эту сессию мест больше нет.",
      session_cancelled: "Эта сессия отменена.",
      event_full: "Свободных мест на мероприятии нет.",
      closed: "Регистрация закрыта.",
      opens: (date) => `Регистрация откроется ${date}.`,
      schedule_conflict: "Эти сессии идут одновременно: выберите одну из них.",
      rate_limited: "Слишком много попыток из этой сети. Повторите через минуту.",
      busy: "Сервис перегружен. Повторите через несколько секунд.",
      network: "Не удалось отправить регистрацию. Ответы сохранены: нажмите кнопку ещё раз.",
      failed: "Не удалось зарегистрироваться:",
      another: "Зарегистрировать ещё одного участника",
      replayed: "Эта регистрация уже была получена.",
    },
  };

  // The service's validation messages (see its README, "Errors"), in Russian.
  const RU_MESSAGES = [
    [/^must not be empty$/, () => "Заполните это поле."],
    [/^must be at most (\d+) characters$/, (m) => `Не длиннее ${m[1]} символов.`],
    [/^must not contain control characters$/, () => "Недопустимые символы."],
    [/^must be a single line without control characters$/, () => "Одна строка без служебных символов."],
    [/^must be an email address$/, () => "Это не адрес электронной почты."],
    [/^must be between (\S+) and (\S+)$/, (m) => `Значение от ${m[1]} до ${m[2]}.`],
    [/^must be a phone number/, () => "Номер телефона: цифры, пробелы и знаки + - ( )."],
    [/^must be true to register$/, () => "Без этого согласия зарегистрироваться нельзя."],
    [/^is listed twice$/, () => "Указано дважды."],
  ];

  const STYLE = `
:host {
  all: initial;
  display: block;
  font-family: var(--registrar-font, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif);
  font-size: var(--registrar-font-size, 16px);
  line-height: 1.45;
  color: var(--registrar-text, #1b1f24);
}
:host([hidden]) { display: none; }
*, *::before, *::after { box-sizing: border-box; }
.widget {
  background: var(--registrar-background, #ffffff);
  border: 1px solid var(--registrar-border, #8c959f);
  border-radius: var(--registrar-radius, 8px);
  padding: var(--registrar-padding, 1.25em);
  max-width: var(--registrar-max-width, 48em);
}
h2 { font-size: 1.35em; margin: 0 0 .25em; line-height: 1.2; }
h3 { font-size: 1.05em; margin: 1em 0 .5em; }
p { margin: .25em 0; }
.muted { color: var(--registrar-muted, #4f5661); }
fieldset { border: 0; padding: 0; margin: 1.25em 0 0; min-width: 0; }
legend { font-weight: 600; font-size: 1.1em; padding: 0; margin-bottom: .5em; }
fieldset fieldset legend { font-size: 1em; }
ul { list-style: none; margin: 0; padding: 0; }
.session {
  display: grid; grid-template-columns: auto 1fr; gap: .15em .6em;
  padding: .6em 0; border-top: 1px solid var(--registrar-separator, #d0d7de);
}
.session input { margin-top: .3em; }
.session .info { grid-column: 2; }
.session .title { font-weight: 600; }
.session .when { font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: .75em; height: .75em; border-radius: 50%; margin-right: .3em; vertical-align: baseline; }
.seats { font-size: .92em; }
.seats.full { color: var(--registrar-error, #a4161a); font-weight: 600; }
.seats.waitlist { color: var(--registrar-warning, #7a4a00); font-weight: 600; }
.field { margin: 0 0 .9em; }
.field > label:not(.choice), .field > .label { display: block; font-weight: 600; margin-bottom: .2em; }
.choice { display: flex; gap: .5em; align-items: baseline; margin: .2em 0; font-weight: normal; }
.req { color: var(--registrar-error, #a4161a); font-weight: normal; font-size: .9em; }
.help { font-size: .92em; color: var(--registrar-muted, #4f5661); margin: .1em 0 .3em; }
input[type=text], input[type=email], input[type=tel], input[type=number], input[type=date], select, textarea {
  font: inherit; color: inherit; width: 100%; max-width: 32em;
  padding: .45em .6em;
  background: var(--registrar-input-background, #ffffff);
  border: 1px solid var(--registrar-input-border, #6e7781);
  border-radius: var(--registrar-input-radius, 4px);
}
textarea { min-height: 5em; }
input[type=checkbox], input[type=radio] { width: 1.1em; height: 1.1em; accent-color: var(--registrar-accent, #1f5fbf); }
[aria-invalid=true] { border-color: var(--registrar-error, #a4161a); outline: 1px solid var(--registrar-error, #a4161a); }
:focus-visible { outline: 3px solid var(--registrar-focus, #1f5fbf); outline-offset: 2px; }
.error { color: var(--registrar-error, #a4161a); font-size: .92em; margin: .2em 0 0; }
.error:empty { display: none; }
button {
  font: inherit; cursor: pointer;
  padding: .6em 1.2em; margin-top: .75em;
  color: var(--registrar-accent-text, #ffffff);
  background: var(--registrar-accent, #1f5fbf);
  border: 1px solid var(--registrar-accent, #1f5fbf);
  border-radius: var(--registrar-button-radius, 6px);
}
button.secondary { color: var(--registrar-accent, #1f5fbf); background: transparent; }
button[disabled] { opacity: .7; cursor: progress; }
.summary:empty, .outcome:empty { display: none; }
.summary { color: var(--registrar-error, #a4161a); font-weight: 600; margin-top: 1em; }
.outcome { margin-top: 1em; padding: 1em; border-radius: var(--registrar-radius, 8px); border: 1px solid var(--registrar-border, #8c959f); }
.outcome.success { border-color: var(--registrar-success, #1a7f37); background: var(--registrar-success-background, #eef8f0); }
.outcome.warning { border-color: var(--registrar-warning, #7a4a00); background: var(--registrar-warning-background, #fff6e5); }
.outcome.problem { border-color: var(--registrar-error, #a4161a); background: var(--registrar-error-background, #fdf0f0); }
.outcome strong { display: block; margin-bottom: .3em; }
.token { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; word-break: break-all; background: rgba(0,0,0,.05); padding: .1em .3em; }
a { color: var(--registrar-link, #1f5fbf); }
`;

  let sheet = null;
  function styleFor(root) {
    // A constructed style sheet is not inline style, so a host page's strict
    // Content-Security-Policy (no 'unsafe-inline') does not block it.
    try {
      if (sheet === null) {
        sheet = new CSSStyleSheet();
        sheet.replaceSync(STYLE);
      }
      root.adoptedStyleSheets = [sheet];
    } catch {
      root.append(h("style", {}, STYLE));
    }
  }

  /** Builds an element; text is always set as text, never parsed as HTML. */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") el.className = value;
      else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (name === "text") el.textContent = value;
      else if (value === true) el.setAttribute(name, "");
      else el.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function localised(value, lang) {
    if (value === null || value === undefined) return "";
    if (typeof value === "string") return value;
    return value[lang] || value.ru || value.en || Object.values(value)[0] || "";
  }

  function newKey() {
    if (crypto.randomUUID) return "widget-" + crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return "widget-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  let instances = 0;

  class RegistrarRegistration extends HTMLElement {
    static get observedAttributes() {
      return ["event", "lang", "api"];
    }

    constructor() {
      super();
      this.attachShadow({ mode: "open" });
      styleFor(this.shadowRoot);
      this.uid = `r${++instances}`;
      this.generation = 0;
    }

    connectedCallback() {
      if (!this.started) {
        this.started = true;
        this.load();
      }
    }

    attributeChangedCallback(_name, before, after) {
      if (this.started && before !== after) this.load();
    }

    get apiRoot() {
      const api = this.getAttribute("api");
      return new URL("api/v1/", api ? new URL(api.endsWith("/") ? api : api + "/", location.href) : SERVICE_ROOT);
    }

    url(path) {
      return new URL(path, this.apiRoot).href;
    }

    /** GET as JSON: `{status, body}`, or a thrown TypeError when nothing came back. */
    async getJson(path) {
      const response = await fetch(this.url(path), { headers: { accept: "application/json" }, credentials: "omit" });
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      return { status: response.status, body };
    }

    show(...content) {
      const root = this.shadowRoot;
      for (const node of Array.from(root.childNodes)) if (node.nodeName !== "STYLE") node.remove();
      root.append(h("div", { class: "widget", part: "container" }, ...content));
    }

    /** Language of the widget: the `lang` attribute, else the event's. */
    pickLanguage(eventLanguage) {
      const wanted = (this.getAttribute("lang") || eventLanguage || "ru").toLowerCase();
      return wanted.startsWith("en") ? "en" : "ru";
    }

    async load() {
      const generation = ++this.generation;
      const slug = this.getAttribute("event");
      const t = TEXT[this.pickLanguage(null)];
      this.show(h("p", { class: "muted", role: "status", text: t.loading }));
      if (!slug) return;
      const event = encodeURIComponent(slug);
      let eventAnswer, programmeAnswer, formAnswer;
      try {
        [eventAnswer, programmeAnswer, formAnswer] = await Promise.all([
          this.getJson(`events/${event}`),
          this.getJson(`events/${event}/programme`),
          this.getJson(`events/${event}/registration-form`),
        ]);
      } catch {
        if (generation === this.generation) this.fail("unreachable");
        return;
      }
      if (generation !== this.generation) return;
      if (eventAnswer.status !== 200 || programmeAnswer.status !== 200) {
        this.fail(eventAnswer.status === 404 || programmeAnswer.status === 404 ? "not_found" : "unreachable");
        return;
      }
      // Services without registration forms answer 404 here: the fixed fields are used.
      const form = formAnswer.status === 200 && formAnswer.body ? formAnswer.body : null;
      this.event = eventAnswer.body;
      this.programme = programmeAnswer.body;
      this.form = form;
      this.language = this.pickLanguage((form && form.event && form.event.language) || this.event.default_language);
      this.t = TEXT[this.language];
      this.key = null;
      this.sentBody = null;
      this.render();
      this.dispatchEvent(new CustomEvent("registrar:ready", { bubbles: true, composed: true }));
    }

    fail(kind) {
      const t = TEXT[this.pickLanguage(null)];
      this.show(h("div", { class: "outcome problem", part: "outcome", role: "alert" }, t[kind]));
      this.dispatchEvent(new CustomEvent("registrar:error", { bubbles: true, composed: true, detail: { kind } }));
    }

    /* ---------- rendering ---------- */

    render() {
      const t = this.t;
      this.fields = new Map();
      this.sessionRows = new Map();
      this.questionFields = [];
      const ev = this.event;
      const tz = ev.time_zone;
      this.dateFormat = new Intl.DateTimeFormat(this.language, { day: "numeric", month: "long", year: "numeric", timeZone: "UTC" });
      this.timeFormat = new Intl.DateTimeFormat(this.language, { hour: "2-digit", minute: "2-digit", timeZone: tz });
      this.moment = new Intl.DateTimeFormat(this.language, { dateStyle: "long", timeStyle: "short", timeZone: tz });

      const first = new Date(`${ev.starts_on}T12:00:00Z`);
      const last = new Date(`${ev.ends_on}T12:00:00Z`);
      const dates = this.dateFormat.formatRange ? this.dateFormat.formatRange(first, last) : `${this.day(ev.starts_on)} – ${this.day(ev.ends_on)}`;
      const header = h(
        "header",
        { part: "header" },
        h("h2", { part: "title", text: ev.title }),
        h("p", { class: "muted", text: [dates, ev.city].filter(Boolean).join(" · ") }),
      );

      const now = Date.now();
      const opens = ev.registration_opens_at ? Date.parse(ev.registration_opens_at) : null;
      const closes = ev.registration_closes_at ? Date.parse(ev.registration_closes_at) : null;
      const notYet = opens !== null && now < opens;
      const over = (closes !== null && now >= closes) || ev.status === "archived";

      this.summary = h("div", { class: "summary", part: "error-summary", role: "alert" });
      this.outcome = h("div", { class: "outcome", part: "outcome", role: "status", "aria-live": "polite", "aria-atomic": "true" });
      this.button = h("button", { type: "submit", part: "button", text: t.submit });

      const formEl = h(
        "form",
        { part: "form", novalidate: true, "aria-label": t.submit, onsubmit: (e) => this.submit(e) },
        this.renderProgramme(),
        this.renderPerson(),
        this.renderQuestions(),
        this.renderConsents(),
        this.summary,
        this.button,
      );
      this.formEl = formEl;
      if (notYet || over) {
        this.show(
          header,
          this.renderProgramme(true),
          h("div", { class: "outcome warning", part: "outcome", role: "status" }, notYet ? t.opens(this.moment.format(opens)) : t.closed),
        );
        return;
      }
      this.show(header, formEl, this.outcome);
      this.updateConditions();
    }

    day(isoDate) {
      return this.dateFormat.format(new Date(`${isoDate}T12:00:00Z`));
    }

    weekday(isoDate) {
      return new Intl.DateTimeFormat(this.language, { weekday: "long", day: "numeric", month: "long", timeZone: "UTC" }).format(
        new Date(`${isoDate}T12:00:00Z`),
      );
    }

    seatsText(session) {
      const t = this.t;
      if (session.capacity === null || session.seats_left === null) return { text: t.unlimited, state: "open" };
      if (session.seats_left > 0) return { text: t.seats_left(session.seats_left), state: "open" };
      if (session.waitlist_enabled) return { text: t.full_waitlist(session.waitlisted), state: "waitlist" };
      return { text: t.full, state: "full" };
    }

    renderProgramme(readOnly = false) {
      const t = this.t;
      const days = (this.programme && this.programme.days) || [];
      const fieldset = h("fieldset", { part: "programme" }, h("legend", { text: readOnly ? t.programme : `${t.programme}: ${t.choose_sessions.toLowerCase()}` }));
      if (days.length === 0) {
        fieldset.append(h("p", { class: "muted", text: t.no_sessions }));
        return fieldset;
      }
      const error = h("p", { class: "error", id: `${this.uid}-sessions-error` });
      for (const day of days) {
        const list = h("ul", {});
        for (const session of day.sessions) list.append(this.renderSession(session, readOnly));
        fieldset.append(h("fieldset", { part: "day" }, h("legend", { text: this.weekday(day.date) }), list));
      }
      fieldset.append(error);
      if (!readOnly) this.fields.set("session_ids", { focus: fieldset, error, input: fieldset, group: true });
      return fieldset;
    }

    renderSession(session, readOnly) {
      const id = `${this.uid}-s-${session.id}`;
      const seats = this.seatsText(session);
      const seatsEl = h("span", { class: `seats ${seats.state}`, id: `${id}-seats`, part: `seats seats-${seats.state}`, text: seats.text });
      const error = h("p", { class: "error", id: `${id}-error` });
      const when = `${this.timeFormat.format(new Date(session.starts_at))}–${this.timeFormat.format(new Date(session.ends_at))}`;
      const details = [];
      if (session.track) {
        const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
        if (session.track.colour) swatch.style.background = session.track.colour;
        details.push(h("span", { class: "track", part: "track" }, swatch, session.track.title));
      }
      if (session.venue) details.push(h("span", { class: "venue", text: [session.venue.name, session.venue.city].filter(Boolean).join(", ") }));
      const info = h(
        "div",
        { class: "info" },
        h("label", { for: id }, h("span", { class: "when", text: when }), " ", h("span", { class: "title", text: session.title })),
        details.length ? h("p", { class: "muted" }, ...details.flatMap((d, i) => (i ? [" · ", d] : [d]))) : null,
        seatsEl,
        error,
      );
      const box = h("input", {
        type: "checkbox",
        id,
        name: "session",
        value: session.id,
        disabled: readOnly || seats.state === "full",
        "aria-describedby": `${id}-seats ${id}-error`,
      });
      if (readOnly) box.hidden = true;
      const row = h("li", { class: "session", part: "session", "data-session": session.id }, box, info);
      this.sessionRows.set(session.id, { box, seatsEl, error, row });
      this.fields.set(`session:${session.id}`, { focus: box, error, input: box });
      return row;
    }

    /** A labelled field: label, help, the control, its error line. */
    field(key, label, control, { required = false, help = null, group = false } = {}) {
      const id = control.id || `${this.uid}-f-${key.replace(/[^a-zA-Z0-9_-]/g, "_")}`;
      const errorId = `${id}-error`;
      const helpId = help ? `${id}-help` : null;
      const error = h("p", { class: "error", id: errorId });
      const marker = required ? h("span", { class: "req", text: ` (${this.t.required})` }) : null;
      let wrapper;
      if (group) {
        // A set of radio buttons or check boxes: a fieldset whose legend is the label.
        control.setAttribute("aria-describedby", [helpId, errorId].filter(Boolean).join(" "));
        wrapper = h(
          "fieldset",
          { class: "field", part: "field", "data-field": key },
          h("legend", { class: "label" }, label, marker),
          help ? h("p", { class: "help", id: helpId, text: help }) : null,
          control,
          error,
        );
      } else {
        control.id = id;
        control.setAttribute("aria-describedby", [helpId, errorId].filter(Boolean).join(" "));
        if (required) control.setAttribute("aria-required", "true");
        wrapper = h(
          "div",
          { class: "field", part: "field", "data-field": key },
          h("label", { for: id, part: "label" }, label, marker),
          help ? h("p", { class: "help", id: helpId, text: help }) : null,
          control,
          error,
        );
      }
      const focus = group ? control.querySelector("input:not([disabled])") || control : control;
      this.fields.set(key, { focus, error, wrapper, input: control, group });
      return wrapper;
    }

    /** The body's fields the service accepts: from the form's schema, else the fixed set. */
    accepts(name) {
      const properties = this.form && this.form.schema && this.form.schema.properties;
      return properties ? Object.prototype.hasOwnProperty.call(properties, name) : true;
    }

    renderPerson() {
      const t = this.t;
      const fieldset = h("fieldset", { part: "details" }, h("legend", { text: t.details }));
      for (const f of PERSON_FIELDS) {
        if (!this.accepts(f.key)) continue;
        const input = h("input", {
          type: f.type === "email" ? "email" : f.type === "tel" ? "tel" : "text",
          name: f.key,
          autocomplete: f.autocomplete,
          maxlength: f.max,
          part: "input",
          spellcheck: f.type ? "false" : null,
        });
        fieldset.append(this.field(f.key, t[f.key], input, { required: f.required }));
      }
      fieldset.append(this.renderCategory());
      return fieldset;
    }

    categories() {
      if (this.form && Array.isArray(this.form.categories)) {
        return this.form.categories.map((c) => ({
          code: c.code,
          name: localised(c.name, this.language) || c.code,
          disabled: c.open === false || (c.full && !c.waitlist),
          note: c.open === false ? this.t.category_closed : c.full ? (c.waitlist ? this.t.category_waitlist : this.t.category_full) : null,
        }));
      }
      return FIXED_CATEGORIES.map((code) => ({ code, name: this.t.categories[code], disabled: false, note: null }));
    }

    renderCategory() {
      const t = this.t;
      const list = this.categories();
      if (list.length === 0) return null;
      if (list.length === 1) {
        this.fixedCategory = list[0].code;
        return null;
      }
      this.fixedCategory = null;
      const select = h("select", { name: "category", part: "input", required: true }, h("option", { value: "", text: t.choose }));
      for (const c of list) {
        select.append(h("option", { value: c.code, disabled: c.disabled, text: c.note ? `${c.name} (${c.note})` : c.name }));
      }
      select.addEventListener("change", () => this.updateConditions());
      return this.field("category", t.category, select, { required: true });
    }

    renderQuestions() {
      const questions = (this.form && this.form.questions) || [];
      if (questions.length === 0) return null;
      const fieldset = h("fieldset", { part: "questions" }, h("legend", { text: this.t.questions }));
      for (const q of questions) {
        const wrapper = this.renderQuestion(q);
        if (!wrapper) continue;
        this.questionFields.push({ question: q, wrapper });
        fieldset.append(wrapper);
      }
      return fieldset;
    }

    optionLabel(option) {
      const t = this.t;
      const label = localised(option.label, this.language) || option.key;
      if (option.full) return `${label} (${t.option_full})`;
      if (option.places_left !== null && option.places_left !== undefined) return `${label} (${t.places_left(option.places_left)})`;
      return label;
    }

    renderQuestion(q) {
      const t = this.t;
      const key = `answers.${q.key}`;
      const name = `${this.uid}-q-${q.key}`;
      const label = localised(q.label, this.language) || q.key;
      let help = localised(q.help, this.language) || null;
      const onChange = () => this.updateConditions();
      let control;
      let group = false;
      switch (q.type) {
        case "multiline":
          control = h("textarea", { name, maxlength: q.max_length, part: "input" });
          break;
        case "number":
          control = h("input", { type: "number", name, min: q.min, max: q.max, step: "any", part: "input" });
          break;
        case "date":
          control = h("input", { type: "date", name, part: "input" });
          break;
        case "phone":
          control = h("input", { type: "tel", name, autocomplete: "tel", maxlength: q.max_length || 50, part: "input" });
          break;
        case "email":
          control = h("input", { type: "email", name, autocomplete: "email", part: "input" });
          break;
        case "country": {
          const names = window.Intl && Intl.DisplayNames ? new Intl.DisplayNames([this.language], { type: "region" }) : null;
          const collator = new Intl.Collator(this.language);
          const entries = COUNTRIES.map((code) => [code, (names && names.of(code)) || code]).sort((a, b) => collator.compare(a[1], b[1]));
          control = h("select", { name, part: "input" }, h("option", { value: "", text: t.choose }), entries.map(([code, n]) => h("option", { value: code, text: n })));
          break;
        }
        case "yes_no":
          group = true;
          control = h(
            "div",
            { role: "radiogroup" },
            [
              [true, t.yes],
              [false, t.no],
            ].map(([value, text]) => {
              const id = `${name}-${value}`;
              return h("label", { class: "choice", for: id }, h("input", { type: "radio", id, name, value: String(value), onchange: onChange }), text);
            }),
          );
          break;
        case "single_choice":
        case "multiple_choice": {
          group = true;
          const type = q.type === "single_choice" ? "radio" : "checkbox";
          control = h(
            "div",
            type === "radio" ? { role: "radiogroup" } : {},
            (q.options || []).map((option, i) => {
              const id = `${name}-${i}`;
              return h(
                "label",
                { class: "choice", for: id },
                h("input", { type, id, name, value: option.key, disabled: option.full, onchange: onChange }),
                this.optionLabel(option),
              );
            }),
          );
          if (q.type === "multiple_choice" && q.max_choices) help = [help, t.max_choices(q.max_choices)].filter(Boolean).join(" ");
          break;
        }
        default:
          control = h("input", { type: "text", name, maxlength: q.max_length, part: "input" });
      }
      if (!group) control.addEventListener("change", onChange);
      return this.field(key, label, control, { required: q.required, help, group });
    }

    renderConsents() {
      const t = this.t;
      const consents = this.form && Array.isArray(this.form.consents) ? this.form.consents : null;
      const fieldset = h("fieldset", { part: "consents" }, h("legend", { text: t.consents }));
      if (consents === null) {
        // The fixed form: one consent to the processing of personal data (the `consent` field).
        if (!this.accepts("consent")) return null;
        fieldset.append(this.consentField("consent", t.consent, true));
        return fieldset;
      }
      // The event's own consents replace the fixed one.
      if (consents.length === 0) return null;
      for (const c of consents) fieldset.append(this.consentField(`consents.${c.key}`, localised(c.text, this.language), c.required));
      return fieldset;
    }

    consentField(key, text, required) {
      const id = `${this.uid}-c-${key.replace(/[^a-zA-Z0-9_-]/g, "_")}`;
      const box = h("input", { type: "checkbox", id, name: key, part: "checkbox", "aria-required": required ? "true" : null });
      const error = h("p", { class: "error", id: `${id}-error` });
      box.setAttribute("aria-describedby", `${id}-error`);
      const wrapper = h(
        "div",
        { class: "field", part: "field consent", "data-field": key },
        h("label", { class: "choice", for: id }, box, h("span", {}, text, required ? h("span", { class: "req", text: ` (${this.t.required})` }) : null)),
        error,
      );
      this.fields.set(key, { focus: box, error, wrapper, input: box, consent: true, required });
      return wrapper;
    }

    /* ---------- values ---------- */

    selectedCategory() {
      if (this.fixedCategory) return this.fixedCategory;
      const field = this.fields.get("category");
      return field ? field.input.value || null : null;
    }

    answerOf(q) {
      const field = this.fields.get(`answers.${q.key}`);
      if (!field) return undefined;
      const input = field.input;
      switch (q.type) {
        case "yes_no": {
          const checked = input.querySelector("input:checked");
          return checked ? checked.value === "true" : undefined;
        }
        case "single_choice": {
          const checked = input.querySelector("input:checked");
          return checked ? checked.value : undefined;
        }
        case "multiple_choice": {
          const values = Array.from(input.querySelectorAll("input:checked"), (b) => b.value);
          return values.length ? values : undefined;
        }
        case "number": {
          if (input.value.trim() === "") return undefined;
          const n = Number(input.value);
          return Number.isFinite(n) ? n : input.value;
        }
        default: {
          const value = input.value.trim();
          return value === "" ? undefined : value;
        }
      }
    }

    /** Whether a question applies now: its categories and its `shown_when` condition. */
    applies(q, byKey) {
      if (Array.isArray(q.categories) && q.categories.length > 0) {
        const category = this.selectedCategory();
        if (!category || !q.categories.includes(category)) return false;
      }
      const condition = q.shown_when;
      if (condition && condition.question) {
        const other = byKey.get(condition.question);
        if (!other || !this.applies(other, byKey)) return false;
        const answer = this.answerOf(other);
        if (Array.isArray(answer)) return answer.includes(condition.equals);
        return answer === condition.equals;
      }
      return true;
    }

    updateConditions() {
      const byKey = new Map(this.questionFields.map(({ question }) => [question.key, question]));
      for (const { question, wrapper } of this.questionFields) {
        const on = this.applies(question, byKey);
        wrapper.hidden = !on;
        for (const control of wrapper.querySelectorAll("input, select, textarea")) {
          const option = (question.options || []).find((o) => o.key === control.value);
          control.disabled = !on || Boolean(option && option.full && (control.type === "radio" || control.type === "checkbox"));
        }
      }
    }

    /** The registration body and the fields left out that must be given. */
    collect() {
      const t = this.t;
      const body = {};
      const missing = [];
      for (const f of PERSON_FIELDS) {
        const field = this.fields.get(f.key);
        if (!field) continue;
        const value = field.input.value.trim();
        if (value !== "") body[f.key] = value;
        else if (f.required) missing.push([f.key, t.missing]);
      }
      const category = this.selectedCategory();
      if (category) body.category = category;
      else if (this.fields.has("category")) missing.push(["category", t.missing_choice]);
      body.session_ids = Array.from(this.sessionRows.values())
        .filter(({ box }) => box.checked && !box.disabled)
        .map(({ box }) => box.value);
      if (this.questionFields.length) {
        const answers = {};
        const byKey = new Map(this.questionFields.map(({ question }) => [question.key, question]));
        for (const { question } of this.questionFields) {
          if (!this.applies(question, byKey)) continue;
          const answer = this.answerOf(question);
          if (answer !== undefined) answers[question.key] = answer;
          else if (question.required) {
            const choice = ["yes_no", "single_choice", "multiple_choice", "country"].includes(question.type);
            missing.push([`answers.${question.key}`, choice ? t.missing_choice : t.missing]);
          }
          if (question.type === "multiple_choice" && question.max_choices && Array.isArray(answer) && answer.length > question.max_choices) {
            missing.push([`answers.${question.key}`, t.too_many_choices(question.max_choices)]);
          }
        }
        body.answers = answers;
      }
      const consents = {};
      let anyConsent = false;
      for (const [key, field] of this.fields) {
        if (!field.consent) continue;
        if (field.required && !field.input.checked) missing.push([key, t.missing_consent]);
        if (key === "consent") body.consent = field.input.checked;
        else {
          consents[key.slice("consents.".length)] = field.input.checked;
          anyConsent = true;
        }
      }
      if (anyConsent) body.consents = consents;
      if (this.accepts("language")) body.language = this.language;
      return { body, missing };
    }

    /* ---------- errors ---------- */

    clearErrors() {
      this.summary.textContent = "";
      for (const field of this.fields.values()) {
        field.error.textContent = "";
        const input = field.group ? field.input.querySelectorAll("input") : [field.input];
        for (const el of input) if (el && el.removeAttribute) el.removeAttribute("aria-invalid");
      }
    }

    /** The field a problem's path names: the longest registered prefix (`answers.x.y` → `answers.x`). */
    fieldFor(path) {
      const sessions = /^session_ids\[(\d+)\]/.exec(path);
      if (sessions && this.sentBody) {
        const id = this.sentBody.session_ids[Number(sessions[1])];
        if (id && this.fields.has(`session:${id}`)) return this.fields.get(`session:${id}`);
      }
      let candidate = path;
      while (candidate) {
        if (this.fields.has(candidate)) return this.fields.get(candidate);
        const cut = Math.max(candidate.lastIndexOf("."), candidate.lastIndexOf("["));
        if (cut <= 0) break;
        candidate = candidate.slice(0, cut);
      }
      return null;
    }

    message(text) {
      if (this.language !== "ru" || typeof text !== "string") return text;
      for (const [pattern, make] of RU_MESSAGES) {
        const m = pattern.exec(text);
        if (m) return make(m);
      }
      return text;
    }

    /** Shows errors at their fields; those without a field go to the summary. Focuses the first. */
    showErrors(errors, summary) {
      let first = null;
      const loose = [];
      for (const [path, text] of errors) {
        const field = this.fieldFor(path);
        if (!field) {
          loose.push(text);
          continue;
        }
        field.error.textContent = field.error.textContent ? `${field.error.textContent} ${text}` : text;
        const inputs = field.group ? field.input.querySelectorAll("input") : [field.input];
        for (const el of inputs) if (el && el.setAttribute) el.setAttribute("aria-invalid", "true");
        if (!first) first = field;
      }
      this.summary.textContent = [summary, ...loose].filter(Boolean).join(" ");
      this.focusOn(first);
    }

    /** Focuses a field in error: its control, else the first enabled control of its group, else the summary. */
    focusOn(field) {
      if (!field) return;
      const focusable = (el) => el && !el.disabled && ["INPUT", "SELECT", "TEXTAREA", "BUTTON"].includes(el.tagName);
      let target = focusable(field.focus) ? field.focus : null;
      if (!target && field.input && field.input.querySelector) target = field.input.querySelector("input:not([disabled]), select:not([disabled])");
      if (!target && this.summary.textContent) {
        this.summary.tabIndex = -1;
        target = this.summary;
      }
      if (target) target.focus();
    }

    markSession(id, text, full) {
      const row = this.sessionRows.get(id);
      if (!row) return false;
      if (full) {
        row.seatsEl.textContent = this.t.full;
        row.seatsEl.className = "seats full";
        row.seatsEl.setAttribute("part", "seats seats-full");
        row.box.checked = false;
        row.box.disabled = true;
      }
      this.showErrors([[`session:${id}`, text]], this.t.fix_fields);
      return true;
    }

    /* ---------- submitting ---------- */

    async submit(e) {
      e.preventDefault();
      if (this.busy) return;
      const t = this.t;
      this.clearErrors();
      this.outcome.textContent = "";
      this.outcome.className = "outcome";
      const { body, missing } = this.collect();
      if (missing.length) {
        this.showErrors(missing, t.fix_fields);
        return;
      }
      // One key per submission: the same body sent again (a retry) keeps it, so the
      // service answers it once; a changed body is a new submission.
      const text = JSON.stringify(body);
      if (text !== this.sentText || !this.key) this.key = newKey();
      this.sentText = text;
      this.sentBody = body;
      this.busy = true;
      this.button.disabled = true;
      this.button.textContent = t.sending;
      try {
        const answer = await this.post(text);
        this.handle(answer, body);
      } catch {
        this.outcome.className = "outcome problem";
        this.outcome.textContent = t.network;
      } finally {
        this.busy = false;
        this.button.disabled = false;
        this.button.textContent = t.submit;
      }
    }

    /** Sends the registration, waiting and sending again (same key) when the service asks to. */
    async post(text) {
      for (let attempt = 0; ; attempt++) {
        const response = await fetch(this.url(`events/${encodeURIComponent(this.getAttribute("event"))}/registrations`), {
          method: "POST",
          credentials: "omit",
          headers: { "content-type": "application/json", accept: "application/json", "idempotency-key": this.key, "accept-language": this.language },
          body: text,
        });
        let problem = null;
        try {
          problem = await response.json();
        } catch {
          problem = null;
        }
        const code = problem && problem.code;
        const again = response.status === 503 || (response.status === 409 && code === "idempotency_key_in_use");
        if (again && attempt < 3) {
          const after = Number(response.headers.get("retry-after"));
          await sleep(Math.min(Number.isFinite(after) && after > 0 ? after * 1000 : 1000, 5000));
          continue;
        }
        return { status: response.status, body: problem, replayed: response.headers.get("idempotent-replayed") === "true" };
      }
    }

    handle(answer, sent) {
      const t = this.t;
      const problem = answer.body || {};
      if (answer.status === 201) return this.registered(answer.body, answer.replayed);
      const fieldErrors = Array.isArray(problem.errors) ? problem.errors.map((e) => [e.field, this.message(e.message)]) : [];
      const status = answer.status;
      const code = problem.code;
      const detail = problem.detail || "";
      this.outcome.className = "outcome problem";
      switch (code) {
        case "validation_failed":
          this.showErrors(fieldErrors, t.fix_fields);
          return;
        case "session_full":
        case "session_cancelled":
          if (problem.session_id && this.markSession(problem.session_id, code === "session_full" ? t.session_full : t.session_cancelled, true)) {
            return;
          }
          break;
        case "schedule_conflict":
          if (Array.isArray(problem.sessions)) {
            this.showErrors(
              problem.sessions.map((s) => [`session:${typeof s === "string" ? s : s.id}`, t.schedule_conflict]),
              t.schedule_conflict,
            );
            return;
          }
          break;
        case "already_registered":
          this.outcome.textContent = "";
          this.outcome.append(
            h("strong", { text: t.already_registered }),
            h("button", { type: "button", class: "secondary", part: "button secondary", onclick: (e) => this.resend(e, sent.email) }, t.resend),
          );
          return;
        case "option_full":
        case "category_full":
          if (fieldErrors.length || problem.field) {
            this.showErrors(fieldErrors.length ? fieldErrors : [[problem.field, detail]], t.fix_fields);
            return;
          }
          break;
        default:
          if (fieldErrors.length && status === 422) {
            this.showErrors(fieldErrors, t.fix_fields);
            return;
          }
      }
      const known = {
        event_full: t.event_full,
        registration_closed: t.closed,
        rate_limited: t.rate_limited,
        service_unavailable: t.busy,
        idempotency_key_in_use: t.busy,
      };
      this.outcome.textContent = known[code] || `${t.failed} ${detail || status}`;
      if (fieldErrors.length) this.showErrors(fieldErrors, null);
    }

    async resend(e, email) {
      const button = e.currentTarget;
      button.disabled = true;
      try {
        await fetch(this.url(`events/${encodeURIComponent(this.getAttribute("event"))}/registrations/resend`), {
          method: "POST",
          credentials: "omit",
          headers: { "content-type": "application/json", accept: "application/json" },
          body: JSON.stringify({ email }),
        });
        this.outcome.className = "outcome success";
        this.outcome.textContent = this.t.resent;
      } catch {
        button.disabled = false;
        this.outcome.textContent = this.t.network;
      }
    }

    registered(created, replayed) {
      const t = this.t;
      const waitlisted = created.sessions.some((s) => s.status === "waitlisted");
      const titles = new Map();
      for (const day of this.programme.days || []) for (const s of day.sessions) titles.set(s.id, s.title);
      const list = h(
        "ul",
        { part: "outcome-sessions" },
        created.sessions.map((s) =>
          h(
            "li",
            { "data-session": s.session_id, "data-status": s.status },
            `${titles.get(s.session_id) || s.session_id}: `,
            h("span", { class: "status", text: s.status === "waitlisted" ? t.session_waitlisted(s.waitlist_position) : t.session_confirmed }),
          ),
        ),
      );
      const parts = [h("strong", { text: waitlisted ? t.registered_waitlist : t.registered })];
      if (replayed) parts.push(h("p", { text: t.replayed }));
      if (created.sessions.length) parts.push(list);
      else parts.push(h("p", { text: t.event_only }));
      if (created.manage_token) {
        const template = this.event.manage_url_template;
        if (template) {
          const href = template.replaceAll("{id}", encodeURIComponent(created.id)).replaceAll("{token}", encodeURIComponent(created.manage_token));
          parts.push(h("p", {}, h("a", { href, part: "manage-link", target: "_blank", rel: "noopener noreferrer", text: t.manage })));
        }
        parts.push(h("p", { text: t.manage_token }), h("p", {}, h("code", { class: "token", part: "token", text: created.manage_token })));
      } else if (created.confirm_by) {
        parts.push(h("p", { text: t.confirm_email(this.moment.format(new Date(created.confirm_by))) }));
      }
      parts.push(h("button", { type: "button", class: "secondary", part: "button secondary", onclick: () => this.render() }, t.another));
      this.outcome.className = `outcome ${waitlisted ? "warning" : "success"}`;
      this.outcome.dataset.status = waitlisted ? "waitlisted" : "confirmed";
      this.outcome.textContent = "";
      this.outcome.append(...parts);
      this.formEl.hidden = true;
      // The form is gone: the focus goes to what replaced it.
      this.outcome.tabIndex = -1;
      this.outcome.focus();
      this.key = null;
      this.sentText = null;
      this.dispatchEvent(
        new CustomEvent("registrar:registered", { bubbles: true, composed: true, detail: { id: created.id, sessions: created.sessions } }),
      );
    }
  }

  customElements.define(TAG, RegistrarRegistration);
})();

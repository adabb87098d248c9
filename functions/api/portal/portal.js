// The "Manage webhooks" page of one account, over the public API with the portal
// token from the URL's fragment. What the API returns is put in the page as text
// (text nodes and textContent), never parsed as markup.

const $ = (id) => document.getElementById(id);
const STORAGE_KEY = "hookline.portal";
const ATTEMPTS_PAGE = 20;
const POLL_EVERY_MS = 3000;
/// How long the attempts keep refreshing after the last thing a person did.
const POLL_FOR_MS = 5 * 60 * 1000;

const session = readSession();
// The API is served beside the page: "/portal" → "/".
const apiRoot = location.pathname.replace(/portal\/?$/, "");
const state = {
  view: null,
  eventTypes: [],
  endpoints: [],
  editing: null,
  current: null,
  attempts: [],
  cursor: null,
  attemptsTicket: 0,
  pollUntil: 0,
};

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/// The token from the fragment, kept for this tab so that a reload works after
/// the fragment is taken out of the address bar; its account is named inside it,
/// `hlp_<account>.<random>`, before the last dot.
function readSession() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  let token = fragment.get("token");
  if (token) {
    history.replaceState(null, "", location.pathname + location.search);
    try {
      sessionStorage.setItem(STORAGE_KEY, token);
    } catch {
      // Storage may be refused inside a third-party iframe: the page still works until reloaded.
    }
  } else {
    try {
      token = sessionStorage.getItem(STORAGE_KEY);
    } catch {
      token = null;
    }
  }
  const named = token?.match(/^hlp_(.+)\.[^.]+$/);
  return named ? { token, account: named[1] } : null;
}

/// An element with attributes, listeners (`on…`) and children; strings become text nodes.
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else if (value !== false && value != null) element.setAttribute(name, String(value));
  }
  element.append(...children.flat().filter((child) => child != null));
  return element;
}

async function api(method, path, body) {
  const headers = { authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(apiRoot + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "The service could not be reached. Check the connection and try again.");
  }
  if (response.status === 401) {
    showExpired();
    throw new ApiError(401, "This link has expired.");
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(
      response.status,
      data?.error?.message ?? `The request failed with status ${response.status}.`,
    );
  }
  return data;
}

const accountPath = (rest) => `v1/accounts/${encodeURIComponent(session.account)}/${rest}`;
const endpointPath = (rest = "") =>
  accountPath(`endpoints/${encodeURIComponent(state.current.id)}${rest}`);

function showError(element, error) {
  if (error.status === 401) return;
  element.textContent = error.message;
  element.hidden = false;
}

function hideError(element) {
  element.hidden = true;
  element.textContent = "";
}

function note(text) {
  $("detail-note").textContent = text;
}

/// Runs `action` with `button` unusable meanwhile, so one click is one request.
async function busy(button, action) {
  if (button.getAttribute("aria-disabled") === "true") return;
  button.setAttribute("aria-disabled", "true");
  try {
    await action();
  } finally {
    button.removeAttribute("aria-disabled");
  }
}

function show(view, focus) {
  state.view = view;
  for (const id of ["list", "editor", "detail"]) $(id).hidden = id !== view;
  if (view === "detail") state.pollUntil = Date.now() + POLL_FOR_MS;
  focus?.focus();
}

function showExpired(reason) {
  state.view = "expired";
  for (const id of ["list", "editor", "detail", "loading", "paused", "page-error"]) $(id).hidden = true;
  $("enabled").closest("label").hidden = true;
  if (reason) $("expired").querySelector("h2").textContent = reason;
  $("expired").hidden = false;
  $("confirm").close();
}

const when = (time) => (time ? new Date(time).toLocaleString() : "—");
const target = (endpoint) =>
  endpoint.type === "email" ? (endpoint.emails ?? []).join(", ") : endpoint.url;
const listed = (text) =>
  text
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean);

function chips(types) {
  if (!types?.length) return h("span", { class: "muted" }, "All event types");
  return h("ul", { class: "chips" }, types.map((type) => h("li", { class: "chip" }, type)));
}

function statusBadge(endpoint) {
  return endpoint.disabled
    ? h("span", { class: "badge off" }, "Disabled")
    : h("span", { class: "badge on" }, "Active");
}

// ------------------------------------------------------------------ account

function applySettings(settings) {
  $("enabled").checked = settings.webhooks_enabled;
  $("enabled").disabled = false;
  $("paused").hidden = settings.webhooks_enabled;
}

$("enabled").addEventListener("change", async (event) => {
  const wanted = event.target.checked;
  hideError($("page-error"));
  try {
    applySettings(await api("PATCH", accountPath("settings"), { webhooks_enabled: wanted }));
  } catch (error) {
    event.target.checked = !wanted;
    showError($("page-error"), error);
  }
});

// ---------------------------------------------------------------- endpoints

async function loadEndpoints() {
  const endpoints = [];
  let cursor = null;
  do {
    const query = new URLSearchParams({ limit: "250" });
    if (cursor) query.set("cursor", cursor);
    const page = await api("GET", accountPath(`endpoints?${query}`));
    endpoints.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  state.endpoints = endpoints;
  $("endpoints").tBodies[0].replaceChildren(
    ...endpoints.map((endpoint) =>
      h(
        "tr",
        {},
        h(
          "td",
          { "data-label": "URL" },
          h("button", { type: "button", class: "link url", onclick: () => openEndpoint(endpoint.id) }, target(endpoint)),
        ),
        h("td", { "data-label": "Description" }, endpoint.description || h("span", { class: "muted" }, "—")),
        h("td", { "data-label": "Event types" }, chips(endpoint.event_types)),
        h("td", { "data-label": "Status" }, statusBadge(endpoint)),
      ),
    ),
  );
  $("endpoints").hidden = endpoints.length === 0;
  $("empty").hidden = endpoints.length > 0;
}

async function showList() {
  hideError($("page-error"));
  try {
    await loadEndpoints();
    show("list", $("list-title"));
  } catch (error) {
    showError($("page-error"), error);
  }
}

function openEditor(endpoint) {
  state.editing = endpoint;
  const email = endpoint?.type === "email";
  $("editor-title").textContent = endpoint ? "Edit endpoint" : "Add endpoint";
  $("url-field").hidden = email;
  $("emails-field").hidden = !email;
  $("format-field").hidden = email;
  $("f-url").value = endpoint?.url ?? "";
  $("f-emails").value = (endpoint?.emails ?? []).join(", ");
  $("f-description").value = endpoint?.description ?? "";
  $("f-version").value = endpoint?.version ?? 1;
  $("f-format").value = endpoint?.format ?? "standard";
  $("f-datasets").value = (endpoint?.datasets ?? []).join(", ");
  const chosen = new Set(endpoint?.event_types ?? []);
  $("f-types").replaceChildren(
    ...state.eventTypes.map((type) => {
      const id = `type-${type.name}`;
      return h(
        "div",
        { class: "type" },
        h("input", {
          type: "checkbox",
          id,
          value: type.name,
          checked: chosen.has(type.name),
          "aria-describedby": type.description ? `${id}-about` : null,
        }),
        h("label", { for: id }, type.name),
        type.description ? h("small", { id: `${id}-about` }, type.description) : null,
      );
    }),
  );
  hideError($("form-error"));
  show("editor", email ? $("f-emails") : $("f-url"));
}

function formBody(editing) {
  const shown = new Set(state.eventTypes.map((type) => type.name));
  const checked = [...$("f-types").querySelectorAll("input:checked")].map((box) => box.value);
  // Types the form does not offer (archived ones) stay as they were.
  const kept = (editing?.event_types ?? []).filter((type) => !shown.has(type));
  const body = { description: $("f-description").value, event_types: [...checked, ...kept] };
  const version = $("f-version").value.trim();
  if (version) body.version = /^\d+$/.test(version) ? Number(version) : version;
  else if (editing) body.version = null;
  const datasets = listed($("f-datasets").value);
  if (datasets.length) body.datasets = datasets;
  else if (editing) body.datasets = null;
  if (editing?.type === "email") {
    body.emails = listed($("f-emails").value);
  } else {
    body.url = $("f-url").value.trim();
    body.format = $("f-format").value;
  }
  return body;
}

$("endpoint-form").addEventListener("submit", (event) => {
  event.preventDefault();
  busy(event.submitter ?? event.target, async () => {
    hideError($("form-error"));
    const editing = state.editing;
    try {
      const saved = editing
        ? await api("PATCH", accountPath(`endpoints/${encodeURIComponent(editing.id)}`), formBody(editing))
        : await api("POST", accountPath("endpoints"), formBody(null));
      await loadEndpoints();
      await openEndpoint(saved.id, saved);
      if (saved.secret) showSecret(saved.secret);
      note(editing ? "Endpoint saved." : "Endpoint added. Its signing secret is shown below.");
    } catch (error) {
      showError($("form-error"), error);
    }
  });
});

$("add").addEventListener("click", () => openEditor(null));
$("cancel").addEventListener("click", () =>
  state.editing ? show("detail", $("detail-url")) : show("list", $("list-title")),
);

// ------------------------------------------------------------ one endpoint

async function openEndpoint(id, known) {
  hideError($("page-error"));
  try {
    const endpoint = known ?? (await api("GET", accountPath(`endpoints/${encodeURIComponent(id)}`)));
    state.current = endpoint;
    renderEndpoint();
    hideSecret();
    hideError($("detail-error"));
    note("");
    $("f-since").value = new Date(Date.now() - 3600_000).toISOString().replace(/\.\d+Z$/, "Z");
    $("f-status").value = "";
    show("detail", $("detail-url"));
    await loadAttempts(true);
  } catch (error) {
    showError(state.view === "detail" ? $("detail-error") : $("page-error"), error);
  }
}

function renderEndpoint() {
  const endpoint = state.current;
  $("detail-url").textContent = target(endpoint);
  $("detail-status").replaceWith(
    Object.assign(statusBadge(endpoint), { id: "detail-status" }),
  );
  const reason = endpoint.disabled_reason ? ` (${endpoint.disabled_reason})` : "";
  $("detail-status").textContent += reason;
  $("detail-description").textContent = endpoint.description;
  $("detail-types").replaceChildren(chips(endpoint.event_types));
  $("detail-datasets").textContent = endpoint.datasets?.length ? endpoint.datasets.join(", ") : "All datasets";
  $("detail-format").textContent = endpoint.type === "email" ? "email" : endpoint.format;
  $("detail-version").textContent = endpoint.version;
  $("detail-created").textContent = when(endpoint.created_at);
  $("toggle").textContent = endpoint.disabled ? "Enable" : "Disable";
  $("reveal").closest("section").hidden = endpoint.type === "email";
}

/// Runs an action of the open endpoint, its API error shown beside its buttons.
function act(button, action) {
  busy(button, async () => {
    hideError($("detail-error"));
    note("");
    state.pollUntil = Date.now() + POLL_FOR_MS;
    try {
      await action();
    } catch (error) {
      showError($("detail-error"), error);
    }
  });
}

$("back").addEventListener("click", showList);
$("edit").addEventListener("click", () => openEditor(state.current));

$("toggle").addEventListener("click", (event) =>
  act(event.currentTarget, async () => {
    state.current = await api("PATCH", endpointPath(), { disabled: !state.current.disabled });
    renderEndpoint();
    note(state.current.disabled ? "Endpoint disabled: it receives nothing until enabled." : "Endpoint enabled.");
  }),
);

$("test").addEventListener("click", (event) =>
  act(event.currentTarget, async () => {
    const sent = await api("POST", endpointPath("/test"), {});
    note(`Test event sent (${sent.id}). Its attempt appears below.`);
  }),
);

$("delete").addEventListener("click", () => $("confirm").showModal());
$("confirm").addEventListener("click", (event) => {
  const choice = event.target.closest("button")?.value;
  if (!choice) return;
  $("confirm").close();
  if (choice === "delete") {
    act($("delete"), async () => {
      await api("DELETE", endpointPath());
      await showList();
    });
  }
});

// "Reveal secret" keeps its name and always shows the secret as it is now (after a
// rotation too); hiding it again is a button of its own.
function showSecret(secret) {
  $("secret").textContent = secret;
  $("secret").classList.add("shown");
  $("hide-secret").hidden = false;
}

function hideSecret() {
  $("secret").textContent = "whsec_••••••••••••••••";
  $("secret").classList.remove("shown");
  $("hide-secret").hidden = true;
}

$("reveal").addEventListener("click", (event) =>
  act(event.currentTarget, async () => {
    showSecret((await api("GET", endpointPath("/secret"))).secret);
  }),
);

$("hide-secret").addEventListener("click", hideSecret);

$("rotate").addEventListener("click", (event) =>
  act(event.currentTarget, async () => {
    showSecret((await api("POST", endpointPath("/secret/rotate"))).secret);
    note("Secret rotated: the previous one keeps signing beside it for 24 hours.");
  }),
);

$("recover-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act(event.submitter ?? event.target, async () => {
    // A time without a zone is UTC, as the hint's example is.
    const typed = $("f-since").value.trim();
    const since = new Date(/(z|[+-]\d\d:?\d\d)$/i.test(typed) ? typed : `${typed}Z`);
    if (Number.isNaN(since.getTime())) {
      throw new ApiError(400, "Since: enter a time such as 2026-01-31T09:00:00Z.");
    }
    const result = await api("POST", endpointPath("/recover"), { since: since.toISOString() });
    const messages = result.queued === 1 ? "1 failed message" : `${result.queued} failed messages`;
    note(`Recovery queued ${messages}${result.continuing ? ", and is queuing the rest" : ""}.`);
  });
});

// ----------------------------------------------------------------- attempts

async function attemptsPage(cursor) {
  const query = new URLSearchParams({ limit: String(ATTEMPTS_PAGE) });
  const status = $("f-status").value;
  if (status) query.set("status", status);
  if (cursor) query.set("cursor", cursor);
  return api("GET", endpointPath(`/attempts?${query}`));
}

/// The first page (`reset`) or the next one; an answer overtaken by a newer request is dropped.
async function loadAttempts(reset) {
  const ticket = ++state.attemptsTicket;
  const page = await attemptsPage(reset ? null : state.cursor);
  if (ticket !== state.attemptsTicket) return;
  const body = $("attempts").tBodies[0];
  if (reset) {
    state.attempts = [];
    body.replaceChildren();
  }
  state.attempts.push(...page.data);
  body.append(...page.data.map(attemptRow));
  state.cursor = page.next_cursor;
  renderAttemptsState();
}

/// New attempts at the top of the first page join the list above the ones shown.
/// A first page that reaches none of them (more came than a page holds) takes the
/// list's place, so that no attempt falls between the two: Load more goes on from it.
async function refreshAttempts() {
  const ticket = state.attemptsTicket;
  const page = await attemptsPage(null);
  if (ticket !== state.attemptsTicket || state.view !== "detail") return;
  const known = new Set(state.attempts.map((attempt) => attempt.id));
  const fresh = page.data.filter((attempt) => !known.has(attempt.id));
  if (!fresh.length) return;
  if (fresh.length === page.data.length) {
    state.attempts = [...page.data];
    state.cursor = page.next_cursor;
    $("attempts").tBodies[0].replaceChildren(...page.data.map(attemptRow));
  } else {
    state.attempts.unshift(...fresh);
    $("attempts").tBodies[0].prepend(...fresh.map(attemptRow));
  }
  renderAttemptsState();
}

function renderAttemptsState() {
  $("no-attempts").hidden = state.attempts.length > 0;
  $("more").hidden = !state.cursor;
}

function attemptSummary(attempt) {
  const code = attempt.response_status ?? "no response";
  return `${attempt.status} · ${code}`;
}

/// A row, and a second one under it with the details, opened by the row's button.
function attemptRow(attempt) {
  const detailsId = `attempt-${attempt.id}`;
  const toggle = h(
    "button",
    { type: "button", class: `link status ${attempt.status}`, "aria-expanded": "false", "aria-controls": detailsId },
    attemptSummary(attempt),
  );
  const row = h(
    "tr",
    { class: "attempt" },
    h("td", { "data-label": "Status" }, toggle),
    h("td", { "data-label": "Event type" }, attempt.event_type),
    h("td", { "data-label": "Message" }, h("code", {}, attempt.message_id), ` #${attempt.attempt}`),
    h("td", { "data-label": "Time" }, when(attempt.timestamp)),
  );
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const replay = h("button", { type: "button" }, "Replay");
  replay.addEventListener("click", () =>
    busy(replay, async () => {
      hideError(error);
      state.pollUntil = Date.now() + POLL_FOR_MS;
      try {
        await api("POST", endpointPath(`/messages/${encodeURIComponent(attempt.message_id)}/replay`));
        note(`Replay of ${attempt.message_id} queued. Its attempt appears above.`);
      } catch (failure) {
        showError(error, failure);
      }
    }),
  );
  const details = h(
    "tr",
    { class: "details", id: detailsId, hidden: true },
    h(
      "td",
      { colspan: 4 },
      h(
        "dl",
        { class: "facts" },
        h("div", {}, h("dt", {}, "Response status"), h("dd", {}, String(attempt.response_status ?? "none"))),
        h("div", {}, h("dt", {}, "Duration"), h("dd", {}, `${attempt.duration_ms} ms`)),
        h("div", {}, h("dt", {}, "Error"), h("dd", {}, attempt.error ?? "none")),
        h("div", {}, h("dt", {}, "Next attempt"), h("dd", {}, attempt.next_attempt_at ? when(attempt.next_attempt_at) : "none")),
      ),
      h("p", { class: "label" }, "Response body"),
      h("pre", { class: "body" }, attempt.response_body || "(empty)"),
      error,
      replay,
    ),
  );
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    details.hidden = !open;
  });
  const fragment = document.createDocumentFragment();
  fragment.append(row, details);
  return fragment;
}

$("f-status").addEventListener("change", () =>
  loadAttempts(true).catch((error) => showError($("detail-error"), error)),
);
$("more").addEventListener("click", (event) =>
  act(event.currentTarget, () => loadAttempts(false)),
);

setInterval(() => {
  if (state.view === "detail" && document.visibilityState === "visible" && Date.now() < state.pollUntil) {
    refreshAttempts().catch(() => {});
  }
}, POLL_EVERY_MS);

// -------------------------------------------------------------------- start

addEventListener("hashchange", () => {
  // Another session's link opened in this tab: start again with its token.
  if (new URLSearchParams(location.hash.slice(1)).has("token")) location.reload();
});

async function start() {
  if (!session?.token || !session.account) {
    showExpired("This page needs a link");
    return;
  }
  try {
    const [settings, types] = await Promise.all([
      api("GET", accountPath("settings")),
      api("GET", "v1/event-types"),
    ]);
    applySettings(settings);
    state.eventTypes = types.data.filter((type) => !type.archived);
    await loadEndpoints();
    if (state.view !== "expired") show("list");
  } catch (error) {
    showError($("page-error"), error);
  } finally {
    $("loading").hidden = true;
  }
}

start();

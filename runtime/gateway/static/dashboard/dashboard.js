// The dashboard: load /dashboard/api/state, then follow /dashboard/api/live (server-sent events).
// The page holds at most MAX_SAMPLES samples and MAX_EVENTS events, so it can stay open for days.

import { ApiError, api, runAction } from "./api.js";
import { onSchemeChange } from "./charts.js";
import { byId, fmt, setBadge } from "./dom.js";
import { setUpExplainer } from "./explain.js";
import { Cost, EventLog, MAX_EVENTS, Traffic, updateAlerts, updateKpis } from "./panels.js";
import { ACTIONS, ProviderTable } from "./providers.js";

const MAX_SAMPLES = 900;
/** After this long without the stream, the events missed are fetched again with the state. */
const RECHECK_MS = 3000;

const store = { meta: null, samples: [], events: [], status: null, lastSeq: 0 };
let view = null;
let source = null;
let scheduled = false;
let downSince = null;

// -- loading and logging in --------------------------------------------------------------------

async function load() {
  let meta;
  try {
    meta = await api.state();
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 401) return showLogin();
    return showLoadError(exc);
  }
  start(meta);
}

function showLogin(message = "") {
  source?.close();
  source = null;
  byId("dashboard").hidden = true;
  byId("login").hidden = false;
  byId("login-error").textContent = message;
  setConnection("muted", "logged out", "logged-out");
  byId("login-key").focus();
}

function showLoadError(exc) {
  const banner = byId("load-error");
  banner.textContent = `The dashboard could not load: ${exc.message}. Retrying…`;
  banner.hidden = false;
  setTimeout(load, RECHECK_MS);
}

byId("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = byId("login-key").value;
  const operator = byId("login-operator").value.trim();
  try {
    await api.login(key, operator);
  } catch (exc) {
    byId("login-error").textContent = exc.status === 401 ? "That is not the admin key." : exc.message;
    return;
  }
  byId("login-key").value = "";
  byId("login").hidden = true;
  load();
});

byId("logout").addEventListener("click", async () => {
  try {
    await api.logout();
  } finally {
    showLogin("Logged out.");
  }
});

// -- the page ---------------------------------------------------------------------------------

function start(meta) {
  byId("load-error").hidden = true;
  byId("login").hidden = true;
  byId("dashboard").hidden = false;
  store.meta = meta;
  store.samples = meta.samples.slice(-MAX_SAMPLES);
  store.events = meta.events.slice(-MAX_EVENTS);
  store.status = meta.status;
  store.lastSeq = store.samples.length ? store.samples[store.samples.length - 1].seq : 0;
  header(meta);
  build();
  connect();
}

function header(meta) {
  const started = meta.instance?.started_at;
  byId("instance").textContent = `v${meta.instance?.version ?? "?"}${started ? ` · up since ${fmt.clock(started)}` : ""}`;
  const operator = byId("operator");
  operator.hidden = !meta.operator;
  operator.textContent = meta.operator ? `operator: ${meta.operator}` : "";
  byId("logout").hidden = !meta.actions;
  document.body.dataset.actions = meta.actions ? "true" : "false";
}

function build() {
  const meta = store.meta;
  if (view) {
    view.providers.destroyCharts();
    view.traffic.destroy();
    view.cost.destroy();
  }
  view = {
    providers: new ProviderTable(byId("provider-rows"), meta, confirmAction),
    traffic: new Traffic(meta.levels, meta.interval_s),
    cost: new Cost(),
    log: new EventLog(),
  };
  view.log.replace(store.events);
  setUpExplainer(meta);
  render();
}

function schedule() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    render();
  });
}

function render() {
  if (!view) return;
  view.providers.update(store.samples);
  view.traffic.update(store.samples);
  view.cost.update(store.samples, store.status);
  updateKpis(store.samples, store.status, store.meta.interval_s);
  updateAlerts(store.status);
}

setInterval(() => view?.providers.tick(), 250);
onSchemeChange(() => view && build());

// -- the live stream ----------------------------------------------------------------------------

function setConnection(tone, label, state) {
  setBadge(byId("connection"), tone, label, state);
}

function connect() {
  source?.close();
  source = new EventSource(api.liveUrl(store.lastSeq));
  source.addEventListener("open", onOpen);
  source.addEventListener("error", onError);
  source.addEventListener("sample", (event) => addSample(JSON.parse(event.data)));
  source.addEventListener("status", (event) => {
    store.status = JSON.parse(event.data);
    schedule();
  });
  source.addEventListener("log", (event) => addEvent(JSON.parse(event.data)));
}

function addSample(sample) {
  if (sample.seq <= store.lastSeq) return; // replayed after a reconnect: already held
  store.lastSeq = sample.seq;
  store.samples.push(sample);
  if (store.samples.length > MAX_SAMPLES) store.samples.splice(0, store.samples.length - MAX_SAMPLES);
  schedule();
}

function addEvent(event) {
  store.events.push(event);
  if (store.events.length > MAX_EVENTS) store.events.splice(0, store.events.length - MAX_EVENTS);
  view?.log.add(event);
}

function onOpen() {
  setConnection("ok", "● live", "live");
  if (downSince !== null) {
    downSince = null;
    resync();
  }
}

function onError() {
  downSince ??= Date.now();
  setConnection("warn", "◌ reconnecting…", "reconnecting");
  // EventSource retries by itself (resuming with Last-Event-ID) unless the server refused the
  // stream outright (401 after a session expired, 503 when full): then it is closed for good.
  if (source && source.readyState === EventSource.CLOSED) setTimeout(recheck, RECHECK_MS);
}

async function recheck() {
  try {
    const meta = await api.state();
    if (meta.instance?.started_at !== store.meta?.instance?.started_at) start(meta);
    else connect();
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 401) showLogin("Your session ended; log in again.");
    else setTimeout(recheck, RECHECK_MS);
  }
}

/** Back after a gap: the events missed (log events are not replayed) and, after a restart of
 * the gateway (its sample numbers start again), everything. */
async function resync() {
  try {
    const meta = await api.state();
    if (meta.instance?.started_at !== store.meta?.instance?.started_at) return start(meta);
    store.events = meta.events.slice(-MAX_EVENTS);
    store.status = meta.status;
    view?.log.replace(store.events);
    schedule();
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 401) showLogin("Your session ended; log in again.");
  }
}

// -- operator actions -----------------------------------------------------------------------------

function ask(text) {
  const dialog = byId("confirm-dialog");
  byId("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
  });
}

async function confirmAction(provider, name) {
  const action = ACTIONS[name];
  document.querySelectorAll("details.menu[open]").forEach((menu) => menu.removeAttribute("open"));
  if (!(await ask(action.describe(provider)))) return;
  const notice = byId("notice");
  try {
    await runAction(provider, name);
    setBadge(notice, "ok", `${action.label}: ${provider} — done`, "ok");
  } catch (exc) {
    setBadge(notice, "bad", `${action.label}: ${provider} failed — ${exc.message}`, "failed");
    if (exc instanceof ApiError && exc.status === 401) showLogin("Your session ended; log in again.");
  }
  notice.hidden = false;
}

load();

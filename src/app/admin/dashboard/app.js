// relais dashboard: plain JavaScript, no framework, no build step.
// Reads the admin API with the bearer token (kept in sessionStorage) and
// follows /api/live (server-sent events; the token goes in the query string
// because EventSource cannot set headers). Every visible string is in STRINGS.
"use strict";

const STRINGS = {
  en: {
    title: "relais dashboard", skip: "Skip to content", language: "Language", sections: "Sections",
    nav_overview: "Line overview", nav_tags: "Tags", nav_trends: "Trends", nav_events: "Events and alarms", nav_quarantine: "Quarantine",
    login_title: "Admin token", login_help: "This gateway asks for its admin token ([admin] token_file). It is kept in this tab only (sessionStorage).",
    token: "Token", connect: "Connect", bad_token: "This token was refused.",
    devices: "Devices", device: "Device", link: "Link", poll_latency: "Poll latency", data_age: "Data age", errors: "Errors",
    sinks: "Sinks", sink: "Sink", backlog: "Backlog", state: "State",
    up: "up", down: "down", connected: "connected", disconnected: "disconnected",
    filter: "Filter (device/tag contains)", tags_caption: "Last committed value of every tag",
    tag: "Tag", value: "Value", unit: "Unit", quality: "Quality", reason: "Reason", age: "Age", sparkline: "Recent values", trend: "Trend",
    good: "good", uncertain: "uncertain", bad: "bad",
    trend_live: "Drawn from the live stream since this page was loaded. Tick \"Trend\" in the tag table to add a tag.",
    trend_history: "The last hour from the local history (1-minute means, /api/query), then the live values.",
    trend_of: "Trend of", trend_none: "No tag chosen", add_trend: "Show {tag} in the trend",
    spark_of: "Recent values of {tag}: from {min} to {max}",
    alarms: "Alarms", rule: "Rule", severity: "Severity", message: "Message", time: "Time", action: "Action",
    ack: "Acknowledge", ack_rule: "Acknowledge alarm {rule}", acked: "Alarm {rule}: {state}", ack_failed: "Acknowledging {rule} failed: {error}",
    active: "active", acknowledged: "acknowledged", cleared_unacknowledged: "cleared, not acknowledged", normal: "normal",
    events_caption: "Latest events, newest first", kind: "Kind", source: "Source",
    q_by_reason: "Quarantined records by source and reason", q_recent: "Latest quarantined records", count: "Count", where: "Where", raw: "Record",
    q_total: "{n} records in the quarantine", show: "show",
    live: "live", offline: "not connected, retrying",
    buffer: "Buffer: {rows} rows, last seq {last}; ring {depth}/{cap}",
    none: "none", missed: "The live stream fell behind; values reloaded.",
  },
  fr: {
    title: "Tableau de bord relais", skip: "Aller au contenu", language: "Langue", sections: "Rubriques",
    nav_overview: "Vue de la ligne", nav_tags: "Variables", nav_trends: "Tendances", nav_events: "Événements et alarmes", nav_quarantine: "Quarantaine",
    login_title: "Jeton d'administration", login_help: "Cette passerelle demande son jeton d'administration ([admin] token_file). Il est gardé dans cet onglet seulement (sessionStorage).",
    token: "Jeton", connect: "Se connecter", bad_token: "Ce jeton a été refusé.",
    devices: "Équipements", device: "Équipement", link: "Liaison", poll_latency: "Durée d'interrogation", data_age: "Âge des données", errors: "Erreurs",
    sinks: "Destinations", sink: "Destination", backlog: "En attente", state: "État",
    up: "en ligne", down: "hors ligne", connected: "connectée", disconnected: "déconnectée",
    filter: "Filtre (équipement/variable contient)", tags_caption: "Dernière valeur enregistrée de chaque variable",
    tag: "Variable", value: "Valeur", unit: "Unité", quality: "Qualité", reason: "Motif", age: "Âge", sparkline: "Valeurs récentes", trend: "Tendance",
    good: "bonne", uncertain: "incertaine", bad: "mauvaise",
    trend_live: "Tracée à partir du flux en direct depuis l'ouverture de la page. Cochez « Tendance » dans le tableau des variables pour ajouter une variable.",
    trend_history: "La dernière heure depuis l'historique local (moyennes par minute, /api/query), puis les valeurs en direct.",
    trend_of: "Tendance de", trend_none: "Aucune variable choisie", add_trend: "Afficher {tag} dans la tendance",
    spark_of: "Valeurs récentes de {tag} : de {min} à {max}",
    alarms: "Alarmes", rule: "Règle", severity: "Gravité", message: "Message", time: "Heure", action: "Action",
    ack: "Acquitter", ack_rule: "Acquitter l'alarme {rule}", acked: "Alarme {rule} : {state}", ack_failed: "L'acquittement de {rule} a échoué : {error}",
    active: "active", acknowledged: "acquittée", cleared_unacknowledged: "retombée, non acquittée", normal: "normale",
    events_caption: "Derniers événements, du plus récent au plus ancien", kind: "Type", source: "Source",
    q_by_reason: "Enregistrements en quarantaine par source et motif", q_recent: "Derniers enregistrements en quarantaine", count: "Nombre", where: "Où", raw: "Enregistrement",
    q_total: "{n} enregistrements en quarantaine", show: "voir",
    live: "en direct", offline: "non connecté, nouvel essai",
    buffer: "Tampon : {rows} lignes, dernier seq {last} ; anneau {depth}/{cap}",
    none: "aucun", missed: "Le flux en direct a pris du retard ; valeurs rechargées.",
  },
};

const SPARK_POINTS = 60;
const TREND_POINTS = 2000;
const COLOURS = ["#0b4f9c", "#b00020", "#1a6b2a", "#8a5a00", "#6a1b9a", "#00695c"];
const QUALITY_SYMBOL = { good: "●", uncertain: "▲", bad: "✖" };

const state = {
  lang: localStorage.getItem("relais.lang") || (navigator.language || "en").slice(0, 2),
  token: sessionStorage.getItem("relais.token") || "",
  tags: new Map(),      // name -> latest entry (as /api/tags)
  history: new Map(),   // name -> [[ms, number]]
  trend: new Set(),     // names shown in the trend
  alarms: new Map(),    // rule -> latest alarm event
  events: [],
  source: null,
};
if (!STRINGS[state.lang]) state.lang = "en";

function t(key, vars) {
  let s = (STRINGS[state.lang] && STRINGS[state.lang][key]) || STRINGS.en[key] || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.split("{" + k + "}").join(String(v));
  return s;
}

function $(id) { return document.getElementById(id); }

/** An element with attributes and children (strings become text). */
function el(tag, attrs, ...children) {
  const e = tag.startsWith("svg:") ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.setAttribute("class", v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function applyLang() {
  document.documentElement.lang = state.lang;
  $("lang").value = state.lang;
  document.title = t("title");
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  for (const e of document.querySelectorAll("[data-i18n-aria]")) e.setAttribute("aria-label", t(e.dataset.i18nAria));
  setConn(state.source && state.source.readyState === 1);
  renderAll();
}

function announce(msg) { $("announce").textContent = msg; }

async function api(path, opts) {
  const headers = Object.assign({}, (opts && opts.headers) || {});
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const r = await fetch(path, Object.assign({}, opts || {}, { headers }));
  if (r.status === 401) { showLogin(true); throw new Error("401"); }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || r.status);
  return body;
}

function showLogin(refused) {
  if (state.source) { state.source.close(); state.source = null; }
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = refused && state.token ? t("bad_token") : "";
  $("token").focus();
}

function fmtNum(v) {
  if (typeof v !== "number") return v === null || v === undefined ? "—" : String(v);
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1000 ? v.toFixed(1) : Number(v.toPrecision(6)).toString();
}

function fmtAge(s) {
  if (s === null || s === undefined) return "—";
  if (s < 1) return Math.round(s * 1000) + " ms";
  if (s < 120) return s.toFixed(1) + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return Math.round(s / 3600) + " h";
}

function fmtTime(iso) {
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleTimeString(state.lang);
}

function qualityBadge(q) {
  return el("span", { class: "badge q-" + q }, el("span", { "aria-hidden": "true" }, (QUALITY_SYMBOL[q] || "?") + " "), t(q));
}

function linkBadge(up, words) {
  return el("span", { class: "badge " + (up ? "up" : "down") }, el("span", { "aria-hidden": "true" }, (up ? "●" : "✖") + " "), t(words[up ? 0 : 1]));
}

// ---- overview -------------------------------------------------------------

function renderDevices(devices) {
  const body = $("devices").tBodies[0];
  body.replaceChildren(...devices.map((d) => {
    const errs = Object.values(d.errors || {}).reduce((a, b) => a + b, 0);
    return el("tr", { "data-device": d.name },
      el("th", { scope: "row" }, d.name),
      el("td", {}, linkBadge(d.link === "up", ["up", "down"])),
      el("td", { class: "num" }, d.poll_latency_ms === null ? "—" : fmtNum(d.poll_latency_ms) + " ms"),
      el("td", { class: "num" }, fmtAge(d.data_age_s)),
      el("td", { class: "num" }, errs));
  }));
}

function renderSinks(sinks) {
  const max = Math.max(1000, ...sinks.map((s) => s.backlog));
  $("sinks").tBodies[0].replaceChildren(...sinks.map((s) => el("tr", { "data-sink": s.name },
    el("th", { scope: "row" }, s.name),
    el("td", {}, linkBadge(s.connected !== false, ["connected", "disconnected"])),
    el("td", { class: "num" }, el("meter", { min: 0, max, value: s.backlog, "aria-label": t("backlog") + " " + s.name }), " ", s.backlog),
    el("td", {}, s.state || ""))));
}

async function refreshOverview() {
  try {
    const s = await api("/api/status");
    renderDevices(s.devices);
    renderSinks(s.sinks);
    $("buffer").textContent = t("buffer", { rows: s.buffer.rows, last: s.buffer.last_seq, depth: s.ring.depth, cap: s.ring.capacity });
  } catch (e) { /* shown by the connection state */ }
}

// ---- tags -----------------------------------------------------------------

function remember(entry) {
  const ms = Date.parse(entry.ts);
  entry.received = Date.now() - entry.age_s * 1000;
  state.tags.set(entry.name, entry);
  if (typeof entry.value === "number" || typeof entry.value === "boolean") {
    const h = state.history.get(entry.name) || [];
    const last = h[h.length - 1];
    if (!last || last[0] !== ms) h.push([ms, Number(entry.value)]);
    if (h.length > TREND_POINTS) h.splice(0, h.length - TREND_POINTS);
    state.history.set(entry.name, h);
  }
}

function sparkline(name) {
  const h = (state.history.get(name) || []).slice(-SPARK_POINTS);
  const svg = el("svg:svg", { class: "spark", viewBox: "0 0 100 20", preserveAspectRatio: "none", role: "img" });
  if (h.length < 2) { svg.setAttribute("aria-hidden", "true"); return svg; }
  const vs = h.map((p) => p[1]);
  const min = Math.min(...vs), max = Math.max(...vs);
  svg.setAttribute("aria-label", t("spark_of", { tag: name, min: fmtNum(min), max: fmtNum(max) }));
  const span = max - min || 1;
  const pts = h.map((p, i) => (i * 100 / (h.length - 1)).toFixed(1) + "," + (19 - (p[1] - min) * 18 / span).toFixed(1)).join(" ");
  svg.append(el("svg:polyline", { points: pts }));
  return svg;
}

function tagRow(e) {
  const box = el("input", { type: "checkbox", class: "trend-toggle", "aria-label": t("add_trend", { tag: e.name }), checked: state.trend.has(e.name),
    onchange: (ev) => {
      if (ev.target.checked) { state.trend.add(e.name); loadPast(e.name); } else state.trend.delete(e.name);
      drawTrend();
    } });
  return el("tr", { "data-tag": e.name },
    el("th", { scope: "row" }, e.name),
    el("td", { class: "num value" }, fmtNum(e.value)),
    el("td", {}, e.unit || ""),
    el("td", { class: "quality" }, qualityBadge(e.quality)),
    el("td", {}, e.reason || ""),
    el("td", { class: "num age" }, fmtAge(e.age_s)),
    el("td", {}, sparkline(e.name)),
    el("td", {}, box));
}

function renderTags() {
  const f = $("tag-filter").value.trim().toLowerCase();
  const rows = [...state.tags.values()].filter((e) => !f || e.name.toLowerCase().includes(f)).sort((a, b) => a.name.localeCompare(b.name));
  const body = $("tag-table").tBodies[0];
  // Keep the focused row's checkbox focused across a redraw.
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("tr[data-tag]");
  const focusName = focused ? focused.dataset.tag : null;
  body.replaceChildren(...rows.map(tagRow));
  if (focusName) { const b = body.querySelector(`tr[data-tag="${CSS.escape(focusName)}"] input`); if (b) b.focus(); }
}

function tickAges() {
  const now = Date.now();
  for (const row of $("tag-table").tBodies[0].rows) {
    const e = state.tags.get(row.dataset.tag);
    if (e) row.querySelector(".age").textContent = fmtAge((now - e.received) / 1000);
  }
}

async function loadTags() {
  const list = await api("/api/tags");
  for (const e of list) remember(e);
  renderTags();
}

// ---- trends ---------------------------------------------------------------

/** The last hour of `name` from the local history (`/api/query`, 1-minute
 *  means), put before the live values; without [history] (404) the trend
 *  stays live-only. */
async function loadPast(name) {
  let rows;
  try {
    rows = await api("/api/query?every=1m&from=-1h&tags=" + encodeURIComponent(name));
  } catch (e) { return; }
  const h = state.history.get(name) || [];
  const first = h.length ? h[0][0] : Infinity;
  const past = rows.filter((r) => typeof r.mean === "number").map((r) => [Date.parse(r.bucket) + 30000, r.mean]).filter((p) => p[0] < first);
  if (!past.length) return;
  state.history.set(name, past.concat(h));
  $("trend-source").dataset.i18n = "trend_history";
  $("trend-source").textContent = t("trend_history");
  drawTrend();
}

function drawTrend() {
  const svg = $("trend");
  const names = [...state.trend];
  svg.replaceChildren(el("svg:title", { id: "trend-title" }, names.length ? t("trend_of") + " " + names.join(", ") : t("trend_none")));
  const legend = $("trend-legend");
  legend.replaceChildren();
  const series = names.map((n) => [n, state.history.get(n) || []]).filter(([, h]) => h.length > 0);
  if (!series.length) return;
  const all = series.flatMap(([, h]) => h);
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
  const v0 = Math.min(...all.map((p) => p[1])), v1 = Math.max(...all.map((p) => p[1]));
  const W = 800, H = 260, pad = 10;
  const x = (ms) => pad + (t1 > t0 ? (ms - t0) / (t1 - t0) : 0.5) * (W - 2 * pad);
  const y = (v) => H - pad - (v1 > v0 ? (v - v0) / (v1 - v0) : 0.5) * (H - 2 * pad);
  series.forEach(([name, h], i) => {
    const colour = COLOURS[i % COLOURS.length];
    svg.append(el("svg:polyline", { points: h.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" "), stroke: colour, "data-tag": name }));
    const last = h[h.length - 1][1];
    const sw = el("span", { class: "swatch", "aria-hidden": "true" });
    sw.style.background = colour;
    legend.append(el("li", {}, sw, `${name}: ${fmtNum(last)} (${fmtNum(v0)} … ${fmtNum(v1)}), ${h.length} pts`));
  });
}

// ---- events and alarms -----------------------------------------------------

function noteEvent(e) {
  state.events.unshift(e);
  if (state.events.length > 200) state.events.length = 200;
  if (e.kind === "alarm" && e.details && e.details.rule) state.alarms.set(e.details.rule, e);
}

async function ack(rule, button) {
  button.disabled = true;
  try {
    const r = await api("/api/alarms/" + encodeURIComponent(rule) + "/ack", { method: "POST" });
    announce(t("acked", { rule, state: t(r.state) }));
  } catch (err) {
    announce(t("ack_failed", { rule, error: err.message }));
    button.disabled = false;
  }
}

function renderAlarms() {
  const rows = [...state.alarms.values()].filter((e) => e.details.state !== "normal").map((e) => {
    const st = e.details.state;
    const open = st === "active" || st === "cleared_unacknowledged";
    const btn = open ? el("button", { type: "button", class: "ack", "data-rule": e.details.rule, "aria-label": t("ack_rule", { rule: e.details.rule }) }, t("ack")) : "";
    if (btn) btn.addEventListener("click", () => ack(e.details.rule, btn));
    return el("tr", { "data-rule": e.details.rule, "data-state": st },
      el("th", { scope: "row" }, e.details.rule),
      el("td", { class: "alarm-state" }, el("span", { class: "badge " + (st === "active" ? "q-bad" : st === "acknowledged" ? "q-uncertain" : "q-good") }, t(st))),
      el("td", {}, e.severity), el("td", {}, e.details.message || e.message), el("td", {}, fmtTime(e.ts)), el("td", {}, btn));
  });
  $("alarms").tBodies[0].replaceChildren(...rows);
}

function renderEvents() {
  $("event-table").tBodies[0].replaceChildren(...state.events.slice(0, 50).map((e) => el("tr", {},
    el("td", {}, fmtTime(e.ts)), el("td", {}, e.kind), el("td", {}, e.severity), el("td", {}, `${e.source} ${e.name}`), el("td", {}, e.message))));
  renderAlarms();
}

async function loadEvents() {
  const list = await api("/api/events");
  state.events = [];
  for (const e of list.reverse()) noteEvent(e);
  renderEvents();
}

// ---- quarantine ------------------------------------------------------------

async function loadQuarantine() {
  try {
    const q = await api("/api/quarantine?limit=50");
    $("q-total").textContent = t("q_total", { n: q.total });
    $("q-counts").tBodies[0].replaceChildren(...q.by_reason.map((r) => el("tr", {}, el("td", {}, r.source), el("td", {}, r.reason), el("td", { class: "num" }, r.count))));
    $("q-recent").tBodies[0].replaceChildren(...q.recent.map((r) => el("tr", {},
      el("td", {}, fmtTime(r.ts)), el("td", {}, r.source), el("td", {}, `${r.origin} ${r.location}`), el("td", {}, r.reason),
      el("td", {}, el("details", {}, el("summary", {}, t("show")), el("pre", {}, r.raw))))));
  } catch (e) { $("q-total").textContent = e.message; }
}

// ---- live stream -------------------------------------------------------------

function setConn(live) {
  const c = $("conn");
  c.dataset.state = live ? "live" : "off";
  c.textContent = (live ? "● " : "✖ ") + t(live ? "live" : "offline");
}

let redraw = null;
function scheduleRedraw() {
  if (redraw) return;
  redraw = requestAnimationFrame(() => { redraw = null; renderTags(); drawTrend(); });
}

function follow() {
  const q = state.token ? "?token=" + encodeURIComponent(state.token) : "";
  const src = new EventSource("/api/live" + q);
  state.source = src;
  src.addEventListener("open", () => setConn(true));
  src.addEventListener("error", () => setConn(false));
  src.addEventListener("samples", (m) => { for (const e of JSON.parse(m.data)) remember(e); scheduleRedraw(); });
  src.addEventListener("event", (m) => { noteEvent(JSON.parse(m.data)); renderEvents(); });
  src.addEventListener("missed", () => { announce(t("missed")); loadTags().catch(() => {}); });
}

function renderAll() {
  if ($("app").hidden) return;
  renderTags(); drawTrend(); renderEvents();
  refreshOverview(); loadQuarantine();
}

async function start() {
  try {
    await api("/api/status");
  } catch (e) {
    if (e.message === "401") return;
    throw e;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  await Promise.all([loadTags(), loadEvents(), refreshOverview(), loadQuarantine()]);
  follow();
  setInterval(refreshOverview, 2000);
  setInterval(loadQuarantine, 10000);
  setInterval(tickAges, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("lang").addEventListener("change", (e) => { state.lang = e.target.value; localStorage.setItem("relais.lang", state.lang); applyLang(); });
  $("tag-filter").addEventListener("input", renderTags);
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("relais.token", state.token);
    start();
  });
  applyLang();
  start();
});

// bdia console: a few pages over the same API a script uses.
// The access token lives in sessionStorage (one tab, gone when it closes);
// the client secret is only kept in memory for the upload examples.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
let secretInMemory = null;
let filesCursor = null;

function session() {
  const token = sessionStorage.getItem("bdia.token");
  const clientId = sessionStorage.getItem("bdia.client_id");
  const expires = Number(sessionStorage.getItem("bdia.expires") || 0);
  if (!token || !clientId || Date.now() > expires) return null;
  return { token, clientId };
}

function signOut() {
  sessionStorage.removeItem("bdia.token");
  sessionStorage.removeItem("bdia.client_id");
  sessionStorage.removeItem("bdia.expires");
  secretInMemory = null;
  location.hash = "#signin";
  route();
}

async function api(path, asText, method, body) {
  const s = session();
  if (!s) { signOut(); throw new Error("Signed out"); }
  const headers = { "Authorization": "Bearer " + s.token, "x-api-key": s.clientId };
  const init = { method: method || "GET", headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 401) { signOut(); throw new Error("Session expired: sign in again"); }
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return asText ? r.text() : r.json();
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function fmtTime(secs) {
  if (!secs) return "";
  return new Date(secs * 1000).toISOString().replace("T", " ").replace(".000Z", "Z");
}

function fmtNum(n) {
  return Number(n).toLocaleString("en-US");
}

// ---- sign in ----

async function signIn(ev) {
  ev.preventDefault();
  $("signin-error").textContent = "";
  const clientId = $("client-id").value.trim();
  const secret = $("client-secret").value;
  const body = new URLSearchParams({ grant_type: "client_credentials", client_id: clientId, client_secret: secret });
  try {
    const r = await fetch("/ims/token/v3", { method: "POST", body });
    const j = await r.json();
    if (!r.ok) throw new Error(j.error || r.statusText);
    sessionStorage.setItem("bdia.token", j.access_token);
    sessionStorage.setItem("bdia.client_id", clientId);
    sessionStorage.setItem("bdia.expires", String(Date.now() + (j.expires_in - 30) * 1000));
    secretInMemory = secret;
    $("client-secret").value = "";
    // First run: nothing uploaded yet -> show how to upload.
    let hasFiles = true;
    try { hasFiles = (await api("/aa/collect/v1/events?limit=1")).files.length > 0; } catch (_) { /* keep files */ }
    location.hash = hasFiles ? "#files" : "#start";
    route();
  } catch (e) {
    $("signin-error").textContent = "Sign-in failed: " + e.message;
  }
}

// ---- how to upload ----

function showStart(hasFiles) {
  const s = session();
  const base = location.origin;
  const secret = secretInMemory || "<client secret>";
  $("curl-example").textContent =
    "TOKEN=$(curl -s -X POST " + base + "/ims/token/v3 \\\n" +
    "  -d grant_type=client_credentials -d client_id=" + s.clientId + " -d client_secret=" + secret + " \\\n" +
    "  | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')\n" +
    "curl -s -X POST " + base + "/aa/collect/v1/events \\\n" +
    "  -H \"Authorization: Bearer $TOKEN\" -H \"x-api-key: " + s.clientId + "\" \\\n" +
    "  -H \"x-adobe-vgid: group1\" -F file=@ingest_file.csv.gz";
  $("upload-example").textContent =
    "export BDIA_URL=" + base + "\n" +
    "export BDIA_CLIENT_ID=" + s.clientId + "\n" +
    "export BDIA_CLIENT_SECRET=" + secret + "\n" +
    "bdia generate --rows 10000 --out ingest_file.csv.gz   # or your own file\n" +
    "bdia upload --vgid group1 --wait ingest_file.csv.gz";
  $("start-empty").hidden = hasFiles !== false;
}

// ---- files ----

async function loadFiles(append) {
  const q = new URLSearchParams({ limit: "50" });
  const g = $("files-group").value.trim();
  const st = $("files-status").value;
  if (g) q.set("vgid", g);
  if (st) q.set("status", st);
  if (append && filesCursor) q.set("cursor", filesCursor);
  const page = await api("/aa/collect/v1/events?" + q.toString());
  const body = $("files-table").tBodies[0];
  if (!append) body.replaceChildren();
  for (const f of page.files) {
    const tr = el("tr");
    tr.dataset.fileId = f.file_id;
    tr.append(el("td", fmtTime(f.received_date)), el("td", f.file_id, "file-id"),
      el("td", f.visitor_group_id), el("td", f.upload_name),
      el("td", f.status_code, "status status-" + f.status_code),
      el("td", fmtNum(f.rows), "num"), el("td", fmtNum(f.invalid_rows), "num"));
    const td = el("td");
    const b = el("button", "Log", "show-log");
    b.type = "button";
    b.addEventListener("click", () => showFile(f.file_id));
    td.append(b);
    tr.append(td);
    body.append(tr);
  }
  filesCursor = page.next_cursor;
  $("files-more").hidden = !filesCursor;
  $("files-empty").hidden = body.rows.length > 0;
}

async function showFile(fileId) {
  const f = await api("/aa/collect/v1/events/" + encodeURIComponent(fileId));
  $("file-detail-id").textContent = f.file_id;
  $("file-log").textContent = f.processing_log;
  $("file-record").textContent = JSON.stringify(f, null, 2);
  $("file-rejects").dataset.fileId = f.file_id;
  $("file-detail").hidden = false;
  $("file-detail").scrollIntoView();
}

async function downloadRejects() {
  const id = $("file-rejects").dataset.fileId;
  const csv = await api("/aa/collect/v1/events/" + encodeURIComponent(id) + "/rejects", true);
  const a = el("a");
  a.href = URL.createObjectURL(new Blob([csv], { type: "text/csv" }));
  a.download = id + "-rejects.csv";
  document.body.append(a);
  a.click();
  a.remove();
}

// ---- visitor groups ----

async function loadGroups() {
  const j = await api("/api/v1/groups");
  const body = $("groups-table").tBodies[0];
  body.replaceChildren();
  for (const g of j.groups) {
    const tr = el("tr");
    tr.dataset.group = g.visitor_group_id;
    tr.append(el("td", g.visitor_group_id), el("td", fmtNum(g.queued), "num"),
      el("td", g.in_progress || "-"), el("td", fmtNum(g.errors), "num"),
      el("td", g.last_completed ? g.last_completed + " (" + fmtTime(g.last_completed_date) + ")" : "-"),
      el("td", g.rows_per_second == null ? "-" : fmtNum(Math.round(g.rows_per_second)), "num"));
    const td = el("td");
    const b = el("button", "Manage", "show-group");
    b.type = "button";
    b.addEventListener("click", () => showGroup(g.visitor_group_id));
    td.append(b);
    tr.append(td);
    body.append(tr);
  }
  $("groups-empty").hidden = j.groups.length > 0;
}

// ---- one visitor group: state, actions, pause / resume / cancel ----

function groupPath(vgid) {
  return "/aa/collect/v1/groups/" + encodeURIComponent(vgid);
}

function fillGroup(g) {
  $("group-detail-id").textContent = g.visitor_group_id;
  $("group-state").textContent = g.state;
  $("group-state").className = "group-state group-" + g.state;
  $("group-pause").hidden = g.state === "paused";
  $("group-resume").hidden = g.state !== "paused";
  let summary = fmtNum(g.files_waiting) + " files (" + fmtNum(g.rows_waiting) + " rows) waiting";
  if (g.in_progress) summary += "; in progress: " + g.in_progress.file_id;
  if (g.last_error) summary += "; last error: " + g.last_error.file_id + ": " + (g.last_error.error || "");
  $("group-summary").textContent = summary;
  const body = $("group-actions").tBodies[0];
  body.replaceChildren();
  for (const a of g.actions.slice().reverse()) {
    const tr = el("tr");
    tr.append(el("td", fmtTime(a.at)), el("td", a.action), el("td", a.actor), el("td", fmtNum(a.files), "num"));
    body.append(tr);
  }
  $("group-detail").dataset.group = g.visitor_group_id;
  $("group-detail").hidden = false;
}

async function showGroup(vgid) {
  $("group-error").textContent = "";
  fillGroup(await api(groupPath(vgid)));
  $("group-detail").scrollIntoView();
}

async function groupAction(action) {
  const vgid = $("group-detail").dataset.group;
  if (action === "cancel" && !confirm("Cancel every waiting file of " + vgid + "? They will never be processed.")) return;
  $("group-error").textContent = "";
  try {
    fillGroup(await api(groupPath(vgid) + "/" + action, false, "POST"));
    await loadGroups();
  } catch (e) {
    $("group-error").textContent = e.message;
  }
}

// ---- webhooks ----

async function loadWebhooks() {
  const j = await api("/api/v1/webhooks");
  const body = $("webhooks-table").tBodies[0];
  body.replaceChildren();
  for (const h of j.webhooks) {
    const tr = el("tr");
    tr.dataset.webhookId = h.id;
    const show = el("button", "Deliveries", "show-deliveries");
    show.type = "button";
    show.addEventListener("click", () => showDeliveries(h));
    const cell = el("td");
    cell.append(show);
    tr.append(el("td", h.url), el("td", h.events.length ? h.events.join(", ") : "all"),
      el("td", fmtTime(h.created)), cell);
    body.append(tr);
  }
  $("webhooks-empty").hidden = j.webhooks.length > 0;
  $("webhook-detail").hidden = true;
}

async function showDeliveries(h) {
  const j = await api("/api/v1/webhooks/" + encodeURIComponent(h.id) + "/deliveries?limit=100");
  const body = $("deliveries-table").tBodies[0];
  body.replaceChildren();
  for (const d of j.deliveries) {
    const tr = el("tr");
    tr.dataset.deliveryId = d.id;
    tr.append(el("td", d.id), el("td", d.type), el("td", d.file_id), el("td", fmtTime(d.occurred_at)),
      el("td", d.state, "state"), el("td", fmtNum(d.attempts), "num"),
      el("td", d.last_status == null ? "-" : d.last_status, "last-status"),
      el("td", d.last_error || "", "last-error"),
      el("td", d.last_latency_ms == null ? "-" : fmtNum(d.last_latency_ms), "num"));
    body.append(tr);
  }
  $("webhook-detail-url").textContent = h.url;
  $("deliveries-empty").hidden = j.deliveries.length > 0;
  $("webhook-detail").hidden = false;
}

// ---- reports ----

const SERIES = [["pageviews", "#2f6fde"], ["visits", "#e0782f"], ["visitors", "#2e9e5b"]];

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function drawChart(rows) {
  const svg = $("report-chart");
  svg.replaceChildren();
  const W = 760, H = 320, L = 60, R = 20, T = 15, B = 45;
  const max = niceMax(Math.max(0, ...rows.flatMap((r) => SERIES.map(([k]) => r[k]))));
  const x = (i) => L + (rows.length <= 1 ? (W - L - R) / 2 : i * (W - L - R) / (rows.length - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  for (let t = 0; t <= 4; t++) {
    const v = max * t / 4;
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e3e6ea" }));
    svg.append(svgEl("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmtNum(v)));
  }
  const every = Math.max(1, Math.ceil(rows.length / 10));
  rows.forEach((r, i) => {
    if (i % every === 0 || i === rows.length - 1) {
      svg.append(svgEl("text", { x: x(i), y: H - B + 16, "text-anchor": "middle" }, r.day.slice(5)));
    }
  });
  svg.append(svgEl("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#888" }));
  for (const [key, color] of SERIES) {
    const pts = rows.map((r, i) => x(i) + "," + y(r[key])).join(" ");
    svg.append(svgEl("polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 2, "data-series": key }));
    rows.forEach((r, i) => {
      const c = svgEl("circle", { cx: x(i), cy: y(r[key]), r: 3, fill: color, "data-series": key, "data-day": r.day, "data-value": r[key] });
      c.append(svgEl("title", {}, r.day + " " + key + ": " + r[key]));
      svg.append(c);
    });
  }
}

function fillTable(id, rows, keyName) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  for (const r of rows) {
    const tr = el("tr");
    const label = r[keyName] === null ? "(none)" : r[keyName];
    tr.append(el("td", label), el("td", r.pageviews, "num"), el("td", r.visits, "num"), el("td", r.visitors, "num"));
    body.append(tr);
  }
}

async function loadSuites() {
  const sel = $("report-suite");
  if (sel.options.length > 0) return;
  const j = await api("/api/v1/report-suites");
  for (const s of j.report_suites) {
    const o = el("option", s.rsid + " (" + s.time_zone + (s.accept_single_hits ? ", takes single hits" : "") + ")");
    o.value = s.rsid;
    sel.append(o);
  }
  if (!$("report-to").value) {
    const today = new Date();
    const from = new Date(today.getTime() - 29 * 86400000);
    $("report-to").value = today.toISOString().slice(0, 10);
    $("report-from").value = from.toISOString().slice(0, 10);
  }
}

async function runReport(ev) {
  if (ev) ev.preventDefault();
  $("report-error").textContent = "";
  const rsid = $("report-suite").value;
  if (!rsid) { $("report-error").textContent = "No report suite yet: upload a file first."; return; }
  const common = "&from=" + encodeURIComponent($("report-from").value) + "&to=" + encodeURIComponent($("report-to").value);
  const base = "/api/v1/report-suites/" + encodeURIComponent(rsid) + "/report?metrics=pageviews,visits,visitors";
  try {
    const [daily, pages] = await Promise.all([
      api(base + "&dimension=day" + common),
      api(base + "&dimension=page&limit=20" + common),
    ]);
    const t = daily.totals;
    $("report-totals").textContent = "Total: " + fmtNum(t.pageviews) + " page views, " + fmtNum(t.visits) +
      " visits, " + fmtNum(t.visitors) + " visitors (" + daily.from + " to " + daily.to + ")";
    drawChart(daily.rows);
    fillTable("daily-table", daily.rows, "day");
    fillTable("pages-table", pages.rows.filter((r) => r.page !== null), "page");
    $("report-output").hidden = false;
  } catch (e) {
    $("report-error").textContent = e.message;
  }
}

// ---- report suite settings ----

let settingsSuites = [];

async function loadSettings() {
  const sel = $("settings-suite");
  const j = await api("/api/v1/report-suites");
  settingsSuites = j.report_suites;
  const keep = sel.value;
  sel.replaceChildren();
  for (const s of settingsSuites) {
    const o = el("option", s.rsid);
    o.value = s.rsid;
    sel.append(o);
  }
  if (keep) sel.value = keep;
  showSettings();
}

function showSettings() {
  const suite = settingsSuites.find((s) => s.rsid === $("settings-suite").value);
  const body = $("settings-table").tBodies[0];
  body.replaceChildren();
  const list = suite ? suite.evar_settings : [];
  for (const e of list) {
    const tr = el("tr");
    const reset = el("button", "Reset to defaults");
    reset.type = "button";
    reset.dataset.evar = e.evar;
    reset.addEventListener("click", () => saveEvar(e.evar, null));
    const td = el("td");
    td.append(reset);
    tr.append(el("td", "eVar" + e.evar), el("td", e.expiration), el("td", e.allocation === "original" ? "original value" : "most recent"), td);
    body.append(tr);
  }
  $("settings-empty").hidden = list.length > 0;
}

// Replaces one eVar's setting (null: back to the defaults), keeping the others.
async function saveEvar(evar, setting) {
  $("settings-error").textContent = "";
  const rsid = $("settings-suite").value;
  const suite = settingsSuites.find((s) => s.rsid === rsid);
  if (!suite) return;
  const list = suite.evar_settings.filter((e) => e.evar !== evar);
  if (setting) list.push(setting);
  try {
    const updated = await api("/api/v1/report-suites/" + encodeURIComponent(rsid), false, "PATCH", { evar_settings: list });
    settingsSuites = settingsSuites.map((s) => (s.rsid === rsid ? updated : s));
    showSettings();
  } catch (e) {
    $("settings-error").textContent = e.message;
  }
}

async function submitSettings(ev) {
  ev.preventDefault();
  const evar = Number($("settings-evar").value);
  await saveEvar(evar, { evar, expiration: $("settings-expiration").value.trim(), allocation: $("settings-allocation").value });
}

// ---- routing ----

async function route() {
  const s = session();
  let page = (location.hash || "#files").slice(1);
  if (!s) page = "signin";
  if (s && page === "signin") page = "files";
  for (const p of document.querySelectorAll(".page")) p.hidden = p.id !== "page-" + page;
  $("nav").hidden = !s;
  if (s) $("whoami").textContent = s.clientId;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.id === "nav-" + page);
  try {
    if (page === "files") await loadFiles(false);
    if (page === "groups") await loadGroups();
    if (page === "webhooks") await loadWebhooks();
    if (page === "start") {
      let hasFiles;
      try { hasFiles = (await api("/aa/collect/v1/events?limit=1")).files.length > 0; } catch (_) { hasFiles = undefined; }
      showStart(hasFiles);
    }
    if (page === "reports") await loadSuites();
    if (page === "settings") await loadSettings();
  } catch (e) {
    const err = $("report-error");
    if (page === "reports" && err) err.textContent = e.message;
    console.error(e);
  }
}

$("signin-form").addEventListener("submit", signIn);
$("signout").addEventListener("click", signOut);
$("files-filter").addEventListener("submit", (e) => { e.preventDefault(); loadFiles(false); });
$("files-more").addEventListener("click", () => loadFiles(true));
$("file-rejects").addEventListener("click", downloadRejects);
for (const action of ["pause", "resume", "cancel"]) {
  $("group-" + action).addEventListener("click", () => groupAction(action));
}
$("report-form").addEventListener("submit", runReport);
$("settings-form").addEventListener("submit", submitSettings);
$("settings-suite").addEventListener("change", showSettings);
window.addEventListener("hashchange", route);
route();

// fes live view — streams the control loop over a WebSocket into three uPlot charts.
// NOT A CLEARED MEDICAL DEVICE. Every change is validated and applied by the server.
"use strict";

const WINDOW_S = 10;
// The session token from the page's own URL (http://127.0.0.1:PORT/?token=…): the server
// refuses every request without it, so the page sends it back on each one.
const TOKEN = new URLSearchParams(location.search).get("token") || "";
const AUTH = { "X-FES-Token": TOKEN };
const data = { t: [], heel: [], thrOff: [], thrOn: [], pitch: [], cur: [] };
const marks = [];          // {t, event}
let tilt = null;           // tilt thresholds of the profile in use
let fields = [];           // editable fields from the server
const stats = { messages: 0, samples: 0, lags: [], times: [], updatesPerSec: 0, lagMs: null,
                lagP95Ms: null, lastMessageWall: 0, applied: [], errors: 0 };
window.liveStats = stats;

const $ = (id) => document.getElementById(id);

function showMessage(text, ok) {
  const m = $("message");
  m.textContent = text;
  m.className = "message " + (ok ? "ok" : "error");
}

// ---------------------------------------------------------------- charts
function markerHook(u) {
  const ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
  const [x0, x1] = [u.scales.x.min, u.scales.x.max];
  ctx.save();
  for (const m of marks) {
    if (m.t == null || m.t < x0 || m.t > x1) continue;
    const color = m.event === "heel_off" ? "#f08c00" : m.event === "heel_strike" ? "#7b2cbf" : null;
    if (!color) continue;
    const x = Math.round(u.valToPos(m.t, "x", true));
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5 * devicePixelRatio;
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
  }
  ctx.restore();
}

function tiltHook(u) {
  if (!tilt) return;
  const lines = [[-tilt.onset_rate_dps, "#f08c00", "onset"], [tilt.swing_rate_dps, "#2b8a3e", "swing"],
                 [tilt.strike_rate_dps, "#7b2cbf", "strike"], [tilt.stance_rate_dps, "#adb5bd", "stance"],
                 [-tilt.stance_rate_dps, "#adb5bd", ""]];
  const ctx = u.ctx;
  ctx.save();
  ctx.setLineDash([6, 4]);
  for (const [v, color, label] of lines) {
    const y = Math.round(u.valToPos(v, "y", true));
    if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) continue;
    ctx.strokeStyle = color; ctx.lineWidth = 1.2 * devicePixelRatio;
    ctx.beginPath(); ctx.moveTo(u.bbox.left, y); ctx.lineTo(u.bbox.left + u.bbox.width, y); ctx.stroke();
    if (label) { ctx.fillStyle = color; ctx.fillText(label, u.bbox.left + 4, y - 3); }
  }
  ctx.restore();
}

function makePlot(el, title, series, extraHooks) {
  const width = Math.max(400, el.parentElement.clientWidth - 10);
  const opts = {
    title, width, height: 190,
    scales: { x: { time: false, range: (u, min, max) => [Math.max(0, max - WINDOW_S), Math.max(max, WINDOW_S)] } },
    axes: [{ label: "time (s)" }, {}],
    series: [{ label: "t (s)" }, ...series],
    legend: { live: false },
    cursor: { drag: { x: false, y: false } },
    hooks: { draw: [markerHook, ...(extraHooks || [])] },
  };
  return new uPlot(opts, [[], ...series.map(() => [])], el);
}

const plots = {
  heel: makePlot($("plot-heel"), "heel force (N) with heel-off / heel-strike thresholds", [
    { label: "heel N", stroke: "#1c7ed6", width: 1.5 },
    { label: "heel-off threshold", stroke: "#f08c00", dash: [6, 4] },
    { label: "heel-strike threshold", stroke: "#2b8a3e", dash: [6, 4] }]),
  tilt: makePlot($("plot-tilt"), "toe-up rotation rate (deg/s) with tilt thresholds", [
    { label: "toe-up rate", stroke: "#1c7ed6", width: 1.5 }], [tiltHook]),
  current: makePlot($("plot-current"), "delivered current (mA); | heel-off (orange), heel strike (purple)", [
    { label: "current mA", stroke: "#e03131", width: 2, fill: "rgba(224,49,49,0.08)" }]),
};

function redraw() {
  plots.heel.setData([data.t, data.heel, data.thrOff, data.thrOn]);
  plots.tilt.setData([data.t, data.pitch]);
  plots.current.setData([data.t, data.cur]);
}

function append(d) {
  const n = d.t_s.length;
  if (!n) return;
  for (let i = 0; i < n; i++) {
    data.t.push(d.t_s[i]); data.heel.push(d.heel_n[i]); data.thrOff.push(d.thr_off_n[i]);
    data.thrOn.push(d.thr_on_n[i]); data.pitch.push(d.pitch_rate_dps[i]); data.cur.push(d.current_ma[i]);
  }
  const tmax = data.t[data.t.length - 1];
  let cut = 0;
  while (cut < data.t.length && data.t[cut] < tmax - WINDOW_S - 1) cut++;
  if (cut) for (const k of Object.keys(data)) data[k].splice(0, cut);
  while (marks.length && marks[0].t != null && marks[0].t < tmax - WINDOW_S - 1) marks.shift();
  stats.samples += n;
}

// ---------------------------------------------------------------- status and logs
function setStatus(s) {
  const st = $("state");
  st.textContent = s.state;
  st.className = "badge " + (s.fault ? "fault" : ["ramp_up", "swing", "extension", "ramp_down"].includes(s.state) ? "stim" : "on");
  $("amp").textContent = s.amplitude_ma.toFixed(1) + " mA";
  const ad = $("adaptive");
  ad.hidden = !s.adaptive;
  ad.textContent = s.adaptive ? "adaptive: " + s.adaptive : "";
  const f = $("fault");
  if (s.fault || s.error) { f.hidden = false; f.textContent = "FAULT: " + (s.fault || s.error) + (s.loop_ended ? " (loop ended)" : ""); }
  else f.hidden = true;
}

function logEvents(events) {
  const ol = $("event-log");
  for (const e of events) {
    marks.push({ t: e.t_s, event: e.event });
    const li = document.createElement("li");
    li.textContent = (e.t_s == null ? "" : e.t_s.toFixed(2) + " s  ") + e.event + " → " + e.state;
    ol.prepend(li);
    while (ol.children.length > 40) ol.removeChild(ol.lastChild);
  }
}

function showChanges(changes) {
  const ol = $("change-log");
  ol.innerHTML = "";
  for (const c of changes) {
    const li = document.createElement("li");
    li.dataset.id = c.id;
    li.dataset.status = c.status;
    const what = c.changes.map((x) => `${x.path}: ${x.old} → ${x.new}`).join(", ");
    li.textContent = `#${c.id} ${c.status}` + (c.status === "applied"
      ? ` at ${c.applied_t_s == null ? "?" : c.applied_t_s.toFixed(2)} s (${c.applied_state}, output ${c.applied_level}) ${c.how}`
      : "") + ` — ${what} (by ${c.by})`;
    ol.appendChild(li);
    if (c.status === "applied" && !stats.applied.includes(c.id)) {
      stats.applied.push(c.id);
      const m = $("message");
      if (m.dataset.pending == String(c.id)) showMessage(`Change #${c.id} applied at ${c.applied_t_s.toFixed(2)} s (${c.applied_state}, output at zero).`, true);
    }
  }
}

// ---------------------------------------------------------------- settings form
function buildForm(list) {
  fields = list;
  const box = $("fields");
  box.innerHTML = "";
  const groups = {};
  for (const f of list) {
    if (!groups[f.group]) {
      const fs = document.createElement("fieldset");
      const lg = document.createElement("legend");
      lg.textContent = f.group;
      fs.appendChild(lg);
      box.appendChild(fs);
      groups[f.group] = fs;
    }
    const row = document.createElement("div");
    row.className = "field";
    const id = "f-" + f.path.replaceAll(".", "-");
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = f.path.split(".").slice(-1)[0];
    const input = document.createElement("input");
    input.id = id; input.type = "number"; input.name = f.path;
    input.step = f.integer ? "1" : "any";
    input.value = f.value;
    input.dataset.current = f.value;
    input.addEventListener("input", () => input.classList.toggle("changed", input.value !== String(input.dataset.current)));
    const range = document.createElement("span");
    range.className = "range";
    range.textContent = f.allowed || "";
    row.append(label, input, range);
    groups[f.group].appendChild(row);
  }
}

function refreshForm(list) {
  for (const f of list) {
    const input = document.getElementById("f-" + f.path.replaceAll(".", "-"));
    if (!input) continue;
    const edited = input.classList.contains("changed");
    input.dataset.current = f.value;
    if (!edited || input.value === String(f.value)) { input.value = f.value; input.classList.remove("changed"); }
  }
}

function showActions(actions) {
  const ol = $("action-log");
  ol.innerHTML = "";
  for (const a of actions) {
    const li = document.createElement("li");
    li.dataset.kind = a.kind;
    li.dataset.outcome = a.outcome;
    const when = new Date(a.asked_wall_s * 1000).toLocaleTimeString();
    li.textContent = `${when} ${a.kind}${a.detail ? " (" + a.detail + ")" : ""} by ${a.by}: ${a.outcome}`;
    ol.prepend(li);
  }
}

async function post(url, body) {
  const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json", ...AUTH },
                               body: JSON.stringify(body) });
  let j = {};
  try { j = await r.json(); } catch (e) { j = { error: "bad answer from the server" }; }
  return [r.status, j];
}

$("changes").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const changes = {};
  for (const f of fields) {
    const input = document.getElementById("f-" + f.path.replaceAll(".", "-"));
    if (input.value !== String(input.dataset.current)) {
      const v = Number(input.value);
      // a number, or the text as typed: the server refuses it with a clear message
      changes[f.path] = input.value.trim() === "" || Number.isNaN(v) ? input.value : v;
    }
  }
  if (!Object.keys(changes).length) { showMessage("Nothing changed.", false); return; }
  const [status, j] = await post("/api/change", { changes, by: $("by").value });
  if (status === 202) {
    $("message").dataset.pending = j.change.id;
    showMessage(`Change #${j.change.id} accepted: ${j.message}.`, true);
  } else {
    stats.errors++;
    showMessage("Refused: " + (j.problems || [j.error]).join("\n"), false);
  }
});

$("test-burst").addEventListener("click", async () => {
  const [status, j] = await post("/api/test-burst", { duration_ms: Number($("burst-ms").value), by: $("burst-by").value });
  showMessage(status === 202 ? `Test burst of ${j.test_burst.duration_ms} ms queued.` : "Refused: " + j.error, status === 202);
});

$("clear-fault").addEventListener("click", async () => {
  const [status, j] = await post("/api/clear-fault", { by: $("clear-by").value });
  showMessage(status === 202 ? "Fault cleared; walking detection restarts." : "Refused: " + j.error, status === 202);
});

$("save").addEventListener("click", async () => {
  const [status, j] = await post("/api/save", { by: $("save-by").value, note: $("save-note").value });
  showMessage(status === 201 ? `Saved as ${j.version.patient_id} version ${j.version.version}.` : "Not saved: " + j.error, status === 201);
});

// ---------------------------------------------------------------- stream
function connect() {
  const ws = new WebSocket(`ws://${location.host}/ws?token=${encodeURIComponent(TOKEN)}`);
  ws.onopen = () => { $("conn").textContent = "live"; $("conn").className = "badge on"; };
  ws.onclose = () => { $("conn").textContent = "disconnected"; $("conn").className = "badge off"; setTimeout(connect, 1000); };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.profile) {
      tilt = msg.profile.tilt;
      if (!fields.length) buildForm(msg.profile.fields); else refreshForm(msg.profile.fields);
    }
    if (msg.changes) showChanges(msg.changes);
    if (msg.actions) showActions(msg.actions);
    append(msg.data);
    logEvents(msg.events);
    setStatus(msg.status);
    redraw();
    const now = Date.now() / 1000;
    stats.messages++;
    stats.lastMessageWall = now;
    stats.times.push(now);
    while (stats.times.length && stats.times[0] < now - 2) stats.times.shift();
    stats.updatesPerSec = stats.times.length / 2;
    if (msg.produced_wall_s && msg.data.t_s.length) {
      stats.lagMs = (now - msg.produced_wall_s) * 1000;
      stats.lags.push(stats.lagMs);
      if (stats.lags.length > 500) stats.lags.shift();
      const sorted = [...stats.lags].sort((a, b) => a - b);
      stats.lagP95Ms = sorted[Math.floor(0.95 * (sorted.length - 1))];
    }
    $("stats").textContent = `${stats.updatesPerSec.toFixed(0)} updates/s · lag ${stats.lagMs == null ? "–" : stats.lagMs.toFixed(0)} ms`;
  };
}

fetch("/api/config", { headers: AUTH }).then(async (r) => {
  const cfg = await r.json();
  if (!r.ok) throw new Error(cfg.error || `the server answered ${r.status}`);
  return cfg;
}).then((cfg) => {
  $("source").textContent = `${cfg.source} · trigger ${cfg.mode} · patient ${cfg.patient_id || "–"}` +
    (cfg.store ? "" : " · no profile store (start with --store DIR to save versions)");
  $("disclaimer").textContent = cfg.disclaimer;
  $("burst-ms").max = cfg.test_burst_max_ms;
  $("save").disabled = !cfg.store;
  buildForm(cfg.fields);
  tilt = cfg.profile.trigger.tilt;
  connect();
}).catch((err) => showMessage("Cannot start the live view: " + err.message, false));

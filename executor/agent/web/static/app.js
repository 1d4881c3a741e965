// orch's web page: reads the agent's API (/v1/...), follows its events
// (/events, server-sent), and sends restart, signal, pause and resume
// with the token typed in the header.
"use strict";

const $ = (s) => document.querySelector(s);
let instances = [];
let sortKey = "address", sortDir = 1;
let selected = "";
let refreshTimer = null;

const tokenInput = $("#token");
tokenInput.value = sessionStorage.getItem("orch-token") || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem("orch-token", tokenInput.value));

function text(el, s) { el.textContent = s; return el; }
function td(s, cls) { const c = document.createElement("td"); if (cls) c.className = cls; return text(c, s); }

function duration(sec) {
  if (!sec) return "-";
  const d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60), s = Math.floor(sec % 60);
  if (d) return d + "d" + h + "h";
  if (h) return h + "h" + m + "m";
  if (m) return m + "m" + s + "s";
  return s + "s";
}

function bytes(n) {
  if (!n) return "-";
  const u = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + u[i];
}

async function api(path, opts) {
  const r = await fetch(path, opts);
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

async function refresh() {
  refreshTimer = null;
  try {
    const snap = await (await api("/v1/snapshot")).json();
    instances = snap.instances || [];
    text($("#dir"), snap.dir);
    render();
    const svg = await (await api("/graph.svg")).text();
    $("#graph").innerHTML = svg;
  } catch (e) {
    text($("#message"), "cannot read the agent: " + e.message);
  }
}

async function usage() {
  try {
    const u = await (await api("/v1/usage")).json();
    for (const i of instances) Object.assign(i, u[i.address] || {});
    render();
  } catch (e) {
    text($("#message"), "cannot read the agent: " + e.message);
  }
}

// soon refreshes once after a burst of events.
function soon() { if (!refreshTimer) refreshTimer = setTimeout(refresh, 250); }

function render() {
  const f = $("#filter").value.trim().toLowerCase();
  const rows = instances.filter((i) => !f || [i.address, i.state, i.kind, i.runtime || ""].some((v) => v.toLowerCase().includes(f)));
  rows.sort((a, b) => {
    const x = a[sortKey] ?? "", y = b[sortKey] ?? "";
    return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
  });
  const counts = {};
  for (const i of instances) counts[i.state] = (counts[i.state] || 0) + 1;
  text($("#summary"), Object.entries(counts).map(([k, v]) => v + " " + k).join(", "));
  const tb = $("#instances tbody");
  tb.replaceChildren();
  for (const i of rows) {
    const tr = document.createElement("tr");
    tr.dataset.address = i.address;
    if (i.address === selected) tr.className = "selected";
    tr.append(td(i.address), td(i.kind), td(i.runtime || "-"), td(i.state, "state-" + i.state), td(i.health || "-"),
      td(String(i.restarts)), td(i.id ? i.id.slice(0, 12) : (i.pid ? String(i.pid) : "-")), td(duration(i.uptime_seconds)),
      td(i.cpu_percent !== undefined ? i.cpu_percent.toFixed(1) + "%" : "-"), td(bytes(i.rss_bytes)));
    const actions = document.createElement("td");
    for (const [label, path, body] of [["restart", "restart"], ["stop", "stop"], ["start", "start"], ["pause", "pause"], ["resume", "resume"]]) {
      const b = document.createElement("button");
      text(b, label);
      b.addEventListener("click", (ev) => { ev.stopPropagation(); act(path, i.address, body); });
      actions.append(b);
    }
    tr.append(actions);
    tr.addEventListener("click", () => showLog(i.address));
    tb.append(tr);
  }
}

async function act(what, addr, body) {
  text($("#message"), "");
  try {
    await api("/v1/" + what + "/" + encodeURIComponent(addr), {
      method: "POST",
      headers: { "Authorization": "Bearer " + tokenInput.value, "Content-Type": "application/json" },
      body: body ? JSON.stringify(body) : "{}",
    });
    soon();
  } catch (e) {
    text($("#message"), what + " " + addr + ": " + e.message);
  }
}

async function showLog(addr) {
  selected = addr;
  render();
  text($("#log-name"), addr);
  try {
    text($("#log"), await (await api("/v1/logs/" + encodeURIComponent(addr) + "?n=200")).text() || "(empty)");
    const l = $("#log");
    l.scrollTop = l.scrollHeight;
  } catch (e) {
    text($("#log"), e.message);
  }
}

async function plan() {
  try {
    const p = await (await api("/v1/plan/last")).json();
    text($("#plan"), p.text || "No plan with changes applied yet.");
    text($("#plan-at"), p.at ? "(" + new Date(p.at).toLocaleTimeString() + ")" : "");
  } catch (e) {
    text($("#plan"), e.message);
  }
}

function eventLine(e) {
  let s = new Date(e.time).toLocaleTimeString() + " ";
  if (e.address) s += e.address + " ";
  s += e.type;
  if (e.topic) s += " " + e.topic;
  if (e.pid) s += " pid=" + e.pid;
  if (e.signal) s += " signal=" + e.signal;
  else if (e.exit_code !== undefined && e.exit_code !== null) s += " code=" + e.exit_code;
  if (e.detail) s += ": " + e.detail;
  return s;
}

const bad = new Set(["exited", "failed", "unhealthy", "error", "blocked", "config_invalid", "unreachable"]);

// follow shows the engine's events as they come, and those kept since
// the page's ?since= (default 10m); with ?until=, up to then only.
function follow() {
  const q = new URLSearchParams(location.search);
  const p = new URLSearchParams({ since: q.get("since") || "10m" });
  if (q.get("until")) p.set("until", q.get("until"));
  const es = new EventSource("/events?" + p);
  es.addEventListener("end", () => es.close());
  es.onmessage = (m) => {
    const e = JSON.parse(m.data);
    const li = document.createElement("li");
    li.dataset.type = e.type;
    if (e.address) li.dataset.address = e.address;
    if (bad.has(e.type)) li.className = "bad";
    text(li, eventLine(e));
    const list = $("#events");
    list.prepend(li);
    while (list.children.length > 500) list.lastChild.remove();
    soon();
    if (e.type === "plan" || e.type === "plan_applied") plan();
    if (e.address && e.address === selected) showLog(selected);
  };
}

for (const th of document.querySelectorAll("th[data-sort]")) {
  th.addEventListener("click", () => {
    const k = th.dataset.sort;
    sortDir = k === sortKey ? -sortDir : 1;
    sortKey = k;
    render();
  });
}
$("#filter").addEventListener("input", render);

refresh();
plan();
follow();
// CPU and memory change without events: read every 10 s.
setInterval(usage, 10000);

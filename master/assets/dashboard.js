// Keel dashboard: polls /api/status every second and replays the last
// rebalance from /api/history. Plain JavaScript, no dependencies; every value
// from the master is set as text, never as HTML.
"use strict";

const POLL_MS = 1000;
const PLAY_MS = 700;

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  let v = Number(n) || 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
}

function fmtDur(secs) {
  if (secs === null || secs === undefined || !isFinite(secs)) return "—";
  const s = Math.max(0, Math.round(secs));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  const h = Math.floor(s / 3600);
  return h + " h " + Math.floor((s % 3600) / 60) + " min";
}

// Reads per second, compact: 0.4, 12.3, 1.2k.
function fmtReads(v) {
  const n = Number(v) || 0;
  return n < 999.95 ? n.toFixed(1) : (n / 1000).toFixed(1) + "k";
}

// A service time in milliseconds; none without samples (0).
function fmtMs(v) {
  const n = Number(v) || 0;
  if (n <= 0) return "—";
  return n < 9.95 ? n.toFixed(1) + " ms" : n < 999.5 ? n.toFixed(0) + " ms" : (n / 1000).toFixed(1) + " s";
}

function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }
function pct(v) { return (Number(v) || 0).toFixed(1) + " %"; }
function clamp(v) { return Math.max(0, Math.min(100, v)); }

// One utilization bar: the band, the average, the free-space floor (the
// hatched end: a move may not fill a server past it) and the fill.
function bar(util, band, low, high, avg, minFree, ghost) {
  const b = el("div", "bar");
  const bd = el("div", "band");
  bd.style.left = clamp(low) + "%";
  bd.style.width = clamp(high - low) + "%";
  b.append(bd);
  const fl = el("div", "floor");
  fl.style.width = clamp(minFree) + "%";
  b.append(fl);
  if (ghost !== undefined) {
    const g = el("div", "ghost");
    g.style.left = clamp(ghost) + "%";
    b.append(g);
  }
  const f = el("div", "fill " + band);
  f.style.width = clamp(util) + "%";
  b.append(f);
  const a = el("div", "avg");
  a.style.left = clamp(avg) + "%";
  b.append(a);
  b.title = "utilization " + pct(util) + "; band " + pct(low) + "–" + pct(high) + "; average " + pct(avg);
  return b;
}

function stat(k, v, cls) {
  const s = el("div", "stat" + (cls ? " " + cls : ""));
  s.append(el("div", "v", v), el("div", "k", k));
  s.dataset.stat = k;
  return s;
}

function chip(text, cls) { return el("span", "chip" + (cls ? " " + cls : ""), text); }

// ---- live view -------------------------------------------------------------

let last = null;

function renderChips(s) {
  const c = [];
  c.push(chip(s.leader ? "leader" : "standby", s.leader ? "" : "warn"));
  if (s.servers.length) {
    c.push(chip("average " + pct(s.average_utilization_pct)));
    c.push(chip("band ±" + s.policy.threshold_pct + " pts"));
    const cap = s.policy.max_concurrent_moves;
    c.push(chip("moves " + (s.policy.max_concurrent_moves_auto ? "auto (" + cap + ")" : cap) +
      " · " + s.policy.max_moves_per_server + " per server"));
    c.push(s.balanced ? chip("balanced", "good") : chip("outside the band", "warn"));
  }
  if (s.servers.length) c.push(...loadSummary(s));
  if (s.queue.paused) c.push(chip("paused", "warn"));
  if (s.safe_mode) c.push(chip("safe mode", "warn"));
  if (s.stuck.stuck) c.push(chip("stuck", "bad"));
  $("chips").replaceChildren(...c);
  $("logout").hidden = !s.auth;
}

// Servers whose read load the master reports (an older master sends no
// `reads_per_sec`, and then the page says nothing about load).
function withLoad(s) {
  return s.servers.filter((x) => x.reads_per_sec !== undefined && x.state !== "dead");
}

// The load chips: the load band the master balances reads within (from its
// policy), and, when the servers' read load is reported, the mean reads/s of
// live servers and how many are outside the band.
function loadSummary(s) {
  const c = [];
  const band = s.policy.load_threshold_pct;
  if (band !== undefined) c.push(chip(band > 0 ? "load band ±" + band + " %" : "load balancing off"));
  const live = withLoad(s);
  if (!live.length) return c;
  const mean = live.reduce((a, x) => a + (Number(x.reads_per_sec) || 0), 0) / live.length;
  c.push(chip("reads " + fmtReads(mean) + "/s mean"));
  if (!(band > 0)) return c;
  const hot = live.filter((x) => x.load === "hot").length;
  const cold = live.filter((x) => x.load === "cold").length;
  c.push(hot || cold ? chip(hot + " hot · " + cold + " cold", "warn") : chip("load even", "good"));
  return c;
}

function renderServers(s) {
  const box = $("servers");
  const alive = s.servers.filter((x) => x.state === "alive").length;
  $("servers-sub").textContent = s.servers.length
    ? alive + " of " + s.servers.length + " alive · floor " + s.policy.min_free_pct + " % free"
    : "";
  $("legend").hidden = !s.servers.length;
  if (!s.servers.length) {
    const e = el("div", "empty");
    e.id = "no-servers";
    e.append(el("strong", null, "No chunk servers yet"));
    e.append(document.createTextNode(
      "Start one with --master pointing at this master; it appears here at its first heartbeat."));
    box.replaceChildren(e);
    return;
  }
  const peak = Math.max(0, ...withLoad(s).map((x) => Number(x.reads_per_sec) || 0));
  box.replaceChildren(...s.servers.map((x) => serverRow(x, s, peak)));
}

// One server's read load: reads/s with a bar against the busiest server,
// bytes/s and p99 service time. Nothing when the master does not report it.
function loadRow(x, peak) {
  if (x.reads_per_sec === undefined) return null;
  const reads = Number(x.reads_per_sec) || 0;
  const d = el("div", "load");
  const meter = el("div", "rbar");
  const f = el("div", "rfill " + (x.load === "hot" || x.load === "cold" ? x.load : "inside"));
  f.style.width = (peak > 0 ? clamp(100 * reads / peak) : 0) + "%";
  meter.append(f);
  meter.title = "client reads/s against the busiest server's";
  d.append(el("span", "reads", fmtReads(reads) + " reads/s"), meter,
    el("span", null, fmtBytes(x.read_bytes_per_sec) + "/s · p99 " + fmtMs(x.read_p99_ms)));
  return d;
}

function serverRow(x, s, peak) {
  const row = el("div", "server " + x.state);
  row.dataset.id = x.id;
  row.dataset.state = x.state;
  if (x.load !== undefined) row.dataset.load = x.load;
  const name = el("div", "name");
  name.append(el("span", null, x.id));
  if (x.rack) name.append(el("span", "tag", "rack " + x.rack));
  name.append(el("span", "tag state-" + x.state, x.state));
  if (x.load === "hot" || x.load === "cold") {
    const badge = el("span", "tag load-" + x.load, x.load);
    badge.title = "reads/s " + (x.load === "hot" ? "above" : "below") + " the load band";
    name.append(badge);
  }
  row.append(name, el("div", "pct", pct(x.utilization_pct)));
  row.append(bar(x.utilization_pct, x.band, s.band_low_pct, s.band_high_pct,
    s.average_utilization_pct, s.policy.min_free_pct));
  const meta = el("div", "meta");
  const free = el("span", x.free_bytes <= x.floor_bytes ? "at-floor" : null,
    "free " + fmtBytes(x.free_bytes));
  meta.append(free, document.createTextNode(
    " · floor " + fmtBytes(x.floor_bytes) + " · " + fmtBytes(x.used_bytes) + " of " +
    fmtBytes(x.capacity_bytes) + " · " + plural(x.chunks, "chunk") +
    (x.band === "over" ? " · above the band" : x.band === "under" ? " · below the band" : "")));
  row.append(meta);
  const load = loadRow(x, peak);
  if (load) row.append(load);
  return row;
}

function renderProgress(s) {
  const q = s.queue, r = s.rates;
  $("progress").replaceChildren(
    stat("bytes/s", fmtBytes(r.bytes_per_sec) + "/s"),
    stat("moves/s", r.moves_per_sec.toFixed(2)),
    stat("remaining", fmtBytes(q.bytes_remaining)),
    stat("ETA", q.bytes_remaining > 0 ? fmtDur(r.eta_secs) : "—"),
    stat("moved (total)", fmtBytes(q.bytes_moved)),
    stat("oldest pending", q.pending ? fmtDur(q.oldest_pending_age_ms / 1000) : "—",
      s.stuck.stuck ? "bad" : ""));
  const d = s.redundancy;
  $("redundancy").replaceChildren(
    stat("unavailable chunks", d.unavailable, d.unavailable ? "bad" : ""),
    stat("under-replicated", d.under_replicated, d.under_replicated ? "warn" : ""),
    stat("repairs running", d.repairs_running),
    stat("repairs waiting", d.repairs_waiting, d.repairs_waiting ? "warn" : ""),
    stat("drains", d.drains_running + " / " + d.drains_waiting),
    stat("repairs done", d.repairs_done));
}

function renderStuck(s) {
  $("stuck").hidden = !s.stuck.stuck;
  $("stuck-cause").textContent = s.stuck.cause;
  $("stuck-detail").textContent = s.stuck.detail;
}

function renderQueue(s) {
  const q = s.queue;
  const counts = [["pending", q.pending], ["running", q.running], ["done", q.done], ["failed", q.failed]];
  $("queue-counts").replaceChildren(...counts.map(([k, v]) => {
    const c = el("span", "count " + k);
    c.dataset.count = k;
    c.append(el("b", null, v), document.createTextNode(k));
    return c;
  }));
  $("queue-sub").textContent = q.paused ? "paused" : "";
  $("reasons").replaceChildren(...Object.entries(q.reasons).map(([why, n]) =>
    el("span", "reason", why + " × " + n)));
  const box = $("moves");
  if (!q.moves.length && !q.recent_failures.length) {
    box.replaceChildren(el("div", "empty", "Nothing to move: the queue is empty."));
    return;
  }
  const rows = q.moves.concat(q.recent_failures).map((m) => {
    const r = el("div", "move");
    r.dataset.chunk = m.chunk;
    r.dataset.state = m.state;
    r.append(el("span", "st st-" + m.state, m.state), el("span", "chunk", m.chunk),
      el("span", "route", m.from + " → " + m.to), el("span", "size", fmtBytes(m.bytes)));
    let why = m.state === "running" ? m.kind + (m.retries ? ", attempt " + (m.retries + 1) : "")
      : m.state === "failed" ? m.last_error + " (after " + (m.retries + 1) + " attempts, " + fmtDur(m.age_ms / 1000) + " ago)"
      : (m.waiting || "waiting for its turn");
    const err = m.last_error && m.state !== "running";
    if (err && m.state === "pending" && !m.waiting.startsWith("retrying")) why += " · last error: " + m.last_error;
    r.append(el("span", "why" + (err ? " err" : ""), why));
    return r;
  });
  const shown = q.moves.length, total = q.pending + q.running;
  if (total > shown) rows.splice(shown, 0, el("div", "more", (total - shown) + " more not listed"));
  box.replaceChildren(...rows);
}

function render(s) {
  last = s;
  renderChips(s);
  renderStuck(s);
  renderServers(s);
  renderProgress(s);
  renderQueue(s);
  maybeReloadHistory(s.history);
  document.body.dataset.ready = "1";
}

async function poll() {
  try {
    const r = await fetch("/api/status", { cache: "no-store", credentials: "same-origin" });
    if (r.status === 401) { location.reload(); return; }
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    $("conn").hidden = true;
  } catch (e) {
    $("conn").hidden = false;
  }
  setTimeout(poll, POLL_MS);
}

// ---- replay ----------------------------------------------------------------

// While a rebalance runs, its history is fetched again as it grows: at every
// poll while short, at most every 5 s once it holds thousands of moves. A
// new or finished rebalance is fetched at once.
function historyRefreshMs(moves) { return Math.min(5000, moves * 2); }

const replay = { h: null, pos: 0, timer: null, loading: false, loadedAt: 0 };

function maybeReloadHistory(sum) {
  const h = replay.h;
  if (replay.loading || replay.timer) return;
  const changed = !h || h.id !== sum.id || h.finished !== sum.finished;
  const grown = h && h.moves.length !== sum.moves &&
    Date.now() - replay.loadedAt >= historyRefreshMs(h.moves.length);
  if (changed || grown) loadHistory();
}

async function loadHistory() {
  replay.loading = true;
  try {
    const r = await fetch("/api/history", { cache: "no-store", credentials: "same-origin" });
    if (!r.ok) return;
    const h = await r.json();
    replay.loadedAt = Date.now();
    const old = replay.h;
    const atEnd = !old || old.id !== h.id || replay.pos >= old.moves.length;
    replay.h = h;
    replay.pos = atEnd ? h.moves.length : Math.min(replay.pos, h.moves.length);
    renderReplay();
  } finally {
    replay.loading = false;
  }
}

// The servers after the first `pos` moves: the start plus each done move.
function usedAt(h, pos) {
  const used = new Map(h.start.map((s) => [s.id, s.used_bytes]));
  for (const m of h.moves.slice(0, pos)) {
    if (m.outcome !== "done") continue;
    if (used.has(m.to)) used.set(m.to, used.get(m.to) + m.bytes);
    if (m.source_deleted && used.has(m.from)) used.set(m.from, Math.max(0, used.get(m.from) - m.bytes));
  }
  return used;
}

function describe(m, i) {
  const d = el("div");
  d.append(el("strong", null, "Move " + (i + 1) + ": "), el("code", null, m.chunk),
    document.createTextNode(" " + m.from + " → " + m.to + ", " + fmtBytes(m.bytes) + ", " + m.kind +
      ", " + m.outcome + " in " + fmtDur((m.ended_ms - m.started_ms) / 1000) +
      " at " + new Date(m.ended_ms).toLocaleTimeString()));
  if (m.error) d.append(el("div", "at-floor", m.error));
  return d;
}

function renderReplay() {
  const h = replay.h;
  const has = h && h.id > 0 && h.moves.length > 0;
  $("replay-empty").hidden = has;
  $("replay-body").hidden = !has;
  if (!has) {
    $("replay-sub").textContent = h && h.id > 0 ? "rebalance #" + h.id : "";
    $("replay-empty").textContent = h && h.id > 0
      ? "Rebalance #" + h.id + " has started; its moves appear here as they land."
      : "No rebalance has run since this master started.";
    return;
  }
  const n = h.moves.length, pos = replay.pos;
  $("replay-sub").textContent = "rebalance #" + h.id + " · " + plural(n, "move") +
    (h.folded ? " (+" + h.folded + " older folded in)" : "") + (h.finished ? " · finished" : " · in progress");
  const range = $("replay-range");
  range.max = n;
  range.value = pos;
  $("replay-pos").textContent = pos + " / " + n;
  $("replay-first").disabled = $("replay-back").disabled = pos === 0;
  $("replay-step").disabled = $("replay-last").disabled = pos >= n;
  $("replay-play").textContent = replay.timer ? "❚❚ Pause" : "▶ Play";
  const cur = pos > 0 ? h.moves[pos - 1] : null;
  $("replay-move").replaceChildren(cur ? describe(cur, pos - 1)
    : el("div", null, "Start of rebalance #" + h.id + ": press Play, or step one move at a time."));
  renderReplayServers(h, pos, cur);
  renderLog(h, pos);
}

function renderReplayServers(h, pos, cur) {
  const used = usedAt(h, pos);
  const cap = h.start.reduce((a, s) => a + s.capacity_bytes, 0);
  const total = [...used.values()].reduce((a, b) => a + b, 0);
  const avg = cap ? 100 * total / cap : 0;
  const t = last ? last.policy.threshold_pct : 10;
  const minFree = last ? last.policy.min_free_pct : 0;
  const rows = h.start.map((s) => {
    const u = used.get(s.id);
    const util = s.capacity_bytes ? 100 * u / s.capacity_bytes : 0;
    const band = util > avg + t ? "over" : util < avg - t ? "under" : "within";
    const row = el("div", "server");
    row.dataset.id = s.id;
    row.dataset.used = u;
    const name = el("div", "name");
    name.append(el("span", null, s.id));
    if (cur && cur.outcome === "done" && cur.to === s.id) name.append(el("span", "delta-in", "+" + fmtBytes(cur.bytes)));
    if (cur && cur.outcome === "done" && cur.source_deleted && cur.from === s.id) name.append(el("span", "delta-out", "−" + fmtBytes(cur.bytes)));
    row.append(name, el("div", "pct", pct(util)));
    const startUtil = s.capacity_bytes ? 100 * s.used_bytes / s.capacity_bytes : 0;
    row.append(bar(util, band, avg - t, avg + t, avg, minFree, startUtil));
    return row;
  });
  $("replay-servers").replaceChildren(...rows);
}

function renderLog(h, pos) {
  const items = h.moves.map((m, i) => {
    const li = el("li", i === pos - 1 ? "current" : i >= pos ? "ahead" : "");
    li.append(el("span", "n", i + 1), el("span", "st st-" + m.outcome, m.outcome),
      el("span", "chunk", m.chunk + "  " + m.from + " → " + m.to), el("span", "size", fmtBytes(m.bytes)));
    li.addEventListener("click", () => { stop(); replay.pos = i + 1; renderReplay(); });
    return li;
  });
  const log = $("replay-log");
  log.replaceChildren(...items);
  const cur = log.querySelector(".current");
  if (cur) log.scrollTop = cur.offsetTop - log.offsetTop - log.clientHeight / 2;
}

function stop() {
  if (replay.timer) clearInterval(replay.timer);
  replay.timer = null;
}

function go(pos) {
  if (!replay.h) return;
  replay.pos = Math.max(0, Math.min(replay.h.moves.length, pos));
  renderReplay();
}

function togglePlay() {
  if (!replay.h) return;
  if (replay.timer) { stop(); renderReplay(); return; }
  if (replay.pos >= replay.h.moves.length) replay.pos = 0;
  replay.timer = setInterval(() => {
    if (replay.pos >= replay.h.moves.length) { stop(); renderReplay(); return; }
    replay.pos++;
    renderReplay();
  }, PLAY_MS);
  renderReplay();
}

$("replay-first").addEventListener("click", () => { stop(); go(0); });
$("replay-back").addEventListener("click", () => { stop(); go(replay.pos - 1); });
$("replay-step").addEventListener("click", () => { stop(); go(replay.pos + 1); });
$("replay-last").addEventListener("click", () => { stop(); go(Infinity); });
$("replay-play").addEventListener("click", togglePlay);
$("replay-range").addEventListener("input", (e) => { stop(); go(Number(e.target.value)); });

poll();

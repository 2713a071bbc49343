// commodex dashboard: history from /api/bars, live updates from the SSE stream /api/stream.
// Self-contained (no external scripts). Prices arrive as exact decimal strings; they are parsed to numbers
// only for drawing. Timestamps in ns exceed JS integer precision; they are used only for ordering/drawing.
"use strict";

const MAX_SIGNALS = 200;
const HISTORY_LIMIT = 400;
const NS_PER = { "1s": 1e9, "1m": 60e9 };
const MIN_SLOTS = 60;          // candle slots on the chart even with few bars (keeps candles narrow, right-aligned)
const MAX_FORMING = 30;        // provisional candles kept while their bars have not arrived
const RECONNECT_MS = 3000;     // after the browser gives up on the stream (HTTP error), try again this often

const state = {
  instruments: [],
  instrument: null,
  interval: "1m",
  bars: [],            // closed bars of the selected instrument/interval, ascending by start
  forming: new Map(),  // window start -> candle built from live trades, for windows not closed yet
  last: new Map(),     // instrument -> {last, bid, ask, ts, dir}
  signals: [],
  hover: -1,
  loadSeq: 0,
};

const $ = (id) => document.getElementById(id);
const canvas = $("chart");
const ctx = canvas.getContext("2d");

// ---- data loading -----------------------------------------------------------------------------------------

async function getJSON(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

function toCandle(b) {
  return { start: b.start_ns, o: +b.open, h: +b.high, l: +b.low, c: +b.close, v: b.volume, rev: b.revision,
           iso: b.start_iso, raw: b };
}

async function loadInstruments() {
  const doc = await getJSON("/api/instruments");
  state.instruments = doc.instruments;
  const sel = $("instrument");
  sel.innerHTML = "";
  for (const i of state.instruments) {
    const o = document.createElement("option");
    o.value = i.id;
    o.textContent = `${i.id} · ${i.name} (${i.currency}/${i.quote_unit})`;
    sel.appendChild(o);
  }
  const wanted = new URLSearchParams(location.search).get("instrument");
  state.instrument = state.instruments.some((i) => i.id === wanted) ? wanted : (state.instruments[0] || {}).id;
  sel.value = state.instrument;
  const iv = new URLSearchParams(location.search).get("interval");
  if (iv in NS_PER) setIntervalButtons(iv);
  renderPrices();
}

// History and live bars meet here: bars that arrived on the stream while the request was in flight (or
// before a reload after a gap) are kept, and the higher revision of a window wins.
function mergeBars(history, live) {
  const byStart = new Map(history.map((c) => [c.start, c]));
  for (const c of live) {
    const h = byStart.get(c.start);
    if (!h || c.rev > h.rev) byStart.set(c.start, c);
  }
  const all = [...byStart.values()].sort((a, b) => a.start - b.start);
  return all.length > HISTORY_LIMIT * 2 ? all.slice(-HISTORY_LIMIT) : all;
}

function dropClosedForming() {
  const last = state.bars.length ? state.bars[state.bars.length - 1].start : -Infinity;
  for (const start of state.forming.keys()) if (start <= last) state.forming.delete(start);
}

async function loadBars() {
  const seq = ++state.loadSeq;
  const url = `/api/bars?instrument=${encodeURIComponent(state.instrument)}&interval=${state.interval}` +
              `&limit=${HISTORY_LIMIT}`;
  try {
    const doc = await getJSON(url);
    if (seq !== state.loadSeq) return;  // a newer selection won
    state.bars = mergeBars(doc.bars.map(toCandle), state.bars);
    dropClosedForming();
    $("chart-note").textContent = state.bars.length ? "" : "No bars stored yet; live bars appear as windows close.";
  } catch (e) {
    $("chart-note").textContent = String(e);
  }
  draw();
}

async function loadSignals() {
  try {
    const doc = await getJSON("/api/signals?limit=100");
    const seen = new Set(state.signals.map(signalKey));
    for (const s of doc.signals) if (!seen.has(signalKey(s))) state.signals.push(s);
    state.signals.sort(newestFirst);
    if (state.signals.length > MAX_SIGNALS) state.signals.length = MAX_SIGNALS;
    scheduleSignals();
  } catch (e) {
    $("signal-count").textContent = String(e);
  }
}

// ---- live stream ------------------------------------------------------------------------------------------

let connectedOnce = false;

// Opened BEFORE history is requested, so nothing published between the history read and the subscription
// is lost; the loaders merge history with what the stream already delivered.
function connect() {
  const es = new EventSource("/api/stream");
  es.onopen = () => {
    setConn(true);
    if (connectedOnce) { loadBars(); loadSignals(); }  // catch up on what we missed while away
    connectedOnce = true;
  };
  es.onerror = () => {
    setConn(false);
    // CLOSED: the browser will not retry by itself (e.g. the server answered with an HTTP error)
    if (es.readyState === EventSource.CLOSED) setTimeout(connect, RECONNECT_MS);
  };
  es.addEventListener("bar", (e) => onBar(JSON.parse(e.data)));
  es.addEventListener("tick", (e) => onTick(JSON.parse(e.data)));
  es.addEventListener("signal", (e) => onSignal(JSON.parse(e.data)));
  es.addEventListener("status", (e) => onStatus(JSON.parse(e.data)));
  es.addEventListener("gap", () => { loadBars(); loadSignals(); });  // the server dropped frames for us
}

function setConn(up) {
  const el = $("conn");
  el.textContent = up ? "live" : "reconnecting";
  el.className = "conn " + (up ? "up" : "down");
}

function onBar(b) {
  if (b.instrument !== state.instrument || b.interval !== state.interval) return;
  const c = toCandle(b);
  const bars = state.bars;
  let i = bars.length - 1;
  while (i >= 0 && bars[i].start > c.start) i--;
  if (i >= 0 && bars[i].start === c.start) {
    if (c.rev >= bars[i].rev) bars[i] = c;  // corrected re-emission (late ticks) replaces the bar
  } else {
    bars.splice(i + 1, 0, c);
    if (bars.length > HISTORY_LIMIT * 2) bars.splice(0, bars.length - HISTORY_LIMIT);
  }
  dropClosedForming();
  $("chart-note").textContent = "";
  scheduleDraw();
}

function onTick(t) {
  const row = state.last.get(t.instrument) || { last: null, bid: null, ask: null, ts: "", dir: "" };
  if (t.kind === "trade") {
    if (row.last !== null) row.dir = +t.price > +row.last ? "up" : +t.price < +row.last ? "down" : row.dir;
    row.last = t.price;
    if (t.instrument === state.instrument) updateForming(t);
  } else {
    row.bid = t.bid;
    row.ask = t.ask;
  }
  row.ts = t.ts_event_iso;
  state.last.set(t.instrument, row);
  schedulePrices();
}

function updateForming(t) {
  const step = NS_PER[state.interval];
  const start = Math.floor(t.ts_event_ns / step) * step;
  const lastClosed = state.bars.length ? state.bars[state.bars.length - 1].start : -Infinity;
  if (start <= lastClosed) return;  // belongs to a window already closed
  const p = +t.price;
  const f = state.forming.get(start);
  if (!f) {
    // bars close a little after their window ends (watermark), so several windows can be forming at once
    state.forming.set(start, { start, o: p, h: p, l: p, c: p, v: t.size, rev: 0, forming: true });
    if (state.forming.size > MAX_FORMING) state.forming.delete(Math.min(...state.forming.keys()));
  } else {
    f.h = Math.max(f.h, p); f.l = Math.min(f.l, p); f.c = p; f.v += t.size;
  }
  scheduleDraw();
}

function signalKey(s) { return `${s.kind}|${s.instrument}|${s.ts_event_ns}|${s.ts_recv_ns}|${s.summary}`; }
function newestFirst(a, b) { return b.ts_event_ns - a.ts_event_ns; }

function onSignal(s) {
  // newest event time first, like the history; a signal timed at a sampling boundary may arrive after later ones
  let i = 0;
  while (i < state.signals.length && state.signals[i].ts_event_ns > s.ts_event_ns) i++;
  state.signals.splice(i, 0, s);
  if (state.signals.length > MAX_SIGNALS) state.signals.length = MAX_SIGNALS;
  scheduleSignals();
}

function onStatus(s) {
  const e = s.engine || {}, live = s.live || {}, store = s.store || {};
  const n = (v) => (typeof v === "number" ? v.toLocaleString("en-US") : "?");
  const parts = [`ticks ${n(e.ticks_accepted)}/${n(e.ticks_in)}`, `bars ${n(e.bars ?? store.bars)}`,
                 `signals ${n(e.signals ?? store.signals)}`, `dead letters ${n(e.dead_letters ?? store.dead_letters)}`];
  if (e.latency_p50_ms != null) parts.push(`latency p50 ${e.latency_p50_ms.toFixed(1)} ms`);
  if (e.latency_p99_ms != null) parts.push(`p99 ${e.latency_p99_ms.toFixed(1)} ms`);
  parts.push(`stored bars ${n(store.bars)}`, `clients ${n(live.clients)}`);
  const el = $("health");
  el.textContent = parts.join(" · ");
  el.title = JSON.stringify(s, null, 1);  // everything, on hover
}

// ---- tables -----------------------------------------------------------------------------------------------

let pricesPending = false;
function schedulePrices() {
  if (!pricesPending) { pricesPending = true; requestAnimationFrame(() => { pricesPending = false; renderPrices(); }); }
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text ?? "–";
  if (cls) td.className = cls;
  return td;
}

function renderPrices() {
  const body = $("prices").tBodies[0];
  body.innerHTML = "";
  for (const i of state.instruments) {
    const r = state.last.get(i.id) || {};
    const tr = document.createElement("tr");
    if (i.id === state.instrument) tr.className = "selected";
    tr.append(cell(i.id), cell(i.venue), cell(r.last, "num " + (r.dir || "")), cell(r.bid, "num"),
              cell(r.ask, "num"), cell(r.ts ? r.ts.slice(11, 23) : ""));
    tr.onclick = () => select(i.id);
    body.appendChild(tr);
  }
}

let signalsPending = false;
function scheduleSignals() {
  if (!signalsPending) {
    signalsPending = true;
    requestAnimationFrame(() => { signalsPending = false; renderSignals(); });
  }
}

function renderSignals() {
  const ol = $("signals");
  ol.innerHTML = "";
  for (const s of state.signals) {
    const li = document.createElement("li");
    li.className = "kind-" + s.kind;
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = s.kind;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = `${s.ts_event_iso} · ${s.instrument}`;
    li.append(kind, document.createTextNode(s.summary), meta);
    ol.appendChild(li);
  }
  $("signal-count").textContent = state.signals.length ? `(${state.signals.length})` : "";
}

// ---- chart ------------------------------------------------------------------------------------------------

let drawPending = false;
function scheduleDraw() {
  if (!drawPending) { drawPending = true; requestAnimationFrame(() => { drawPending = false; draw(); }); }
}

function niceStep(range, target) {
  const raw = range / Math.max(target, 1);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * mag) return m * mag;
  return 10 * mag;
}

function fmtTime(ns) {
  const d = new Date(ns / 1e6);
  const iso = d.toISOString();
  return state.interval === "1s" ? iso.slice(11, 19) : iso.slice(11, 16);
}

function visibleCandles(plotW) {
  const forming = [...state.forming.values()].sort((a, b) => a.start - b.start);
  const all = forming.length ? state.bars.concat(forming) : state.bars;
  const n = Math.max(10, Math.floor(plotW / 9));
  return all.slice(-n);
}

function draw() {
  const dpr = window.devicePixelRatio || 1;
  const W = canvas.clientWidth, H = canvas.clientHeight;
  if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
    canvas.width = Math.round(W * dpr);
    canvas.height = Math.round(H * dpr);
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  const axisW = 80, axisH = 22, volH = Math.floor(H * 0.18);
  const plotW = W - axisW, priceH = H - axisH - volH - 8;
  const cs = visibleCandles(plotW);
  const css = getComputedStyle(document.documentElement);
  const up = css.getPropertyValue("--up").trim(), down = css.getPropertyValue("--down").trim();
  const line = css.getPropertyValue("--line").trim(), muted = css.getPropertyValue("--muted").trim();
  ctx.font = "11px ui-monospace, Menlo, Consolas, monospace";
  if (!cs.length) {
    ctx.fillStyle = muted;
    ctx.fillText(`${state.instrument || ""} ${state.interval}: waiting for bars`, 16, 24);
    return;
  }
  let lo = Infinity, hi = -Infinity, vmax = 0;
  for (const c of cs) { lo = Math.min(lo, c.l); hi = Math.max(hi, c.h); vmax = Math.max(vmax, c.v); }
  if (hi === lo) { hi += Math.abs(hi) * 0.001 || 1; lo -= Math.abs(lo) * 0.001 || 1; }
  const pad = (hi - lo) * 0.06;
  hi += pad; lo -= pad;
  const y = (p) => 6 + (hi - p) / (hi - lo) * priceH;
  const slot = plotW / Math.max(cs.length, Math.min(MIN_SLOTS, Math.floor(plotW / 9)));
  const body = Math.max(1, Math.min(12, slot * 0.7));
  const x0 = plotW - cs.length * slot;  // newest candle at the right edge
  const x = (i) => x0 + i * slot + slot / 2;

  // grid + price axis (negative prices draw like any other)
  const step = niceStep(hi - lo, Math.max(3, Math.floor(priceH / 50)));
  ctx.strokeStyle = line; ctx.fillStyle = muted; ctx.lineWidth = 1;
  const decimals = Math.max(0, Math.min(9, -Math.floor(Math.log10(step)) + 1));
  for (let p = Math.ceil(lo / step) * step; p <= hi; p += step) {
    const yy = Math.round(y(p)) + 0.5;
    ctx.beginPath(); ctx.moveTo(0, yy); ctx.lineTo(plotW, yy); ctx.stroke();
    ctx.fillText(p.toFixed(decimals), plotW + 6, yy + 4);
  }
  // time axis
  const every = Math.max(1, Math.ceil(90 / slot));
  for (let i = (cs.length - 1) % every; i < cs.length; i += every) ctx.fillText(fmtTime(cs[i].start), x(i) - 16, H - 6);

  // candles and volume
  const volTop = H - axisH - volH;
  cs.forEach((c, i) => {
    const col = c.c >= c.o ? up : down;
    ctx.strokeStyle = col; ctx.fillStyle = col;
    ctx.globalAlpha = c.forming ? 0.5 : 1;
    const xx = Math.round(x(i)) + 0.5;
    ctx.beginPath(); ctx.moveTo(xx, y(c.h)); ctx.lineTo(xx, y(c.l)); ctx.stroke();
    const top = y(Math.max(c.o, c.c)), h = Math.max(1, Math.abs(y(c.o) - y(c.c)));
    ctx.fillRect(xx - body / 2, top, body, h);
    if (vmax > 0) {
      const vh = c.v / vmax * (volH - 4);
      ctx.globalAlpha = c.forming ? 0.2 : 0.35;
      ctx.fillRect(xx - body / 2, volTop + volH - vh, body, vh);
    }
    ctx.globalAlpha = 1;
  });
  // last price line
  const lastC = cs[cs.length - 1];
  ctx.strokeStyle = muted; ctx.setLineDash([3, 3]);
  ctx.beginPath(); ctx.moveTo(0, y(lastC.c)); ctx.lineTo(plotW, y(lastC.c)); ctx.stroke();
  ctx.setLineDash([]);

  const h = state.hover >= 0 && state.hover < cs.length ? cs[state.hover] : lastC;
  const txt = (key, v) => (h.raw ? h.raw[key] : String(v));  // stored bars: the exact decimal strings
  $("legend").textContent = `${fmtTime(h.start)}  O ${txt("open", h.o)}  H ${txt("high", h.h)}  ` +
    `L ${txt("low", h.l)}  C ${txt("close", h.c)}  V ${h.v}` + (h.forming ? "  (forming)" : "") +
    (h.rev ? `  rev ${h.rev}` : "");
  canvas._slot = slot;
  canvas._x0 = x0;
  canvas._n = cs.length;
}

canvas.addEventListener("mousemove", (e) => {
  const r = canvas.getBoundingClientRect();
  const i = Math.floor((e.clientX - r.left - (canvas._x0 || 0)) / (canvas._slot || 1));
  state.hover = i >= 0 && i < (canvas._n || 0) ? i : -1;
  scheduleDraw();
});
canvas.addEventListener("mouseleave", () => { state.hover = -1; scheduleDraw(); });
window.addEventListener("resize", scheduleDraw);

// ---- controls ---------------------------------------------------------------------------------------------

function rememberSelection() {
  // in the address bar, so a reload or a shared link shows the same chart
  const q = new URLSearchParams(location.search);
  q.set("instrument", state.instrument);
  q.set("interval", state.interval);
  history.replaceState(null, "", `${location.pathname}?${q}`);
}

function resetChart() {
  state.bars = []; state.forming = new Map(); state.hover = -1;
  $("legend").textContent = "";
  rememberSelection();
  draw();
  loadBars();
}

function select(id) {
  if (id === state.instrument) return;
  state.instrument = id;
  $("instrument").value = id;
  renderPrices();
  resetChart();
}

function setIntervalButtons(iv) {
  state.interval = iv;
  for (const o of document.querySelectorAll("[data-interval]")) o.classList.toggle("active", o.dataset.interval === iv);
}

$("instrument").addEventListener("change", (e) => select(e.target.value));
for (const b of document.querySelectorAll("[data-interval]")) {
  b.addEventListener("click", () => {
    if (b.dataset.interval === state.interval) return;
    setIntervalButtons(b.dataset.interval);
    resetChart();
  });
}

(async () => {
  await loadInstruments();
  connect();
  await Promise.all([loadBars(), loadSignals()]);
})();

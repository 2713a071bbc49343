// commodex dashboard: history from /api/bars, live updates from the SSE stream /api/stream.
// Self-contained (no external scripts). Prices arrive as exact decimal strings; they are parsed to numbers
// only for drawing. Timestamps in ns exceed JS integer precision; they are used only for ordering/drawing.
"use strict";

const MAX_SIGNALS = 200;
const HISTORY_LIMIT = 400;
const NS_PER = { "1s": 1e9, "1m": 60e9 };

const state = {
  instruments: [],
  instrument: null,
  interval: "1m",
  bars: [],            // closed bars of the selected instrument/interval, ascending by start
  forming: null,       // candle being built from live trades since the last closed bar
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
  renderPrices();
}

async function loadBars() {
  const seq = ++state.loadSeq;
  const url = `/api/bars?instrument=${encodeURIComponent(state.instrument)}&interval=${state.interval}` +
              `&limit=${HISTORY_LIMIT}`;
  try {
    const doc = await getJSON(url);
    if (seq !== state.loadSeq) return;  // a newer selection won
    state.bars = doc.bars.map(toCandle);
    state.forming = null;
    $("chart-note").textContent = state.bars.length ? "" : "No bars stored yet; live bars appear as windows close.";
  } catch (e) {
    $("chart-note").textContent = String(e);
  }
  draw();
}

async function loadSignals() {
  try {
    const doc = await getJSON("/api/signals?limit=100");
    state.signals = doc.signals;
    renderSignals();
  } catch (e) {
    $("signal-count").textContent = String(e);
  }
}

// ---- live stream ------------------------------------------------------------------------------------------

let connectedOnce = false;

function connect() {
  const es = new EventSource("/api/stream");
  es.onopen = () => {
    setConn(true);
    if (connectedOnce) { loadBars(); loadSignals(); }  // catch up on what we missed while away
    connectedOnce = true;
  };
  es.onerror = () => setConn(false);
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
  if (state.forming && state.forming.start <= c.start) state.forming = null;
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
  const f = state.forming;
  if (!f || f.start !== start) {
    state.forming = { start, o: p, h: p, l: p, c: p, v: t.size, rev: 0, forming: true };
  } else {
    f.h = Math.max(f.h, p); f.l = Math.min(f.l, p); f.c = p; f.v += t.size;
  }
  scheduleDraw();
}

function onSignal(s) {
  state.signals.unshift(s);
  if (state.signals.length > MAX_SIGNALS) state.signals.length = MAX_SIGNALS;
  renderSignals();
}

function onStatus(s) {
  const live = s.live || {}, store = s.store || {};
  const parts = [`clients ${live.clients ?? "?"}`, `bars ${store.bars ?? "?"}`, `signals ${store.signals ?? "?"}`,
                 `dead letters ${store.dead_letters ?? "?"}`];
  for (const [k, v] of Object.entries(s.engine || {})) {
    if (typeof v !== "object") parts.push(`${k} ${v}`);
  }
  $("health").textContent = parts.join(" · ");
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
  const all = state.forming ? state.bars.concat([state.forming]) : state.bars;
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
  const slot = plotW / cs.length, body = Math.max(1, Math.min(12, slot * 0.7));
  const x = (i) => i * slot + slot / 2;

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
  for (let i = 0; i < cs.length; i += every) ctx.fillText(fmtTime(cs[i].start), x(i) - 16, H - 6);

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
  canvas._n = cs.length;
}

canvas.addEventListener("mousemove", (e) => {
  const r = canvas.getBoundingClientRect();
  const i = Math.floor((e.clientX - r.left) / (canvas._slot || 1));
  state.hover = i >= 0 && i < (canvas._n || 0) ? i : -1;
  scheduleDraw();
});
canvas.addEventListener("mouseleave", () => { state.hover = -1; scheduleDraw(); });
window.addEventListener("resize", scheduleDraw);

// ---- controls ---------------------------------------------------------------------------------------------

function select(id) {
  state.instrument = id;
  $("instrument").value = id;
  state.bars = []; state.forming = null; state.hover = -1;
  renderPrices();
  loadBars();
}

$("instrument").addEventListener("change", (e) => select(e.target.value));
for (const b of document.querySelectorAll("[data-interval]")) {
  b.addEventListener("click", () => {
    state.interval = b.dataset.interval;
    for (const o of document.querySelectorAll("[data-interval]")) o.classList.toggle("active", o === b);
    state.bars = []; state.forming = null; state.hover = -1;
    loadBars();
  });
}

(async () => {
  await loadInstruments();
  await Promise.all([loadBars(), loadSignals()]);
  connect();
})();

// The three detail charts, drawn with the vendored uPlot (canvas): latency quantiles over time
// (log scale), calls and errors over time (bars), and the log-bucket latency histogram.

import { fmtCount, fmtDur, fmtDurShort, fmtTime } from './format.js';

const COLORS = { p50: '#2b6cb0', p90: '#dd8a1e', p99: '#c53030', calls: '#5a7fd6',
  errors: '#c53030', hist: '#4c7bd0', grid: '#e5e7eb', axis: '#4b5563', recent: 'rgba(197,48,48,0.07)' };
const HEIGHT = 230;
const FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const charts = new Map(); // element id -> uPlot instance

function axis(values, extra = {}) {
  return { stroke: COLORS.axis, font: FONT, grid: { stroke: COLORS.grid, width: 1 },
    ticks: { stroke: COLORS.grid, width: 1 }, values, ...extra };
}

function widthOf(el) {
  return Math.max(280, Math.floor(el.clientWidth || el.parentElement.clientWidth || 600));
}

function mount(el, opts, data) {
  const old = charts.get(el.id);
  if (old) old.destroy();
  el.textContent = '';
  const u = new window.uPlot({ width: widthOf(el), height: HEIGHT, ...opts }, data, el);
  charts.set(el.id, u);
  return u;
}

/** Replace a chart with a line of text (no data, or still loading). */
export function chartMessage(el, message) {
  empty(el, message);
}

function empty(el, message) {
  const old = charts.get(el.id);
  if (old) old.destroy();
  charts.delete(el.id);
  el.textContent = '';
  const p = document.createElement('p');
  p.className = 'chart-empty';
  p.textContent = message;
  el.append(p);
}

export function resizeCharts() {
  for (const [id, u] of charts) {
    const el = document.getElementById(id);
    if (el) u.setSize({ width: widthOf(el), height: HEIGHT });
  }
}

/** Bucket centres in seconds (uPlot's time unit) and the x range [since, until]. */
function timeAxis(series) {
  const step = series.step_ns / 1e9;
  const xs = series.start_unix_nano.map((ns) => ns / 1e9 + step / 2);
  return { xs, min: series.since_unix_nano / 1e9, max: series.until_unix_nano / 1e9 };
}

function timeValues(u, splits) {
  const span = u.scales.x.max - u.scales.x.min; // seconds
  return splits.map((s) => {
    const t = fmtTime(s * 1e9, { ms: false }); // YYYY-MM-DD HH:MM:SS
    if (span > 18 * 3600) return t.slice(5, 16); // MM-DD HH:MM
    if (span < 600) return t.slice(11, 19); // HH:MM:SS
    return t.slice(11, 16); // HH:MM
  });
}

function zoomHook(onZoom) {
  return (u) => {
    const sel = u.select;
    if (sel.width < 4) return;
    const from = u.posToVal(sel.left, 'x');
    const to = u.posToVal(sel.left + sel.width, 'x');
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    onZoom(from * 1000, to * 1000); // ms
  };
}

/** Log axes: keep the 1, 2 and 5 multiples of each decade (labels, ticks and grid). */
function oneTwoFive(u, splits) {
  return splits.map((v) => {
    if (v == null || v <= 0) return null;
    const m = Math.round(v / 10 ** Math.floor(Math.log10(v) + 1e-9));
    return m === 1 || m === 2 || m === 5 ? v : null;
  });
}

/** Points with empty buckets on both sides: a line cannot show them, so they get a dot. */
function isolated(u, seriesIdx, show) {
  if (show) return null; // uPlot draws every point already
  const ys = u.data[seriesIdx];
  const out = [];
  for (let i = 0; i < ys.length; i++) {
    if (ys[i] != null && ys[i - 1] == null && ys[i + 1] == null) out.push(i);
  }
  return out.length ? out : null;
}

/** p50/p90/p99 per bucket, log y; the recent window is shaded when it regressed. */
export function latencyChart(el, series, { onZoom, recentSince } = {}) {
  if (!series.count || !series.count.some((c) => c > 0)) {
    empty(el, 'No calls in this range.');
    return null;
  }
  const { xs, min, max } = timeAxis(series);
  const pos = (arr) => arr.map((v) => (v == null ? null : Math.max(v, 1)));
  const data = [xs, pos(series.p50_ns), pos(series.p90_ns), pos(series.p99_ns)];
  const line = (label, stroke) => ({ label, stroke, width: 2, spanGaps: false,
    value: (u, v) => fmtDur(v), points: { size: 5, filter: isolated } });
  const shade = recentSince == null ? [] : [(u) => {
    const x0 = u.valToPos(recentSince / 1e9, 'x', true);
    const x1 = u.bbox.left + u.bbox.width;
    if (x0 >= x1) return;
    const { ctx } = u;
    ctx.save();
    ctx.fillStyle = COLORS.recent;
    ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
    ctx.fillStyle = COLORS.p99;
    ctx.font = FONT.replace('11px', `${11 * devicePixelRatio}px`);
    ctx.fillText('recent window', x0 + 4 * devicePixelRatio, u.bbox.top + 12 * devicePixelRatio);
    ctx.restore();
  }];
  return mount(el, {
    cursor: { sync: { key: 'kronicler-time' }, drag: { x: true, y: false } },
    scales: { x: { time: true, range: () => [min, max] }, y: { distr: 3, log: 10 } },
    axes: [axis(timeValues), axis((u, splits) => splits.map(fmtDurShort), { size: 64, filter: oneTwoFive,
      grid: { stroke: COLORS.grid, width: 1, filter: oneTwoFive },
      ticks: { stroke: COLORS.grid, width: 1, filter: oneTwoFive } })],
    series: [{ value: (u, v) => (v == null ? '–' : fmtTime(v * 1e9, { ms: false })) },
      line('p50', COLORS.p50), line('p90', COLORS.p90), line('p99', COLORS.p99)],
    hooks: { setSelect: onZoom ? [zoomHook(onZoom)] : [], drawClear: shade },
  }, data);
}

/** Calls per bucket (bars) with the errors among them (narrower red bars in front). */
export function callsChart(el, series, { onZoom } = {}) {
  if (!series.count || !series.count.some((c) => c > 0)) {
    empty(el, 'No calls in this range.');
    return null;
  }
  const { xs, min, max } = timeAxis(series);
  const bars = window.uPlot.paths.bars;
  return mount(el, {
    cursor: { sync: { key: 'kronicler-time' }, drag: { x: true, y: false } },
    scales: { x: { time: true, range: () => [min, max] },
      y: { range: (u, lo, hi) => [0, Math.max(1, hi * 1.05)] } },
    axes: [axis(timeValues), axis((u, splits) => splits.map((v) => (v == null ? '' : fmtCount(v))), { size: 56 })],
    series: [{ value: (u, v) => (v == null ? '–' : fmtTime(v * 1e9, { ms: false })) },
      { label: 'calls', stroke: COLORS.calls, fill: `${COLORS.calls}cc`, width: 0,
        paths: bars({ size: [0.8, 40] }), points: { show: false }, value: (u, v) => fmtCount(v) },
      { label: 'errors', stroke: COLORS.errors, fill: `${COLORS.errors}ee`, width: 0,
        paths: bars({ size: [0.4, 20] }), points: { show: false }, value: (u, v) => fmtCount(v) }],
    hooks: { setSelect: onZoom ? [zoomHook(onZoom)] : [] },
  }, [xs, series.count, series.errors]);
}

/** Log-bucket histogram; empty buckets between the first and last are filled in as zero. */
export function histogramChart(el, hist, { p50, p99 } = {}) {
  if (!hist.buckets || !hist.buckets.length) {
    empty(el, 'No calls in this range.');
    return null;
  }
  const pd = hist.per_decade;
  const index = (b) => (b.lower_ns < 1 ? -1 : Math.round(Math.log10(b.lower_ns) * pd));
  const first = index(hist.buckets[0]);
  const last = index(hist.buckets[hist.buckets.length - 1]);
  const byIndex = new Map(hist.buckets.map((b) => [index(b), b.count]));
  const xs = [];
  const counts = [];
  for (let i = first; i <= last; i++) {
    xs.push((i + 0.5) / pd);
    counts.push(byIndex.get(i) || 0);
  }
  const lo = first / pd;
  const hi = (last + 1) / pd;
  const decades = (u, ax, min, max) => {
    const out = [];
    const steps = max - min > 2.5 ? [0] : [0, Math.log10(2), Math.log10(5)];
    for (let d = Math.floor(min); d <= Math.ceil(max); d++) {
      for (const s of steps) if (d + s >= min && d + s <= max) out.push(d + s);
    }
    return out;
  };
  const marks = [[p50, 'p50', COLORS.p50], [p99, 'p99', COLORS.p99]].filter(([v]) => v > 0);
  const drawMarks = (u) => {
    const { ctx } = u;
    const r = devicePixelRatio;
    ctx.save();
    ctx.font = FONT.replace('11px', `${11 * r}px`);
    for (const [v, label, color] of marks) {
      const x = u.valToPos(Math.log10(v), 'x', true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      ctx.setLineDash([4 * r, 3 * r]);
      ctx.lineWidth = r;
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      const w = ctx.measureText(label).width;
      ctx.fillStyle = 'rgba(255,255,255,0.85)';
      ctx.fillRect(x + 2 * r, u.bbox.top + 1 * r, w + 4 * r, 14 * r);
      ctx.fillStyle = color;
      ctx.fillText(label, x + 4 * r, u.bbox.top + 12 * r);
    }
    ctx.restore();
  };
  return mount(el, {
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: false, range: () => [lo, hi] },
      y: { range: (u, a, b) => [0, Math.max(1, b * 1.2)] } },
    axes: [axis((u, splits) => splits.map((s) => fmtDurShort(10 ** s)), { splits: decades }),
      axis((u, splits) => splits.map((v) => (v == null ? '' : fmtCount(v))), { size: 56 })],
    series: [{ value: (u, v) => (v == null ? '–'
      : `${fmtDur(10 ** (v - 0.5 / pd))} – ${fmtDur(10 ** (v + 0.5 / pd))}`) },
    { label: 'calls', stroke: COLORS.hist, fill: `${COLORS.hist}cc`, width: 0,
      paths: window.uPlot.paths.bars({ size: [0.92, Infinity] }), points: { show: false },
      value: (u, v) => fmtCount(v) }],
    hooks: { draw: [drawMarks] },
  }, [xs, counts]);
}

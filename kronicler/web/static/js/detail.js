// The function view: headline figures, the anomaly evidence (or why it is not flagged), the
// charts, and the slowest calls with the ids to look them up in a trace viewer.

import { callsChart, chartMessage, histogramChart, latencyChart } from './charts.js';
import {
  QUIET_RESOURCE, RESOURCE, byRank, valueText,
} from './filters.js';
import {
  STATUS_NAMES, fmtCount, fmtDur, fmtPct, fmtRate, fmtRatio, fmtStep, fmtTime,
} from './format.js';

export function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text != null) e.textContent = text;
  return e;
}

function card(label, value, note) {
  const c = el('div', 'card');
  c.append(el('div', 'card-label', label), el('div', 'card-value', value));
  if (note) c.append(el('div', 'card-note', note));
  return c;
}

function renderCards(box, s) {
  box.textContent = '';
  if (!s) {
    box.append(el('p', 'muted', 'No calls of this function in the selected range.'));
    return;
  }
  box.append(
    card('Calls', fmtCount(s.count), fmtRate(s.calls_per_s)),
    card('Errors', fmtPct(s.error_rate), `${fmtCount(s.errors)} calls`),
    card('Mean', fmtDur(s.mean_ns), s.stderr_ns == null ? '' : `± ${fmtDur(s.stderr_ns)} std err`),
    card('p50', fmtDur(s.p50_ns)),
    card('p90', fmtDur(s.p90_ns)),
    card('p99', fmtDur(s.p99_ns)),
    card('Max', fmtDur(s.max_ns), s.min_ns == null ? '' : `min ${fmtDur(s.min_ns)}`),
  );
}

function ratioRow(label, ratio, threshold, detail) {
  const tr = el('tr');
  const over = ratio != null && ratio >= threshold;
  tr.append(el('th', '', label), el('td', over ? 'num over' : 'num', fmtRatio(ratio)),
    el('td', 'num muted', `threshold ${fmtRatio(threshold)}`), el('td', 'muted', detail));
  return tr;
}

function renderEvidence(box, d) {
  box.textContent = '';
  const s = d.stats;
  const t = d.thresholds;
  const a = d.anomaly;
  box.className = a ? 'evidence flagged' : 'evidence';
  if (!s) return;
  if (a) {
    box.append(el('h2', '', `⚑ Flagged: score ${a.score.toFixed(2)}`));
    const ul = el('ul', 'reasons');
    for (const r of a.reasons) ul.append(el('li', '', r));
    box.append(ul);
  } else if (s.count < d.min_count) {
    box.append(el('h2', '', 'Not judged'), el('p', 'muted',
      `${fmtCount(s.count)} calls in this range; the anomaly finder needs at least ${d.min_count}.`));
    return;
  } else {
    box.append(el('h2', '', 'Not flagged'), el('p', 'muted',
      'Its slow calls stay within the thresholds below.'));
  }
  const table = el('table', 'ratios');
  const tail = a ? a.tail_ratio : (s.p50_ns ? s.p99_ns / Math.max(s.p50_ns, 1) : null);
  const spike = a ? a.spike_ratio : (s.p50_ns ? s.max_ns / Math.max(s.p50_ns, 1) : null);
  table.append(
    ratioRow('Tail: p99 / p50', tail, t.tail, `${fmtDur(s.p99_ns)} / ${fmtDur(s.p50_ns)}`),
    ratioRow('Spike: max / p50', spike, t.spike, `${fmtDur(s.max_ns)} / ${fmtDur(s.p50_ns)}`),
  );
  if (a) {
    const detail = a.regression_ratio == null
      ? 'too few calls to compare the recent window with the baseline'
      : `${fmtDur(a.recent_p99_ns)} since ${fmtTime(a.recent_since_unix_nano, { ms: false })} `
        + `(${fmtCount(a.recent_count)} calls) vs ${fmtDur(a.baseline_p99_ns)} before`;
    table.append(ratioRow('Regression: recent p99 / before', a.regression_ratio, t.regression,
      detail));
  }
  box.append(table);
}

function chip(text, condition, resource) {
  const b = el('button', resource ? 'attr resource' : 'attr', text);
  b.type = 'button';
  b.dataset.filter = condition;
  b.title = `${resource ? 'resource attribute' : 'span attribute'}: click to show only calls with `
    + condition;
  return b;
}

/** The call's resource attributes (marked as such) then its span attributes, each a button
 * that filters the view by it; the quiet resource attributes only in the cell's tooltip. */
function attributeCell(c) {
  const td = el('td', 'text attrs');
  const resource = Object.entries(c.resource || {}).sort(([a], [b]) => byRank(a, b));
  for (const [k, v] of resource) {
    if (QUIET_RESOURCE.test(k)) continue;
    td.append(chip(`${k}=${valueText(v)}`, `${RESOURCE}${k}=${valueText(v)}`, true));
  }
  for (const [k, v] of Object.entries(c.attributes || {})) {
    td.append(chip(`${k}=${valueText(v)}`, `${k}=${valueText(v)}`, false));
  }
  if (resource.length) {
    td.title = `resource: ${resource.map(([k, v]) => `${k}=${valueText(v)}`).join(', ')}`;
  }
  return td;
}

function renderSlowest(table, calls) {
  const body = document.createElement('tbody');
  if (!calls.length) {
    const tr = el('tr', 'message');
    const td = el('td', '', 'No calls in this range.');
    td.colSpan = 7;
    tr.append(td);
    body.append(tr);
  }
  for (const c of calls) {
    const tr = el('tr');
    tr.append(el('td', 'text nowrap', fmtTime(c.start_unix_nano)));
    tr.append(el('td', 'num', fmtDur(c.duration_ns)));
    const trace = el('td', 'text mono trace-id', c.trace_id);
    trace.title = 'trace id: click to select';
    tr.append(trace);
    tr.append(el('td', 'text mono span-id', c.span_id));
    tr.append(el('td', 'text', c.service || '–'));
    tr.append(el('td', c.status === 2 ? 'text status-error' : 'text', STATUS_NAMES[c.status]
      ?? String(c.status)));
    tr.append(attributeCell(c));
    body.append(tr);
  }
  table.tBodies[0].replaceWith(body);
}

/** Draw the function view from an /api/v1/detail answer (its series may come later). */
export function renderDetail(d, { onZoom, seriesPending = false }) {
  document.getElementById('fn-name').textContent = d.function;
  renderCards(document.getElementById('cards'), d.stats);
  renderEvidence(document.getElementById('evidence'), d);
  histogramChart(document.getElementById('chart-hist'), d.histogram,
    { p50: d.stats && d.stats.p50_ns, p99: d.stats && d.stats.p99_ns });
  renderSlowest(document.getElementById('slowest'), d.slowest);
  if (d.series) renderSeries(d.series, d, { onZoom });
  else if (seriesPending) {
    for (const id of ['chart-latency', 'chart-calls']) chartMessage(document.getElementById(id), 'Loading…');
  }
}

/** The two time charts, from the flattened series of one function. */
export function renderSeries(series, d, { onZoom }) {
  const a = d.anomaly;
  const recent = a && a.signals.includes('regression') ? a.recent_since_unix_nano : null;
  latencyChart(document.getElementById('chart-latency'), series, { onZoom, recentSince: recent });
  callsChart(document.getElementById('chart-calls'), series, { onZoom });
  const step = series.step_ns;
  document.getElementById('calls-note').textContent = step ? `per ${fmtStep(step)}` : '';
}

/** One function's series out of an /api/v1/series answer, in the /detail shape. */
export function flattenSeries(answer, fn) {
  const { series, ...axis } = answer;
  return { ...axis, ...(series.find((x) => x.function === fn) || { function: fn }) };
}

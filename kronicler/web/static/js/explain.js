// The "Why slow?" panel of the function view: an /api/v1/explain answer as three small tables
// (attribute values, child functions, releases) and one sentence about time, each finding with
// its counts and an example slow call's trace id.

import { el } from './detail.js';
import { fmtCount, fmtDur, fmtPct, fmtStep, fmtTime } from './format.js';

const TOP = 5;

function grid(section, headers, rows) {
  const table = el('table', 'grid explain-table');
  table.dataset.section = section;
  const head = el('tr');
  headers.forEach((h, i) => head.append(el('th', i === 0 || i === headers.length - 1 ? 'text' : '', h)));
  table.createTHead().append(head);
  const body = table.createTBody();
  for (const cells of rows) {
    const tr = el('tr');
    cells.forEach((c, i) => tr.append(el('td', i === 0 ? 'text' : i === cells.length - 1 ? 'text mono trace-id' : 'num', c)));
    body.append(tr);
  }
  return table;
}

function example(calls) {
  return calls && calls.length ? calls[0].trace_id : '';
}

function countShare(n, total) {
  return `${fmtCount(n)} (${fmtPct(total ? n / total : null)})`;
}

/** Draw the panel into ``box`` (a <section>), or a message when there is nothing to explain. */
export function renderExplain(box, e) {
  box.textContent = '';
  box.hidden = false;
  box.append(el('h2', '', 'Why slow?'));
  if (!e.count) {
    box.append(el('p', 'muted', 'No calls of this function in the selected range.'));
    return;
  }
  const label = e.quantile == null ? '' : ` (the p${String(Math.round(e.quantile * 1000) / 10).replace('.', '')})`;
  box.append(el('p', 'explain-head',
    `${fmtCount(e.slow_count)} of ${fmtCount(e.count)} calls slower than ${fmtDur(e.threshold_ns)}${label}`
    + (e.slow_count ? `: ${fmtDur(e.slow_mean_ns)} on average against ${fmtDur(e.baseline_mean_ns)} for the rest.` : '.')));
  if (!e.slow_count) return;

  box.append(el('h3', '', 'Attribute values over-represented among slow calls'));
  if (e.attributes.length) {
    box.append(grid('attributes', ['Attribute', 'Slow calls', 'Other calls', 'Score', 'Lift', 'e.g. trace'],
      e.attributes.slice(0, TOP).map((a) => [
        `${a.key}=${a.value}`, countShare(a.slow, a.slow_total),
        countShare(a.baseline, a.baseline_total), (a.score >= 0 ? '+' : '') + a.score.toFixed(2),
        a.lift == null ? '–' : `${a.lift.toFixed(1)}×`, example(a.examples),
      ])));
  } else {
    box.append(el('p', 'muted', 'None: slow calls carry the same attribute values as the others.'));
  }

  box.append(el('h3', '', 'Time per call in child functions'));
  const kids = e.children.slice(0, TOP).concat(e.self_time ? [e.self_time] : []);
  box.append(grid('children', ['Function', 'Slow mean', 'Other mean', 'Extra', 'Share of slow', 'e.g. trace'],
    kids.map((c) => [
      c.function, fmtDur(c.slow_mean_ns), fmtDur(c.baseline_mean_ns), fmtDur(c.extra_ns),
      fmtPct(c.slow_share), example(c.examples),
    ])));

  box.append(el('h3', '', 'When'));
  const peak = e.series.reduce((best, b) => ((b.slow_share ?? 0) > (best.slow_share ?? 0) ? b : best), e.series[0]);
  box.append(el('p', 'explain-when',
    `Slow calls are ${e.clustered ? 'clustered in time' : 'spread over the range'} `
    + `(cluster score ${e.cluster_score.toFixed(1)}; about 1 means even). Highest slow share: `
    + `${fmtPct(peak.slow_share)} of ${fmtCount(peak.calls)} calls in the ${fmtStep(e.step_ns)} from `
    + `${fmtTime(peak.start_unix_nano, { ms: false })}.`));
  if (e.releases.length) {
    box.append(grid('releases', ['Release', 'First seen', 'Slow calls', 'Slow share before', 'From then on', ''],
      e.releases.map((r) => [
        `${r.key}=${r.version}`, fmtTime(r.first_start_unix_nano, { ms: false }),
        `${fmtCount(r.slow)} of ${fmtCount(r.calls)}`, fmtPct(r.before_slow_share),
        fmtPct(r.after_slow_share), r.lines_up ? '⟵ lines up with the slow calls' : '',
      ])));
  }
}

/** The panel while its answer is on the way (a new function or window). */
export function explainPending(box) {
  box.textContent = '';
  box.hidden = false;
  box.append(el('h2', '', 'Why slow?'), el('p', 'muted', 'Comparing the slow calls with the others…'));
}

/** The panel when the server refused the question (the rest of the view stays). */
export function explainFailed(box, message) {
  box.textContent = '';
  box.hidden = false;
  box.append(el('h2', '', 'Why slow?'), el('p', 'failure', `Could not explain: ${message}`));
}

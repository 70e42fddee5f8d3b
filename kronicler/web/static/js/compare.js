// The "Compare by" panel of the function view: the function's calls grouped by one key
// (resource:service.version compares releases; resource:host.name hosts; attribute:KEY routes,
// shards...) with each value's figures side by side, from one /api/v1/compare answer. Each row
// can narrow the whole view to its value. Exact nanoseconds show on hover over a duration.

import { el } from './detail.js';
import { conditionFor } from './filters.js';
import { fmtCount, fmtDur, fmtPct, fmtRatio } from './format.js';

const HEADERS = ['Value', 'Calls', 'Share', 'Errors', 'Mean', 'p50', 'p90', 'p99', 'p99 ×', 'Max',
  ''];

function num(text, className = 'num') {
  return el('td', className, text);
}

function dur(ns) {
  const td = num(fmtDur(ns));
  if (ns != null) td.title = `${fmtCount(Math.round(ns))} ns`;
  return td;
}

function pickButton(by, value) {
  const b = el('button', 'link', 'only this');
  b.type = 'button';
  const condition = conditionFor(by, value);
  if (condition) b.dataset.filter = condition;
  else b.dataset.service = value;
  b.title = `Show only the calls with ${condition || `service ${value}`}`;
  return b;
}

/** Draw the answer into `box`; `total` is the function's calls in the view (for shares). */
export function renderCompare(box, answer, total) {
  box.textContent = '';
  const rows = answer.rows;
  if (!rows.length) {
    box.append(el('p', 'muted', `No call of this function carries ${answer.by} in this view.`));
    return;
  }
  const best = Math.min(...rows.map((r) => r.p99_ns ?? Infinity));
  const table = el('table', 'grid compare-table');
  const head = el('tr');
  HEADERS.forEach((h, i) => head.append(el('th', i === 0 ? 'text' : '', h)));
  table.createTHead().append(head);
  const body = table.createTBody();
  for (const r of rows) {
    const tr = el('tr');
    tr.dataset.value = r.value;
    tr.append(el('td', 'text mono', r.value));
    tr.append(num(fmtCount(r.count)), num(fmtPct(total ? r.count / total : null)));
    const errors = num(fmtPct(r.error_rate));
    errors.title = `${fmtCount(r.errors)} errors`;
    if (r.errors) errors.classList.add('has-errors');
    tr.append(errors, dur(r.mean_ns), dur(r.p50_ns), dur(r.p90_ns), dur(r.p99_ns));
    const ratio = r.p99_ns != null && best > 0 && Number.isFinite(best) ? r.p99_ns / best : null;
    tr.append(num(fmtRatio(ratio), ratio != null && ratio >= 1.5 ? 'num over' : 'num'));
    tr.append(dur(r.max_ns));
    const pick = el('td', 'text');
    pick.append(pickButton(answer.by, r.value));
    tr.append(pick);
    body.append(tr);
  }
  box.append(table);
  const notes = [];
  if (answer.more) notes.push(`Only the ${rows.length} most called values are listed.`);
  else if (total != null && total > answer.grouped) {
    notes.push(`${fmtCount(total - answer.grouped)} of ${fmtCount(total)} calls carry no `
      + `${answer.by}.`);
  }
  notes.push('p99 × is each p99 over the lowest; quantiles within 1%.');
  box.append(el('p', 'muted compare-note', notes.join(' ')));
}

/** The panel while its answer is on the way. */
export function comparePending(box) {
  box.textContent = '';
  box.append(el('p', 'muted', 'Grouping the calls…'));
}

/** The panel when the server refused the key (the rest of the view stays). */
export function compareFailed(box, message) {
  box.textContent = '';
  box.append(el('p', 'failure', `Could not compare: ${message}`));
}

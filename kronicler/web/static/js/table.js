// The functions table: one row per function, sortable by any column, filtered by name, with a
// flag on the functions the anomaly finder ranks (its evidence shows on hover or focus).

import { fmtCount, fmtDur, fmtPct, fmtRate, fmtRatio } from './format.js';

const NUMERIC = ['count', 'calls_per_s', 'error_rate', 'mean_ns', 'p50_ns', 'p90_ns', 'p99_ns',
  'max_ns', 'stderr_ns'];
const CELLS = [
  ['count', (r) => fmtCount(r.count)],
  ['calls_per_s', (r) => fmtRate(r.calls_per_s)],
  ['error_rate', (r) => fmtPct(r.error_rate)],
  ['mean_ns', (r) => fmtDur(r.mean_ns)],
  ['p50_ns', (r) => fmtDur(r.p50_ns)],
  ['p90_ns', (r) => fmtDur(r.p90_ns)],
  ['p99_ns', (r) => fmtDur(r.p99_ns)],
  ['max_ns', (r) => fmtDur(r.max_ns)],
  ['stderr_ns', (r) => (r.stderr_ns == null ? '–' : `± ${fmtDur(r.stderr_ns)}`)],
];

export function sortValue(row, key) {
  if (key === 'function') return row.function;
  if (key === 'score') return row.anomaly ? row.anomaly.score : null;
  return row[key];
}

/** Sort a copy of rows; missing values always last; ties broken by p99 then name. */
export function sortRows(rows, key, dir) {
  const sign = dir === 'asc' ? 1 : -1;
  const cmp = (a, b) => {
    const va = sortValue(a, key);
    const vb = sortValue(b, key);
    if (va == null && vb == null) return 0;
    if (va == null) return 1;
    if (vb == null) return -1;
    if (typeof va === 'string') return sign * va.localeCompare(vb);
    return sign * (va - vb);
  };
  return rows.slice().sort((a, b) => cmp(a, b)
    || ((b.p99_ns ?? -1) - (a.p99_ns ?? -1)) || a.function.localeCompare(b.function));
}

/** Case-insensitive match of every space-separated term against the function name. */
export function filterRows(rows, query) {
  const terms = (query || '').toLowerCase().split(/\s+/).filter(Boolean);
  if (!terms.length) return rows;
  return rows.filter((r) => {
    const name = r.function.toLowerCase();
    return terms.every((t) => name.includes(t));
  });
}

export function evidenceText(a) {
  const lines = [`Anomaly score ${a.score.toFixed(2)} (1.0 = at threshold)`, ...a.reasons];
  if (a.regression_ratio != null && !a.signals.includes('regression')) {
    lines.push(`recent p99 is ${fmtRatio(a.regression_ratio)} the baseline p99`);
  }
  return lines.join('\n');
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

/**
 * Fill the table body. `link(name)` gives the detail URL of a function; `onOpen(name, event)`
 * is called on a plain click (so the page can navigate without a reload).
 */
export function renderTable(table, rows, { sort, dir, link, onOpen, emptyMessage }) {
  for (const th of table.tHead.rows[0].cells) {
    const key = th.dataset.key;
    th.classList.toggle('sorted', key === sort);
    th.setAttribute('aria-sort', key === sort ? (dir === 'asc' ? 'ascending' : 'descending') : 'none');
    th.dataset.arrow = key === sort ? (dir === 'asc' ? '▲' : '▼') : '';
  }
  const body = document.createElement('tbody');
  if (!rows.length) {
    const tr = document.createElement('tr');
    tr.className = 'message';
    const td = cell('', '');
    td.colSpan = table.tHead.rows[0].cells.length;
    td.append(emptyMessage);
    tr.append(td);
    body.append(tr);
  }
  for (const r of sortRows(rows, sort, dir)) {
    const tr = document.createElement('tr');
    tr.dataset.function = r.function;
    if (r.anomaly) tr.classList.add('flagged');
    const name = document.createElement('td');
    name.className = 'text fn';
    const a = document.createElement('a');
    a.href = link(r.function);
    a.textContent = r.function;
    a.addEventListener('click', (ev) => {
      if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
      ev.preventDefault();
      onOpen(r.function);
    });
    name.append(a);
    tr.append(name);
    const flag = document.createElement('td');
    flag.className = 'text';
    if (r.anomaly) {
      const badge = document.createElement('span');
      badge.className = 'flag';
      badge.tabIndex = 0;
      badge.textContent = `⚑ ${r.anomaly.signals.join(' · ') || 'anomaly'}`;
      badge.dataset.evidence = evidenceText(r.anomaly);
      badge.setAttribute('aria-label', `flagged: ${badge.dataset.evidence}`);
      flag.append(badge);
    }
    tr.append(flag);
    for (const [key, fmt] of CELLS) {
      const td = cell(fmt(r), 'num');
      if (key === 'error_rate' && r.errors > 0) td.classList.add('has-errors');
      if (key === 'error_rate') td.title = `${fmtCount(r.errors)} errors`;
      tr.append(td);
    }
    tr.addEventListener('click', (ev) => {
      if (ev.target.closest('a, .flag')) return;
      onOpen(r.function);
    });
    body.append(tr);
  }
  table.tBodies[0].replaceWith(body);
}

export function defaultDir(key) {
  return key === 'function' ? 'asc' : 'desc';
}

export { NUMERIC };

// The dashboard's controller: reads the state from the URL, loads the view's data, draws it,
// keeps the URL in step with every change, refreshes on a timer that can be paused, and turns
// every failure into a visible message (never a blank page).

import {
  ApiError, adoptTokenFromUrl, getJson, missingPeers, setToken,
} from './api.js';
import { chartMessage, resizeCharts } from './charts.js';
import { compareFailed, comparePending, renderCompare } from './compare.js';
import { el, flattenSeries, renderDetail, renderSeries } from './detail.js';
import { explainFailed, explainPending, renderExplain } from './explain.js';
import {
  RESOURCE, checkCondition, compareKeys, offerValues, renderChips, withCondition,
} from './filters.js';
import {
  describeWindow, fmtCount, fmtTime, msToNsText, toLocalInput,
} from './format.js';
import { DEFAULTS, readState, stateToSearch, windowParams, writeState } from './state.js';
import { defaultDir, filterRows, renderTable } from './table.js';

const $ = (id) => document.getElementById(id);
let state = readState();
let table = null; // last /functions answer
let lastWindow = null; // window of the last answer, to prefill the custom range
let resumeInterval = state.refresh || DEFAULTS.refresh;
let timer = null;
let controller = null;
let seq = 0;
let loads = 0;
let drawnSeries = null; // which function and window the time charts show

function showError(message) {
  const box = $('error');
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

/** Say which cluster peers did not answer: the figures shown lack their data. */
function showPeers() {
  const box = $('peers');
  if (!missingPeers.size) {
    box.hidden = true;
    box.textContent = '';
    return;
  }
  const n = missingPeers.size;
  box.textContent = `Partial answer: ${n} peer${n === 1 ? '' : 's'} did not answer, so `
    + `${n === 1 ? 'its' : 'their'} data is missing from these figures: `
    + `${[...missingPeers.values()].join('; ')}`;
  box.hidden = false;
}

function setStatus(text) {
  $('status').textContent = text;
}

function markState(name) {
  document.body.dataset.state = name;
}

function hasCustomRange(s) {
  return s.since !== null || s.until !== null;
}

// -- controls ----------------------------------------------------------------------------------

function syncControls() {
  const custom = hasCustomRange(state);
  for (const b of $('presets').querySelectorAll('button')) {
    const p = b.dataset.preset;
    const active = p === 'custom' ? custom : !custom && (state.range || DEFAULTS.range) === p;
    b.classList.toggle('active', active);
    b.setAttribute('aria-pressed', String(active));
  }
  if (document.activeElement !== $('filter')) $('filter').value = state.q;
  renderChips($('attr-chips'), state.attr);
  $('filters').hidden = !state.attr.length;
  if (document.activeElement !== $('compare-input')) $('compare-input').value = state.by;
  $('compare-clear').hidden = !state.by;
  const service = $('service');
  if (state.service && ![...service.options].some((o) => o.value === state.service)) {
    service.append(new Option(state.service, state.service));
  }
  service.value = state.service;
  if (state.refresh) resumeInterval = state.refresh;
  const interval = $('interval');
  if (![...interval.options].some((o) => o.value === String(resumeInterval))) {
    interval.append(new Option(`${resumeInterval} s`, String(resumeInterval)));
  }
  interval.value = String(resumeInterval);
  const paused = !state.refresh;
  $('pause').textContent = paused ? 'Resume' : 'Pause';
  $('pause').setAttribute('aria-pressed', String(paused));
  document.body.classList.toggle('paused', paused);
  $('list-view').hidden = Boolean(state.fn);
  $('detail-view').hidden = !state.fn;
  $('back').href = window.location.pathname + stateToSearch({ ...state, fn: null });
  document.title = state.fn ? `${state.fn} · Kronicler` : 'Kronicler';
}

function update(changes, { push = false, reload = true } = {}) {
  state = { ...state, ...changes };
  writeState(state, { push });
  syncControls();
  if (reload) load();
}

function updateServices(services) {
  const select = $('service');
  const have = new Set([...select.options].map((o) => o.value));
  for (const s of services) if (!have.has(s)) select.append(new Option(s, s));
  select.value = state.service;
}

// -- the functions table -----------------------------------------------------------------------

function emptyMessage() {
  const span = document.createElement('span');
  if (!table) return span;
  if (table.rows.length) {
    span.textContent = `No function matches “${state.q}”.`;
  } else if (!table.data_range) {
    span.textContent = 'No calls stored yet: mark functions with @kronicler.capture and run your app.';
  } else if (state.attr.length) {
    span.textContent = `No calls in the ${describeWindow(table.window)} where `
      + `${state.attr.join(' and ')}. Remove a filter above to widen the view.`;
  } else {
    const r = table.data_range;
    span.textContent = `No calls in the ${describeWindow(table.window)}. Stored calls run from `
      + `${fmtTime(r.first_start_unix_nano, { ms: false })} to `
      + `${fmtTime(r.last_start_unix_nano, { ms: false })}. `;
    const all = document.createElement('button');
    all.type = 'button';
    all.className = 'link';
    all.textContent = 'Show all';
    all.addEventListener('click', () => update({ range: 'all', since: null, until: null }));
    span.append(all);
  }
  return span;
}

function drawTable() {
  if (!table) return;
  $('tooltip').hidden = true; // its flag is about to be replaced
  const rows = filterRows(table.rows, state.q);
  renderTable($('functions'), rows, {
    sort: state.sort,
    dir: state.dir,
    link: (name) => window.location.pathname + stateToSearch({ ...state, fn: name }),
    onOpen: (name) => update({ fn: name }, { push: true }),
    emptyMessage: emptyMessage(),
  });
  const flagged = table.rows.filter((r) => r.anomaly).length;
  const calls = table.rows.reduce((n, r) => n + r.count, 0);
  const shown = rows.length === table.rows.length
    ? `${fmtCount(table.rows.length)} functions`
    : `${fmtCount(rows.length)} of ${fmtCount(table.rows.length)} functions`;
  $('summary').textContent = `${shown} · ${fmtCount(flagged)} flagged · ${fmtCount(calls)} calls`
    + ` · ${describeWindow(table.window)}`;
}

function drawFailure(message) {
  if (state.fn) {
    $('fn-name').textContent = state.fn;
    $('cards').textContent = '';
    const p = document.createElement('p');
    p.className = 'failure';
    p.textContent = `Could not load this view: ${message}`;
    $('cards').append(p);
    $('evidence').textContent = '';
    $('evidence').className = 'evidence';
    for (const id of ['chart-latency', 'chart-calls', 'chart-hist']) chartMessage($(id), '');
    drawnSeries = null;
    $('slowest').tBodies[0].textContent = '';
    $('compare-body').textContent = '';
  } else {
    table = null;
    const span = document.createElement('span');
    span.className = 'failure';
    span.textContent = `Could not load the functions: ${message}`;
    renderTable($('functions'), [], {
      sort: state.sort, dir: state.dir, link: () => '', onOpen: () => {}, emptyMessage: span,
    });
    $('summary').textContent = '';
  }
}

// -- loading -----------------------------------------------------------------------------------

function onZoom(fromMs, toMs) {
  if (!(toMs > fromMs)) return;
  update({ since: msToNsText(fromMs), until: msToNsText(toMs), range: null }, { push: true });
}

async function load() {
  clearTimeout(timer);
  if (controller) controller.abort();
  controller = new AbortController();
  const { signal } = controller;
  const my = ++seq;
  const started = performance.now();
  markState('loading');
  setStatus('Loading…');
  missingPeers.clear();
  let retry = true;
  try {
    if (state.fn) {
      // The time series reads every call in the window, so it comes second: figures,
      // evidence, histogram and slowest calls show first.
      const params = windowParams(state);
      params.set('function', state.fn);
      const fast = new URLSearchParams(params);
      fast.set('series', 'false');
      const key = params.toString();
      const detail = await getJson('detail', fast, signal);
      if (my !== seq) return;
      lastWindow = detail.window;
      if (drawnSeries !== key) explainPending($('explain'));
      renderDetail(detail, { onZoom, seriesPending: drawnSeries !== key });
      firstContent();
      offerValues($('attr-values'), detail.slowest);
      await loadCompare(params, detail, signal, my);
      if (my !== seq) return;
      const series = await getJson('series', params, signal);
      if (my !== seq) return;
      renderSeries(flattenSeries(series, state.fn), detail, { onZoom });
      drawnSeries = key;
      // Explain reads every call of the function and its children: last of all.
      const why = new URLSearchParams(params);
      why.delete('service');
      why.delete('attr');
      try {
        const explained = await getJson('explain', why, signal);
        if (my !== seq) return;
        renderExplain($('explain'), explained);
        if (state.service || state.attr.length) {
          $('explain').append(el('p', 'muted', 'Why slow? weighs every call of this function in '
            + 'the range: the service and attribute filters do not apply to it.'));
        }
      } catch (err) {
        if (err.name === 'AbortError' || !(err instanceof ApiError)) throw err;
        explainFailed($('explain'), err.message);
      }
    } else {
      const [answer, meta] = await Promise.all([
        getJson('functions', windowParams(state), signal),
        getJson('meta', null, signal),
      ]);
      if (my !== seq) return;
      table = answer;
      lastWindow = answer.window;
      updateServices(meta.services);
      drawTable();
      firstContent();
    }
    clearError();
    showPeers();
    $('token-form').hidden = true;
    const ms = Math.round(performance.now() - started);
    setStatus(`Updated ${fmtTime(Date.now() * 1e6, { date: false, ms: false })} · ${ms} ms`
      + (state.refresh ? '' : ' · paused'));
    loads += 1;
    document.body.dataset.loads = String(loads);
    if (!document.body.dataset.completeMs) {
      document.body.dataset.completeMs = String(Math.round(performance.now()));
    }
    markState('ready');
  } catch (err) {
    if (err.name === 'AbortError' || my !== seq) return;
    const message = err instanceof ApiError ? err.message : `unexpected error: ${err.message}`;
    // A request the server refused (4xx) fails again until the view changes: no retry timer.
    retry = !(err instanceof ApiError && err.status >= 400 && err.status < 500);
    if (err instanceof ApiError && err.status === 401) {
      $('token-form').hidden = false;
      $('token-input').focus();
    }
    showError(message);
    showPeers();
    drawFailure(message);
    setStatus('Failed');
    markState('error');
  } finally {
    if (my === seq && retry) schedule();
  }
}

/** The compare panel: the answer for the chosen key, or a choice of the keys the calls carry. */
async function loadCompare(params, detail, signal, my) {
  const box = $('compare-body');
  const keys = compareKeys(detail.slowest);
  const list = $('compare-keys');
  list.textContent = '';
  for (const k of keys) list.append(new Option(k));
  if (!state.by) {
    box.textContent = '';
    const p = el('p', 'muted', 'Group this function\'s calls by a resource or span attribute to '
      + 'see releases, hosts or routes side by side: ');
    for (const k of keys.filter((x) => x.startsWith(RESOURCE)).slice(0, 4)) {
      const b = el('button', 'link', k.slice(RESOURCE.length));
      b.type = 'button';
      b.dataset.by = k;
      b.title = `Compare by ${k}`;
      p.append(b, ' ');
    }
    box.append(p);
    return;
  }
  comparePending(box);
  const ask = new URLSearchParams(params);
  ask.set('by', state.by);
  try {
    const answer = await getJson('compare', ask, signal);
    if (my !== seq) return;
    renderCompare(box, answer, detail.stats ? detail.stats.count : 0);
  } catch (err) {
    if (err.name === 'AbortError' || !(err instanceof ApiError)) throw err;
    compareFailed(box, err.message);
  }
}

/** Add a typed or clicked KEY=VALUE condition to the filters (or say what is wrong with it). */
function addCondition(text) {
  const { condition, error } = checkCondition(text);
  const hint = $('attr-hint');
  hint.hidden = !error;
  hint.textContent = error || '';
  if (error) return false;
  update({ attr: withCondition(state.attr, condition) });
  return true;
}

/** Time from navigation start to the first drawn answer (read by bench/bench_web.py). */
function firstContent() {
  if (!document.body.dataset.readyMs) {
    document.body.dataset.readyMs = String(Math.round(performance.now()));
  }
}

function schedule() {
  clearTimeout(timer);
  if (!state.refresh) return;
  timer = setTimeout(() => {
    if (document.hidden) schedule();
    else load();
  }, state.refresh * 1000);
}

// -- events ------------------------------------------------------------------------------------

function wire() {
  $('presets').addEventListener('click', (ev) => {
    const b = ev.target.closest('button');
    if (!b) return;
    if (b.dataset.preset === 'custom') {
      const form = $('custom');
      form.hidden = !form.hidden;
      if (!form.hidden && lastWindow && lastWindow.since_unix_nano != null) {
        $('custom-from').value = toLocalInput(lastWindow.since_unix_nano);
        $('custom-to').value = toLocalInput(lastWindow.until_unix_nano);
      }
      return;
    }
    $('custom').hidden = true;
    update({ range: b.dataset.preset, since: null, until: null }, { push: true });
  });
  $('custom').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const from = new Date($('custom-from').value).getTime();
    const to = new Date($('custom-to').value).getTime();
    if (!Number.isFinite(from) || !Number.isFinite(to)) {
      showError('Enter both ends of the custom range.');
      return;
    }
    if (from >= to) {
      showError('The custom range must start before it ends.');
      return;
    }
    $('custom').hidden = true;
    update({ since: msToNsText(from), until: msToNsText(to), range: null }, { push: true });
  });
  $('service').addEventListener('change', (ev) => update({ service: ev.target.value }));
  $('attr-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (addCondition($('attr-input').value)) $('attr-input').value = '';
  });
  $('attr-input').addEventListener('input', () => { $('attr-hint').hidden = true; });
  $('attr-chips').addEventListener('click', (ev) => {
    const b = ev.target.closest('[data-remove]');
    if (b) update({ attr: state.attr.filter((c) => c !== b.dataset.remove) });
  });
  $('slowest').addEventListener('click', (ev) => {
    const b = ev.target.closest('[data-filter]');
    if (b) addCondition(b.dataset.filter);
  });
  $('compare-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    update({ by: $('compare-input').value.trim() });
  });
  $('compare-clear').addEventListener('click', () => update({ by: '' }));
  $('compare-body').addEventListener('click', (ev) => {
    const b = ev.target.closest('button');
    if (!b) return;
    if (b.dataset.by) update({ by: b.dataset.by });
    else if (b.dataset.filter) addCondition(b.dataset.filter);
    else if (b.dataset.service) update({ service: b.dataset.service });
  });
  $('interval').addEventListener('change', (ev) => {
    resumeInterval = parseInt(ev.target.value, 10);
    update({ refresh: resumeInterval }, { reload: false });
    schedule();
  });
  $('pause').addEventListener('click', () => {
    update({ refresh: state.refresh ? 0 : resumeInterval }, { reload: false });
    if (state.refresh) load();
    else {
      clearTimeout(timer);
      setStatus(`${$('status').textContent.replace(/ · paused$/, '')} · paused`);
    }
  });
  $('filter').addEventListener('input', (ev) => {
    update({ q: ev.target.value }, { reload: false });
    drawTable();
  });
  $('functions').tHead.addEventListener('click', (ev) => {
    const th = ev.target.closest('th');
    if (!th || !th.dataset.key) return;
    const key = th.dataset.key;
    const dir = key === state.sort ? (state.dir === 'asc' ? 'desc' : 'asc') : defaultDir(key);
    update({ sort: key, dir }, { reload: false });
    drawTable();
  });
  $('back').addEventListener('click', (ev) => {
    if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
    ev.preventDefault();
    update({ fn: null }, { push: true, reload: false });
    drawTable();
    load();
  });
  $('home').addEventListener('click', (ev) => {
    if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
    ev.preventDefault();
    state = { ...DEFAULTS, refresh: state.refresh };
    update({}, { push: true });
  });
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    setToken($('token-input').value.trim());
    $('token-input').value = '';
    load();
  });
  window.addEventListener('popstate', () => {
    state = readState();
    syncControls();
    drawTable();
    load();
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && state.refresh && document.body.dataset.state !== 'loading') load();
  });
  document.addEventListener('keydown', (ev) => {
    const typing = ev.target.closest('input, select, textarea');
    if (ev.key === '/' && !typing) {
      ev.preventDefault();
      if (state.fn) update({ fn: null }, { push: true });
      $('filter').focus();
    } else if (ev.key === 'Escape' && state.fn && !typing) {
      $('back').click();
    }
  });
  let resizing = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizing);
    resizing = setTimeout(resizeCharts, 150);
  });
  wireTooltip();
}

function wireTooltip() {
  const tip = $('tooltip');
  const show = (ev) => {
    const flag = ev.target.closest && ev.target.closest('.flag');
    if (!flag) return;
    tip.textContent = flag.dataset.evidence;
    tip.hidden = false;
    const r = flag.getBoundingClientRect();
    const left = Math.min(r.left + window.scrollX, window.scrollX + document.documentElement.clientWidth - tip.offsetWidth - 8);
    tip.style.left = `${Math.max(8, left)}px`;
    tip.style.top = `${r.bottom + window.scrollY + 6}px`;
  };
  const hide = (ev) => {
    if (ev.target.closest && ev.target.closest('.flag')) tip.hidden = true;
  };
  document.addEventListener('mouseover', show);
  document.addEventListener('focusin', show);
  document.addEventListener('mouseout', hide);
  document.addEventListener('focusout', hide);
}

function start() {
  adoptTokenFromUrl();
  state = readState();
  if (!window.uPlot) showError('The chart library did not load; charts will be missing.');
  wire();
  syncControls();
  load();
}

start();

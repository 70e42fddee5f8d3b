// The view state lives in the URL so any view can be shared, bookmarked or reloaded.
// Defaults are left out of the URL; since/until stay decimal text (exact nanoseconds).
// `attr` is a list (repeated attr=KEY=VALUE, as the API takes it); `by` is the compare key.

export const DEFAULTS = Object.freeze({
  range: '1h', since: null, until: null, service: '', attr: Object.freeze([]), fn: null, q: '',
  by: '', sort: 'score', dir: 'desc', refresh: 15,
});
const KEYS = Object.keys(DEFAULTS);

export function readState(search = window.location.search) {
  const p = new URLSearchParams(search);
  const s = { ...DEFAULTS };
  for (const k of KEYS) {
    if (!p.has(k)) continue;
    if (k === 'attr') {
      s.attr = p.getAll('attr').filter(Boolean);
      continue;
    }
    const v = p.get(k);
    s[k] = k === 'refresh' ? Math.max(0, parseInt(v, 10) || 0) : v;
  }
  if (s.since !== null || s.until !== null) {
    if (!p.has('range')) s.range = null; // an explicit range replaces the default preset
  }
  if (s.dir !== 'asc' && s.dir !== 'desc') s.dir = DEFAULTS.dir;
  return s;
}

export function stateToSearch(s) {
  const p = new URLSearchParams();
  for (const k of KEYS) {
    const v = s[k];
    if (v === null || v === undefined || v === '') continue;
    if (Array.isArray(v)) {
      for (const item of v) p.append(k, item);
      continue;
    }
    if (k === 'range' && (s.since !== null || s.until !== null)) {
      if (v !== null) p.set(k, v); // keep a conflicting pair visible: the server will say why
      continue;
    }
    if (v === DEFAULTS[k]) continue;
    p.set(k, String(v));
  }
  const text = p.toString();
  return text ? `?${text}` : '';
}

/** Write the state to the URL: push a history entry for navigation, replace otherwise. */
export function writeState(s, { push = false } = {}) {
  const url = window.location.pathname + stateToSearch(s);
  if (url === window.location.pathname + window.location.search) return;
  if (push) window.history.pushState(null, '', url);
  else window.history.replaceState(null, '', url);
}

/** The API query parameters that select the calls: time window, service, attribute filters. */
export function windowParams(s) {
  const p = new URLSearchParams();
  if (s.since !== null || s.until !== null) {
    if (s.since !== null) p.set('since', s.since);
    if (s.until !== null) p.set('until', s.until);
    if (s.range !== null && s.range !== DEFAULTS.range) p.set('range', s.range);
  } else {
    p.set('range', s.range || DEFAULTS.range);
  }
  if (s.service) p.set('service', s.service);
  for (const a of s.attr) p.append('attr', a);
  return p;
}

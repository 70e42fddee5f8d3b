// Human units for durations, counts, rates and times. Durations arrive in nanoseconds.

const DURATION_UNITS = [[1, 'ns'], [1e3, 'µs'], [1e6, 'ms'], [1e9, 's']];

/** Three significant digits, never an exponent: 1.23, 12.3, 123. */
export function sig(v) {
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** 850 ns, 12.3 µs, 4.56 ms, 1.23 s (unit chosen after rounding, so never "1000 µs"). */
export function fmtDur(ns) {
  if (ns == null || !Number.isFinite(ns)) return '–';
  if (ns === 0) return '0 ns';
  let i = 0;
  while (i < DURATION_UNITS.length - 1 && Math.abs(ns) >= DURATION_UNITS[i + 1][0] * 0.9995) i++;
  if (i === 0) return `${Math.round(ns)} ns`;
  const [scale, unit] = DURATION_UNITS[i];
  return `${sig(ns / scale)} ${unit}`;
}

/** Axis labels: like fmtDur without trailing zeros (1 ms, 2.5 ms, 500 µs); blank for null. */
export function fmtDurShort(ns) {
  if (ns == null || !Number.isFinite(ns)) return '';
  const text = fmtDur(ns);
  const [num, unit] = text.split(' ');
  return `${parseFloat(num)} ${unit}`;
}

export function fmtCount(n) {
  return n == null ? '–' : Number(n).toLocaleString('en-US');
}

/** Calls per second: 0.83/s, 12.3/s, 4.5k/s. */
export function fmtRate(r) {
  if (r == null || !Number.isFinite(r)) return '–';
  if (r === 0) return '0/s';
  if (r < 0.01) return '<0.01/s';
  if (r >= 1e6) return `${sig(r / 1e6)}M/s`;
  if (r >= 1e4) return `${sig(r / 1e3)}k/s`;
  return `${sig(r)}/s`;
}

/** A 0..1 ratio as a percentage: 0%, <0.01%, 0.25%, 5.97%, 12.5%. */
export function fmtPct(x) {
  if (x == null || !Number.isFinite(x)) return '–';
  if (x === 0) return '0%';
  const p = x * 100;
  if (p < 0.01) return '<0.01%';
  return `${p < 10 ? p.toFixed(2) : p.toFixed(1)}%`;
}

export function fmtRatio(x) {
  return x == null || !Number.isFinite(x) ? '–' : `${sig(x)}×`;
}

function pad(n, w = 2) {
  return String(n).padStart(w, '0');
}

/** Local wall-clock time of a Unix-epoch-ns instant: 2025-11-28 18:15:03.123 */
export function fmtTime(ns, { date = true, ms = true } = {}) {
  if (ns == null) return '–';
  const d = new Date(Math.floor(Number(ns) / 1e6));
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return (date ? `${day} ` : '') + time + (ms ? `.${pad(d.getMilliseconds(), 3)}` : '');
}

/** Value for an <input type="datetime-local" step="1">, from Unix epoch ns. */
export function toLocalInput(ns) {
  const d = new Date(Math.floor(Number(ns) / 1e6));
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Unix epoch ns as exact decimal text, from milliseconds (BigInt keeps every digit). */
export function msToNsText(ms) {
  return (BigInt(Math.round(ms)) * 1000000n).toString();
}

const PRESET_NAMES = { '15m': 'last 15 minutes', '1h': 'last hour', '24h': 'last 24 hours',
  '7d': 'last 7 days', all: 'all stored calls' };

export function describeWindow(w) {
  if (!w) return '';
  if (w.preset) return PRESET_NAMES[w.preset] || w.preset;
  return `${fmtTime(w.since_unix_nano, { ms: false })} → ${fmtTime(w.until_unix_nano, { ms: false })}`;
}

export const STATUS_NAMES = { 0: 'unset', 1: 'ok', 2: 'error' };

/** A chart step in words: 10 s, 1 min, 15 min, 2 h, 1 d (other widths as durations). */
export function fmtStep(ns) {
  const s = ns / 1e9;
  for (const [size, unit] of [[86400, 'd'], [3600, 'h'], [60, 'min'], [1, 's']]) {
    if (s >= size && Number.isInteger(s / size)) return `${s / size} ${unit}`;
  }
  return fmtDur(ns);
}

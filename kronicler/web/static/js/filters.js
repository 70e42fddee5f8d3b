// The attribute filter: KEY=VALUE conditions on span attributes and resource:KEY=VALUE on
// resource attributes (service.version, host.name...). They live in the URL as repeated
// attr=... (the API's own parameter) and go with every request, so the figures, charts,
// histogram, slowest calls and the compare table all show the same calls. Values on offer come
// from answers the page already has (the slowest calls, the compare table), never from an extra
// request. The server is the judge of a condition; the page only refuses text with no KEY=.

export const RESOURCE = 'resource:';
const OFFERED = 200; // most suggestions in the list

/** The key of a condition: the text before its first "=". */
export function conditionKey(text) {
  const i = text.indexOf('=');
  return i < 0 ? text : text.slice(0, i);
}

/** Typed text -> `{ condition }`, or `{ error }` with a sentence saying what to write. */
export function checkCondition(text) {
  const t = text.trim();
  const key = t.includes('=') ? conditionKey(t) : '';
  if (!key || key === RESOURCE) {
    return {
      error: `“${t}” is not a filter: write KEY=VALUE for a span attribute, or `
        + 'resource:KEY=VALUE for a resource attribute (resource:service.version=1.2).',
    };
  }
  return { condition: t };
}

/** `list` with `condition` added; one condition per key (a new value replaces the old). */
export function withCondition(list, condition) {
  const key = conditionKey(condition);
  return [...list.filter((c) => conditionKey(c) !== key), condition];
}

/** The condition selecting `value` of a compare key (`resource:K`, `attribute:K`). */
export function conditionFor(by, value) {
  if (by.startsWith(RESOURCE)) return `${by}=${value}`;
  if (by.startsWith('attribute:')) return `${by.slice('attribute:'.length)}=${value}`;
  return null;
}

/** An attribute value as the filter compares it: strings as themselves, others as JSON. */
export function valueText(v) {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** Draw the active conditions as chips, each with a button that removes it. */
export function renderChips(box, conditions) {
  box.textContent = '';
  for (const c of conditions) {
    const chip = document.createElement('span');
    chip.className = c.startsWith(RESOURCE) ? 'chip resource' : 'chip';
    chip.textContent = c;
    chip.dataset.condition = c;
    const remove = document.createElement('button');
    remove.className = 'chip-remove';
    remove.textContent = '×';
    remove.type = 'button';
    remove.dataset.remove = c;
    remove.setAttribute('aria-label', `Remove the filter ${c}`);
    chip.append(remove);
    box.append(chip);
  }
  box.hidden = !conditions.length;
}

/** Offer `KEY=VALUE` texts seen in the slowest calls and `extra` ones in the input's list. */
export function offerValues(datalist, calls, extra = []) {
  const seen = new Set(extra);
  for (const c of calls) {
    for (const [k, v] of Object.entries(c.resource || {})) {
      seen.add(`${RESOURCE}${k}=${valueText(v)}`);
    }
    for (const [k, v] of Object.entries(c.attributes || {})) seen.add(`${k}=${valueText(v)}`);
  }
  datalist.textContent = '';
  for (const text of [...seen].sort().slice(0, OFFERED)) datalist.append(new Option(text));
}

// Resource attributes every call of a service repeats (its name has its own column; the SDK's
// own name and version say nothing about the app): not shown on calls, not offered to compare.
export const QUIET_RESOURCE = /^(service\.name|telemetry\.sdk\..*)$/;
// The resource keys an operator compares by first: release, environment, host.
const FIRST = ['service.version', 'deployment.environment.name', 'deployment.environment',
  'host.name'];

function rank(key) {
  const i = FIRST.indexOf(key);
  return i < 0 ? FIRST.length : i;
}

/** Resource keys in the order an operator reads them: release, environment, host, the rest. */
export function byRank(a, b) {
  return rank(a) - rank(b) || a.localeCompare(b);
}

/** The compare keys the slowest calls carry: telling resource keys first (release, environment,
 * host, then the rest), then span attributes, then the service. */
export function compareKeys(calls) {
  const res = new Set();
  const attrs = new Set();
  for (const c of calls) {
    for (const k of Object.keys(c.resource || {})) if (!QUIET_RESOURCE.test(k)) res.add(k);
    for (const k of Object.keys(c.attributes || {})) attrs.add(`attribute:${k}`);
  }
  const resource = [...res].sort(byRank);
  return [...resource.map((k) => `${RESOURCE}${k}`), ...[...attrs].sort(), 'service'];
}

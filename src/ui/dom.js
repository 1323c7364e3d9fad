// Building DOM without markup strings. Everything Vigil shows comes from recorded traffic that an attacker may have
// written (prompts, model output, tool input, headers), so text only ever enters the page as text nodes. The lint
// configuration forbids innerHTML and friends in src/ui.

/**
 * Create an element. `attrs`: `class`, `on<event>` listeners, boolean `true` attributes, anything else with
 * setAttribute (never an event-handler attribute). Children: nodes, other values as {@link text}, arrays, null/false
 * (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'value') el.value = value;
    else el.setAttribute(key, value === true ? '' : text(value));
  }
  append(el, children);
  return el;
}

/**
 * Any recorded value as text: strings as they are, objects and arrays as their JSON. Recorded JSON is whatever a
 * client or an upstream sent, and an object where text was expected may have a `toString` or `valueOf` key that is
 * no function: String() and template literals then throw ("Cannot convert object to primitive value"). So a value is
 * never asked to convert itself; interpolate recorded values through this.
 */
export function text(value) {
  if (value == null) return '';
  if (typeof value === 'object') return JSON.stringify(value) ?? '';
  return String(value);
}

/** Append children (nodes, other values as text, nested arrays; null/false skipped). */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(text(child)));
  }
  return parent;
}

/** Remove every child of `el`. */
export function clear(el) {
  el.replaceChildren();
  return el;
}

/** A link to a route of the UI (`#/…`). */
export function link(route, ...children) {
  return h('a', { href: `#${route}` }, ...children);
}

/**
 * A search snippet with its matches (between « and », as the API marks them) wrapped in <mark>: split as text,
 * so a snippet holding markup stays text.
 */
export function highlighted(snippet) {
  const out = document.createDocumentFragment();
  const parts = String(snippet).split(/«|»/);
  // Odd positions are inside « »; an unbalanced marker just ends the last part as text.
  parts.forEach((part, i) => {
    if (part === '') return;
    out.append(i % 2 === 1 ? h('mark', {}, part) : document.createTextNode(part));
  });
  return out;
}

/** A time (epoch ms or ISO string) as local date and time, with the ISO value as a tooltip. */
export function time(value) {
  if (value == null) return h('span', { class: 'muted' }, '—');
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return h('span', {}, String(value));
  return h('time', { datetime: d.toISOString(), title: d.toISOString() }, d.toLocaleString());
}

/** "12 s ago"-style age of an epoch-ms instant. */
export function age(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Pretty JSON (or the string itself) in a <pre>. */
export function jsonBlock(value) {
  return h('pre', { class: 'json' }, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
}

/** A collapsible section; open by default when `open`. */
export function details(summary, open, ...children) {
  return h('details', { open }, h('summary', {}, summary), ...children);
}

/** A definition list from [label, value] pairs; values that are null/undefined are skipped. */
export function facts(pairs) {
  const dl = h('dl', { class: 'facts' });
  for (const [label, value] of pairs) {
    if (value == null || value === '') continue;
    dl.append(h('dt', {}, label), h('dd', {}, value));
  }
  return dl;
}

/** A table of header name → value. */
export function headerTable(headers) {
  if (!headers || Object.keys(headers).length === 0) return h('p', { class: 'muted' }, 'No headers recorded.');
  return h(
    'table',
    { class: 'headers' },
    h(
      'tbody',
      {},
      Object.entries(headers).map(([name, value]) =>
        h('tr', {}, h('th', {}, name), h('td', {}, Array.isArray(value) ? value.join(', ') : String(value))),
      ),
    ),
  );
}

/** An error panel with the API's own message. */
export function errorBox(err) {
  const status = err && typeof err.status === 'number' ? `${err.status}: ` : '';
  return h('div', { class: 'error', role: 'alert' }, `${status}${err && err.message ? err.message : String(err)}`);
}

/**
 * A "Load more" button in `container` that runs `loadPage` once (disabled while it runs); a failure replaces it with
 * the error, unless the view was left (`signal` aborted).
 */
export function loadMoreButton(container, loadPage, signal) {
  container.append(
    h(
      'button',
      {
        type: 'button',
        onclick: async (event) => {
          event.target.disabled = true;
          try {
            await loadPage();
          } catch (err) {
            if (!signal.aborted) container.replaceChildren(errorBox(err));
          }
        },
      },
      'Load more',
    ),
  );
}

/** A loading placeholder. */
export function loading(what = 'Loading…') {
  return h('p', { class: 'loading', 'aria-busy': 'true' }, what);
}

/** An outcome as a badge; anything but ok is highlighted. */
export function outcomeBadge(outcome) {
  if (!outcome) return h('span', { class: 'muted' }, '—');
  return h(
    'span',
    { class: `badge ${outcome === 'ok' ? 'ok' : outcome === 'in_progress' ? 'pending' : 'bad'}` },
    outcome,
  );
}

/** Who someone is, from a recorded principal or reader: name/email when known, then the subject. */
export function who(p) {
  if (!p) return '—';
  const extra = [p.email, p.name].filter(Boolean).join(', ');
  const subject = p.method === 'admin_token' ? `token ${p.subject}` : p.subject;
  return extra ? `${subject} (${extra})` : subject;
}

/**
 * The distinct callers of some exchanges (list items: callerSubject, callerMethod, callerIssuer), sorted. Session ids
 * are chosen by the clients, so callers can share one.
 */
export function distinctCallers(items) {
  const callers = new Map();
  for (const x of items) {
    const key = JSON.stringify([x.callerMethod ?? null, x.callerIssuer ?? null, x.callerSubject]);
    if (!callers.has(key)) callers.set(key, x);
  }
  const list = [...callers.values()];
  // Subjects are unique per method (and issuer) only: say how a repeated subject came in.
  const subjects = list.map((x) => x.callerSubject);
  return list
    .map((x) =>
      subjects.indexOf(x.callerSubject) !== subjects.lastIndexOf(x.callerSubject)
        ? `${x.callerSubject} (${[x.callerMethod, x.callerIssuer].filter(Boolean).join(' ')})`
        : String(x.callerSubject),
    )
    .sort();
}

/**
 * Callers as one line: the caller, or "2 callers: a, b" when they differ; `total` when only the first few are named
 * ("12 callers: a, b, … and 2 more").
 */
export function callersText(callers, total = callers.length) {
  if (callers.length === 0) return '—';
  if (total === 1) return callers[0];
  return `${total} callers: ${namesText(callers, total)}`;
}

/** Names as one line, saying how many more there are when only the first few are given. */
export function namesText(names, total = names.length) {
  if (names.length === 0) return '—';
  return total > names.length ? `${names.join(', ')} and ${total - names.length} more` : names.join(', ');
}

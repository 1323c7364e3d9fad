// Who used what: exchanges, tokens (cache reads and writes apart), their cost when the config prices models, failures
// and refusals per caller, connection, model or day (GET /api/v1/usage),
// with the list filters; each row links to the sessions it adds up. Above it, the connections' usage limits and what
// is used of each (GET /api/v1/limits), when there are any.

import { api, query } from './api.js';
import { centsText } from './exchange-turn.js';
import { append, clear, h, link, loading } from './dom.js';

const GROUPINGS = [
  ['caller', 'Caller'],
  ['connection', 'Connection'],
  ['model', 'Model'],
  ['day', 'Day (UTC)'],
  ['group', 'Group'],
];
const FILTERS = [
  ['since', 'Since', '2026-11-01'],
  ['until', 'Until', 'ISO time or epoch ms'],
  ['group', 'Group', 'ml-team'],
  ['connection', 'Connection', 'anthropic'],
];

function form(values) {
  const by = values.get('by') || 'caller';
  return h(
    'form',
    {
      class: 'filters',
      onsubmit: (event) => {
        event.preventDefault();
        const params = {};
        for (const [k, v] of new FormData(event.target)) params[k] = String(v).trim();
        location.hash = `#/usage${query(params)}`;
      },
    },
    h(
      'label',
      {},
      'By',
      h(
        'select',
        { name: 'by' },
        GROUPINGS.map(([value, label]) => h('option', { value, selected: value === by }, label)),
      ),
    ),
    FILTERS.map(([name, label, placeholder]) =>
      h('label', {}, label, h('input', { name, value: values.get(name) ?? '', placeholder, autocomplete: 'off' })),
    ),
    h('div', { class: 'filter-actions' }, h('button', { type: 'submit' }, 'Show')),
  );
}

/** The sessions a row adds up to: the list filtered by the row's key, and the report's own filters. */
function sessionsOf(by, key, values) {
  const filters = {};
  for (const [name] of FILTERS) filters[name] = values.get(name) ?? '';
  if (by === 'day') {
    filters.since = `${key}T00:00:00Z`;
    filters.until = new Date(Date.parse(`${key}T00:00:00Z`) + 86_400_000).toISOString();
  } else filters[by] = key;
  return `/sessions${query(filters)}`;
}

const count = new Intl.NumberFormat('en-US');

/** `1,234 of 2,000,000`, or a dash where the limit does not count it. */
function usedOf(used, max) {
  return max === null ? '—' : `${count.format(used)} of ${count.format(max)}`;
}

function windowOf(ms) {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
  ])
    if (ms % size === 0) return `${ms / size}${unit}`;
  return `${Math.round(ms / 1000)}s`;
}

/** The connections' usage limits (GET /api/v1/limits): what each caller used of each, and who is refused until when. */
function limitsTable(items) {
  const rows = [];
  // A column for budgets only when some limit is one.
  const costs = items.some((l) => l.cost !== null);
  for (const l of items) {
    const name = `${l.connection} · ${l.name} (${windowOf(l.windowMs)}${l.per === 'connection' ? ', shared' : ''})`;
    const usage = l.usage.length ? l.usage : [{ caller: null, tokens: 0, requests: 0, cost: 0, refusedUntil: null }];
    for (const u of usage) {
      rows.push(
        h(
          'tr',
          { class: u.refusedUntil ? 'refused' : '' },
          h('td', {}, name),
          h(
            'td',
            {},
            u.group !== undefined
              ? `group ${u.group}`
              : (u.caller ?? h('span', { class: 'muted' }, l.per === 'connection' ? 'all callers' : 'nobody yet')),
          ),
          h('td', { class: 'num' }, usedOf(u.tokens, l.tokens)),
          h('td', { class: 'num' }, usedOf(u.requests, l.requests)),
          costs
            ? h(
                'td',
                { class: 'num' },
                l.cost === null ? '—' : `${u.cost.toFixed(2)} of ${l.cost.toFixed(2)} ${l.currency ?? ''}`.trimEnd(),
              )
            : null,
          h('td', {}, u.refusedUntil ? `refused until ${new Date(u.refusedUntil).toLocaleString()}` : ''),
        ),
      );
    }
  }
  return h(
    'section',
    { class: 'limits' },
    h('h2', {}, 'Usage limits'),
    h(
      'table',
      { class: 'list limits' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['Limit', 'Caller', 'Tokens', 'Calls', ...(costs ? ['Cost'] : []), ''].map((t) => h('th', {}, t)),
        ),
      ),
      h('tbody', {}, rows),
    ),
  );
}

export async function renderUsage({ root, query: q, signal }) {
  const by = q.get('by') || 'caller';
  const status = h('div', { class: 'status' }, loading());
  root.append(
    h('h1', {}, 'Usage'),
    h('p', { class: 'hint' }, 'Exchanges and tokens recorded, largest first (days in order). Counts, never content.'),
    form(q),
    status,
  );
  const params = { by };
  for (const [name] of FILTERS) params[name] = q.get(name) ?? '';
  const [report, limits] = await Promise.all([api(`/usage${query(params)}`, { signal }), api('/limits', { signal })]);
  clear(status);
  if (limits.items.length) root.insertBefore(limitsTable(limits.items), status);
  if (report.items.length === 0) {
    status.append(h('p', { class: 'empty' }, 'No exchanges match.'));
    return;
  }
  const label = GROUPINGS.find(([value]) => value === by)?.[1] ?? by;
  const byCaller = by === 'caller';
  const priced = report.currency !== null;
  const heads = [
    label,
    ...(byCaller ? ['E-mail'] : []),
    'Exchanges',
    'Input tokens',
    'Cache reads',
    'Cache writes',
    'Output tokens',
    ...(priced ? [`Cost (${report.currency})`] : []),
    'Failed',
    'Refused',
    'In progress',
  ];
  // Through append, which leaves out the nulls of hints not given (the DOM's own would print "null").
  append(root, [
    h(
      'table',
      { class: 'list usage' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          heads.map((t) => h('th', {}, t)),
        ),
      ),
      h(
        'tbody',
        {},
        report.items.map((r) =>
          h(
            'tr',
            {},
            h(
              'td',
              {},
              r.key === null
                ? h('span', { class: 'muted' }, by === 'group' ? 'no group' : 'unknown')
                : link(sessionsOf(by, r.key, q), r.key),
            ),
            byCaller ? h('td', {}, r.email ?? '') : null,
            [r.exchanges, r.inputTokens, r.cacheReadTokens, r.cacheWriteTokens, r.outputTokens].map((n) =>
              h('td', { class: 'num' }, count.format(n)),
            ),
            priced ? costCell(r) : null,
            [r.failed, r.refused, r.inProgress].map((n) => h('td', { class: 'num' }, count.format(n))),
          ),
        ),
      ),
    ),
    report.truncated ? h('p', { class: 'hint' }, `The ${report.items.length} largest; more matched.`) : null,
    priced && report.items.some((r) => r.unpriced > 0)
      ? h(
          'p',
          { class: 'hint unpriced' },
          '* Leaves out exchanges of models the config does not price (pricing.models).',
        )
      : null,
  ]);
}

/** A row's cost to the cent (under a cent but not nothing: <0.01), marked when it leaves unpriced exchanges out. */
function costCell(r) {
  const text = centsText(r.cost);
  const title = r.unpriced
    ? `${count.format(r.unpriced)} exchange${r.unpriced === 1 ? '' : 's'} of models without a price not included`
    : `${r.cost}`;
  return h('td', { class: 'num cost', title }, `${text}${r.unpriced ? '*' : ''}`);
}

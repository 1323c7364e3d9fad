// Who used what: exchanges, tokens, failures and refusals per caller, connection, model or day (GET /api/v1/usage),
// with the list filters; each row links to the sessions it adds up.

import { api, query } from './api.js';
import { clear, h, link, loading } from './dom.js';

const GROUPINGS = [
  ['caller', 'Caller'],
  ['connection', 'Connection'],
  ['model', 'Model'],
  ['day', 'Day (UTC)'],
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
  const report = await api(`/usage${query(params)}`, { signal });
  clear(status);
  if (report.items.length === 0) {
    status.append(h('p', { class: 'empty' }, 'No exchanges match.'));
    return;
  }
  const label = GROUPINGS.find(([value]) => value === by)?.[1] ?? by;
  const byCaller = by === 'caller';
  const heads = [
    label,
    ...(byCaller ? ['E-mail'] : []),
    'Exchanges',
    'Input tokens',
    'Output tokens',
    'Failed',
    'Refused',
    'In progress',
  ];
  root.append(
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
              r.key === null ? h('span', { class: 'muted' }, 'unknown') : link(sessionsOf(by, r.key, q), r.key),
            ),
            byCaller ? h('td', {}, r.email ?? '') : null,
            [r.exchanges, r.inputTokens, r.outputTokens, r.failed, r.refused, r.inProgress].map((n) =>
              h('td', { class: 'num' }, String(n)),
            ),
          ),
        ),
      ),
    ),
    report.truncated ? h('p', { class: 'hint' }, `The ${report.items.length} largest; more matched.`) : null,
  );
}

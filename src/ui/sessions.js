// Sessions, newest activity first, with the API's filters (kept in the hash, so a filtered list can be bookmarked)
// and cursor paging.

import { api, query, uiConfig } from './api.js';
import { callersText, clear, distinctCallers, errorBox, h, link, loading, outcomeBadge, time } from './dom.js';

const FILTERS = [
  ['caller', 'Caller', 'subject'],
  ['group', 'Group', 'ml-team'],
  ['connection', 'Connection', 'anthropic'],
  ['model', 'Model', 'claude-sonnet-5-5'],
  ['masking', 'Masking type', 'aws_access_key'],
  ['stop_reason', 'Stop reason', 'refusal, max_tokens'],
  ['since', 'Since', '2025-01-15T09:00:00Z'],
  ['until', 'Until', 'ISO time or epoch ms'],
];

/** The filter form; `outcomes` are the server's (`/ui-config`), so the choice never differs from what it accepts. */
function filterForm(values, outcomes) {
  const inputs = FILTERS.map(([name, label, placeholder]) =>
    h('label', {}, label, h('input', { name, value: values.get(name) ?? '', placeholder, autocomplete: 'off' })),
  );
  const outcome = h(
    'select',
    { name: 'outcome' },
    ['', ...outcomes].map((o) => h('option', { value: o, selected: (values.get('outcome') ?? '') === o }, o || 'any')),
  );
  return h(
    'form',
    {
      class: 'filters',
      onsubmit: (event) => {
        event.preventDefault();
        const data = new FormData(event.target);
        const params = {};
        for (const [k, v] of data) params[k] = String(v).trim();
        location.hash = `#/sessions${query(params)}`;
      },
    },
    inputs,
    h('label', {}, 'Outcome', outcome),
    h('div', { class: 'filter-actions' }, h('button', { type: 'submit' }, 'Filter'), ' ', link('/sessions', 'Clear')),
  );
}

/**
 * A row's caller, model and outcome cells, from the session's `recent` exchanges as the API summarises them: callers
 * may share a session (its id is the client's choice), and the summary covers the newest ones only.
 */
function recentCells(s) {
  const { recent } = s;
  const more = recent.exchanges < s.exchanges ? ` (newest ${recent.exchanges})` : '';
  return [
    h('td', {}, `${callersText(distinctCallers(recent.callers))}${more}`),
    h('td', {}, recent.models.join(', ') || '—'),
    h(
      'td',
      {},
      Object.entries(recent.outcomes).flatMap(([o, n]) => [outcomeBadge(o), ` ${n} `]),
      more,
    ),
  ];
}

export async function renderSessions({ root, query: q, signal }) {
  const filters = {};
  for (const [name] of FILTERS) filters[name] = q.get(name) ?? '';
  filters.outcome = q.get('outcome') ?? '';
  const filtered = Object.values(filters).some(Boolean);

  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'list sessions' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['Session', 'Caller', 'Connection', 'Model', 'Exchanges', 'Tokens in / out', 'Last activity', 'Outcomes'].map(
          (t) => h('th', {}, t),
        ),
      ),
    ),
    tbody,
  );
  const status = h('div', { class: 'status' }, loading());
  const more = h('div', { class: 'more' });
  const { outcomes } = await uiConfig();
  root.append(h('h1', {}, 'Sessions'), filterForm(q, outcomes), status, table, more);

  let cursor = null;
  let shown = 0;
  const loadPage = async () => {
    const page = await api(`/sessions${query({ ...filters, cursor, limit: 50 })}`, { signal });
    clear(status);
    for (const s of page.items) {
      const [callerCell, modelCell, outcomeCell] = recentCells(s);
      tbody.append(
        h(
          'tr',
          { 'data-session': s.id },
          h('td', {}, link(`/sessions/${encodeURIComponent(s.id)}`, h('code', {}, s.id))),
          callerCell,
          h('td', {}, s.connection),
          modelCell,
          h('td', { class: 'num' }, String(s.exchanges)),
          h('td', { class: 'num' }, `${s.inputTokens} / ${s.outputTokens}`),
          h('td', {}, time(s.lastAt)),
          outcomeCell,
        ),
      );
    }
    shown += page.items.length;
    cursor = page.next_cursor;
    clear(more);
    if (cursor) more.append(h('button', { type: 'button', onclick: onMore }, 'Load more'));
    if (shown === 0) {
      table.hidden = true;
      const proxy = `${location.protocol}//${location.hostname}:${Number(location.port || 80) - 1}`;
      status.append(
        h(
          'p',
          { class: 'empty' },
          filtered
            ? 'No sessions match these filters.'
            : `No sessions recorded yet — point ANTHROPIC_BASE_URL at the gateway (by default ${proxy}, the port below this one) and make a call.`,
        ),
      );
    }
  };
  async function onMore(event) {
    event.target.disabled = true;
    event.target.textContent = 'Loading…';
    try {
      await loadPage();
    } catch (err) {
      if (signal.aborted) return;
      clear(more);
      more.append(errorBox(err), h('button', { type: 'button', onclick: onMore }, 'Retry'));
    }
  }
  try {
    await loadPage();
  } catch (err) {
    clear(status);
    throw err;
  }
}

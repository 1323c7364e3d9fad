// Who read which recording, when, from where (admins only; the API says so when the caller is not one).

import { api, query } from './api.js';
import { clear, h, link, loadMoreButton, loading, time, who } from './dom.js';

/** What a read was of, linked to its page; an approval's id as it is (the UI has no page for one approval). */
function target(what, id) {
  if (what === 'session' || what === 'export') return link(`/sessions/${encodeURIComponent(id)}`, h('code', {}, id));
  if (what === 'approval') return h('code', {}, id);
  return link(`/exchanges/${encodeURIComponent(id)}`, h('code', {}, id));
}

export async function renderAccessLog({ root, signal }) {
  const tbody = h('tbody');
  const status = h('div', {}, loading());
  const more = h('div', { class: 'more' });
  const table = h(
    'table',
    { class: 'list access-log' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['When', 'Who', 'Role', 'What', 'Which', 'Query', 'From'].map((t) => h('th', {}, t)),
      ),
    ),
    tbody,
  );
  root.append(
    h('h1', {}, 'Access log'),
    h('p', { class: 'hint' }, 'Every read of recorded content through the admin API, newest first.'),
    status,
    table,
    more,
  );
  let cursor = null;
  let shown = 0;
  const loadPage = async () => {
    const page = await api(`/access-log${query({ cursor, limit: 100 })}`, { signal });
    clear(status);
    for (const e of page.items) {
      const d = e.data;
      tbody.append(
        h(
          'tr',
          {},
          h('td', {}, time(e.at)),
          h('td', {}, who(d.actor)),
          h('td', {}, d.role),
          h('td', {}, d.what),
          h(
            'td',
            { class: 'ids' },
            d.ids.slice(0, 5).flatMap((id) => [target(d.what, id), ' ']),
            d.ids.length > 5 ? `+${d.ids.length - 5} more` : null,
          ),
          h('td', {}, d.query ?? ''),
          h('td', {}, d.address ?? ''),
        ),
      );
    }
    shown += page.items.length;
    cursor = page.next_cursor;
    clear(more);
    if (cursor) loadMoreButton(more, loadPage, signal);
    if (shown === 0) {
      table.hidden = true;
      status.append(h('p', { class: 'empty' }, 'Nobody has read a recording yet.'));
    }
  };
  try {
    await loadPage();
  } catch (err) {
    // Only the error (a 403 for non-admins), not an empty table under it.
    clear(status);
    table.hidden = true;
    throw err;
  }
}

// Full-text search over prompts, responses and tool calls. Snippets mark matches with « », which become <mark>.

import { api, query } from './api.js';
import { clear, h, highlighted, link, loadMoreButton, loading, time } from './dom.js';

export async function renderSearch({ root, query: q, signal }) {
  const text = q.get('q') ?? '';
  const input = h('input', {
    type: 'search',
    name: 'q',
    value: text,
    placeholder: 'words "a phrase" prefix*',
    'aria-label': 'Search query',
    autocomplete: 'off',
  });
  root.append(
    h('h1', {}, 'Search'),
    h(
      'form',
      {
        class: 'search',
        role: 'search',
        onsubmit: (event) => {
          event.preventDefault();
          location.hash = `#/search${query({ q: input.value.trim() })}`;
        },
      },
      input,
      ' ',
      h('button', { type: 'submit' }, 'Search'),
    ),
    h(
      'p',
      { class: 'hint' },
      'All words must match (whole words, any case); "quoted phrases" match in order; word* matches a prefix. Every search is recorded in the access log.',
    ),
  );
  input.focus();
  if (!text) return;

  const list = h('ol', { class: 'hits' });
  const status = h('div', {}, loading('Searching…'));
  const more = h('div', { class: 'more' });
  root.append(status, list, more);
  let cursor = null;
  let shown = 0;
  const loadPage = async () => {
    const page = await api(`/search${query({ q: text, cursor, limit: 25 })}`, { signal });
    clear(status);
    for (const hit of page.items) {
      list.append(
        h(
          'li',
          { class: 'hit' },
          h(
            'div',
            { class: 'hit-meta' },
            time(hit.startedAt),
            ' · ',
            hit.callerSubject,
            ' · session ',
            link(`/sessions/${encodeURIComponent(hit.sessionId)}`, h('code', {}, hit.sessionId)),
          ),
          h(
            'a',
            { class: 'snippet', href: `#/exchanges/${encodeURIComponent(hit.exchangeId)}` },
            highlighted(hit.snippet),
          ),
        ),
      );
    }
    shown += page.items.length;
    cursor = page.next_cursor;
    clear(more);
    if (cursor) loadMoreButton(more, loadPage, signal);
    if (shown === 0) status.append(h('p', { class: 'empty' }, `Nothing recorded matches ${text}.`));
  };
  try {
    await loadPage();
  } catch (err) {
    clear(status);
    throw err;
  }
}

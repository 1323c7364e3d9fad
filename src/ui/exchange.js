// One exchange in full: request metadata, headers and body; response status, headers, assembled message; and for
// streams the recorded server-sent events with their timing.

import { api } from './api.js';
import { append, clear, details, facts, h, headerTable, jsonBlock, link, outcomeBadge, time, who } from './dom.js';
import { content, errorNote, timingText, usageText } from './blocks.js';
import { isRefusal } from './exchange-turn.js';

/** Events shown before "Show all": long streams have thousands. */
const EVENTS_SHOWN = 100;
/** Bodies larger than this (as pretty JSON) start collapsed. */
const OPEN_BODY_CHARS = 4000;

function eventRows(events, from, to) {
  return events
    .slice(from, to)
    .map((e, i) =>
      h(
        'tr',
        {},
        h('td', { class: 'num' }, String(from + i)),
        h('td', {}, h('code', {}, e.type)),
        h('td', { class: 'num' }, String(e.offset_ms)),
        h('td', {}, h('code', { class: 'event-data' }, typeof e.data === 'string' ? e.data : JSON.stringify(e.data))),
      ),
    );
}

function eventsSection(events) {
  const tbody = h('tbody', {}, eventRows(events, 0, EVENTS_SHOWN));
  const section = h(
    'section',
    { class: 'events' },
    h('h2', {}, `Stream events (${events.length})`),
    h(
      'table',
      { class: 'list events' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['#', 'type', 'offset ms', 'data'].map((t) => h('th', {}, t)),
        ),
      ),
      tbody,
    ),
  );
  if (events.length > EVENTS_SHOWN) {
    const button = h(
      'button',
      {
        type: 'button',
        onclick: () => {
          tbody.append(...eventRows(events, EVENTS_SHOWN, events.length));
          button.remove();
        },
      },
      `Show all ${events.length} events`,
    );
    section.append(button);
  }
  return section;
}

function body(label, value, size) {
  if (value == null) return h('p', { class: 'muted' }, `${label}: none recorded.`);
  const pretty = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  return details(`${label}${size ? ` (${size} bytes)` : ''}`, pretty.length <= OPEN_BODY_CHARS, jsonBlock(pretty));
}

export async function renderExchange({ root, params, signal }) {
  const id = params[0];
  root.append(h('p', { class: 'crumbs' }, link('/sessions', 'Sessions'), ' / …'));
  const x = await api(`/exchanges/${encodeURIComponent(id)}`, { signal });
  const { request: req, response: res } = x;
  // Through append (not replaceChildren): it skips the null of a section that is not there, where replaceChildren
  // would print "null".
  append(clear(root), [
    h(
      'p',
      { class: 'crumbs' },
      link('/sessions', 'Sessions'),
      ' / ',
      link(`/sessions/${encodeURIComponent(x.session_id)}`, h('code', {}, x.session_id)),
      ' / ',
      h('code', {}, x.id),
    ),
    h(
      'h1',
      {},
      'Exchange ',
      h('code', {}, x.id),
      ' ',
      outcomeBadge(x.outcome),
      // A 200 whose answer the model declined (its safety classifiers): see session.js.
      isRefusal(x.response.stop_reason)
        ? [' ', h('span', { class: 'badge bad', title: 'stop_reason: refusal' }, 'refused')]
        : null,
    ),
    facts([
      ['Session', link(`/sessions/${encodeURIComponent(x.session_id)}`, x.session_id)],
      ['Connection', x.connection],
      [
        'Caller',
        `${who(x.caller)}${x.caller.method === 'anonymous' ? '' : ` via ${x.caller.method}`}${x.caller.groups && x.caller.groups.length ? ` · groups ${x.caller.groups.join(', ')}` : ''}`,
      ],
      ['Client', [x.client && x.client.address, x.client && x.client.userAgent].filter(Boolean).join(' · ')],
      ['Agent', x.agent ? JSON.stringify(x.agent) : null],
      ['Started', time(x.started_at)],
      ['Ended', time(x.ended_at)],
      ['Model', x.model],
      ['Tokens', usageText(x.usage)],
      ['Timing', timingText(res)],
    ]),
    h(
      'section',
      { class: 'request' },
      h('h2', {}, 'Request'),
      h('p', {}, h('code', {}, `${req.method} ${req.path}${req.query ? `?${req.query}` : ''}`)),
      details('Request headers', false, headerTable(req.headers)),
      body('Request body', req.body, req.body_size),
    ),
    h(
      'section',
      { class: 'response' },
      h('h2', {}, 'Response'),
      facts([
        ['Status', res.status == null ? '—' : String(res.status)],
        ['Streamed', res.stream ? 'yes' : 'no'],
        ['Stop reason', res.stop_reason],
      ]),
      res.error ? errorNote(res.error) : null,
      details('Response headers', false, headerTable(res.headers)),
      res.message
        ? h(
            'div',
            { class: 'turn assistant' },
            h('div', { class: 'role' }, 'assembled message'),
            content(res.message.content),
          )
        : null,
      res.message ? details('Assembled message (JSON)', false, jsonBlock(res.message)) : null,
      res.stream ? null : body('Response body', res.body),
    ),
    res.events.length ? eventsSection(res.events) : null,
  ]);
}

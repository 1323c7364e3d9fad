// One session as a transcript: for each exchange, the turn it added, the assistant's answer, and what it cost; with
// export (JSONL, Markdown) and verification of the session's records.

import { api, download, query } from './api.js';
import {
  callersText,
  clear,
  distinctCallers,
  errorBox,
  facts,
  h,
  link,
  loadMoreButton,
  loading,
  namesText,
  outcomeBadge,
  time,
  who,
} from './dom.js';
import { answer, lastTurn, maskingText, timingText, usageText } from './blocks.js';
import { centsText, isRefusal } from './exchange-turn.js';

/** Exchanges per page: a long agent session has thousands, each resending the conversation so far. */
const PAGE = 20;

/** Whether the model declined to answer, by the server's own rule (exchange-turn.ts). */
const refused = (x) => isRefusal(x.response.stop_reason);

function exchangeCard(x, summary, index) {
  const masking = maskingText(summary && summary.masking);
  return h(
    'article',
    {
      class: `exchange-card${x.outcome !== 'ok' || refused(x) ? ' not-ok' : ''}`,
      'data-exchange': x.id,
    },
    h(
      'header',
      {},
      h('span', { class: 'index' }, `#${index + 1}`),
      ' ',
      time(x.started_at),
      ' ',
      h('span', { class: 'caller', title: 'Caller' }, who(x.caller)),
      ' ',
      h('span', { class: 'model' }, x.model ?? 'no model'),
      ' ',
      outcomeBadge(x.outcome),
      ' ',
      // A 200 whose answer the model declined (its safety classifiers): what an auditor reads a session for.
      refused(x) ? [h('span', { class: 'badge bad', title: 'stop_reason: refusal' }, 'refused'), ' '] : null,
      link(`/exchanges/${encodeURIComponent(x.id)}`, 'Exchange details'),
    ),
    lastTurn(x.request.body),
    answer(x),
    facts([
      ['Request', `${x.request.method} ${x.request.path}${x.response.stream ? ' (stream)' : ''}`],
      ['Status', x.response.status == null ? null : String(x.response.status)],
      ['Stop reason', x.response.stop_reason],
      ['Tokens', usageText(x.usage)],
      ['Timing', timingText(x.response)],
      ['Masked', masking],
    ]),
  );
}

/** An exchange's card, or in its place the reason it could not be drawn: one odd recording must not hide the rest. */
function safeCard(x, summary, index) {
  try {
    return exchangeCard(x, summary, index);
  } catch (err) {
    return h(
      'article',
      { class: 'exchange-card not-ok', 'data-exchange': x.id },
      h(
        'header',
        {},
        h('span', { class: 'index' }, `#${index + 1}`),
        ' ',
        link(`/exchanges/${encodeURIComponent(x.id)}`, 'Exchange details'),
      ),
      errorBox(new Error(`This exchange could not be shown: ${err.message}`)),
    );
  }
}

/**
 * The session's facts, from its first page: what the API adds up for the whole session (counts, the first few callers
 * and connections), and the client of its first exchange.
 */
function sessionFacts(page) {
  const { session } = page;
  const first = page.exchanges[0];
  const callers = distinctCallers(session.callers);
  const dl = facts([
    [session.callerCount > 1 ? 'Callers' : 'Caller', callersText(callers, session.callerCount)],
    [
      session.connectionCount > 1 ? 'Connections' : 'Connection',
      namesText(session.connections, session.connectionCount),
    ],
    [
      'Client',
      first &&
        [first.client && first.client.address, first.client && first.client.userAgent].filter(Boolean).join(' · '),
    ],
    ['Agent', first && first.agent ? JSON.stringify(first.agent) : null],
    ['Exchanges', String(session.exchanges)],
    ['Tokens', tokensText(session)],
    ['Cost', session.currency === null ? null : costText(session)],
  ]);
  dl.classList.add('session-facts');
  return dl;
}

/** `in 12,345 (of which cache reads 10,000, writes 2,000) · out 678`, as an exchange's line says it (usageText). */
function tokensText(s) {
  const n = (x) => x.toLocaleString('en-US');
  const cache = [
    s.cacheReadTokens ? `cache reads ${n(s.cacheReadTokens)}` : null,
    s.cacheWriteTokens ? `writes ${n(s.cacheWriteTokens)}` : null,
  ].filter(Boolean);
  return `in ${n(s.inputTokens)}${cache.length ? ` (of which ${cache.join(', ')})` : ''} · out ${n(s.outputTokens)}`;
}

/** `0.42 USD`, with what it leaves out: exchanges of models the config does not price. */
function costText(s) {
  const amount = centsText(s.cost);
  const left = s.unpriced
    ? ` (not counting ${s.unpriced} exchange${s.unpriced === 1 ? '' : 's'} of unpriced models)`
    : '';
  return `${amount} ${s.currency}${left}`;
}

export async function renderSession({ root, params, signal }) {
  const id = params[0];
  const verifyOut = h('div', { class: 'verify-result' });
  const exportOut = h('div', { class: 'export-result' });
  const exportButton = (format, label) =>
    h(
      'button',
      {
        type: 'button',
        onclick: async (event) => {
          exportOut.replaceChildren();
          event.target.disabled = true;
          try {
            const ext = format === 'jsonl' ? 'jsonl' : 'md';
            await download(`/sessions/${encodeURIComponent(id)}/export?format=${format}`, `session-${id}.${ext}`);
          } catch (err) {
            exportOut.append(errorBox(err));
          } finally {
            event.target.disabled = false;
          }
        },
      },
      label,
    );
  const verifyButton = h(
    'button',
    {
      type: 'button',
      onclick: async () => {
        verifyOut.replaceChildren(loading('Verifying…'));
        try {
          const r = await api(`/sessions/${encodeURIComponent(id)}/verify`, { signal });
          verifyOut.replaceChildren(
            h(
              'div',
              { class: r.ok ? 'ok-box' : 'error', role: 'status' },
              r.ok
                ? `Verified: ${r.records} records of ${r.exchanges} exchanges are intact${
                    r.scope === 'caller' ? ' (your own exchanges: other callers’ are not checked for you)' : ''
                  }.`
                : `BROKEN: ${r.problems.length} problem(s) in ${r.records} records.`,
            ),
            r.problems.length
              ? h(
                  'ul',
                  { class: 'problems' },
                  r.problems.map((p) => h('li', {}, `${p.problem} (${p.chain} #${p.chainSeq ?? '?'}): ${p.detail}`)),
                )
              : null,
          );
        } catch (err) {
          if (!signal.aborted) verifyOut.replaceChildren(errorBox(err));
        }
      },
    },
    'Verify session',
  );

  const status = h('div', {}, loading());
  const transcript = h('div', { class: 'transcript' });
  const more = h('div', { class: 'more' });
  root.append(
    h('p', { class: 'crumbs' }, link('/sessions', 'Sessions'), ' / ', h('code', {}, id)),
    h('h1', {}, 'Session ', h('code', {}, id)),
    h(
      'div',
      { class: 'actions' },
      exportButton('jsonl', 'Export JSONL'),
      ' ',
      exportButton('markdown', 'Export Markdown'),
      ' ',
      verifyButton,
    ),
    exportOut,
    verifyOut,
    status,
    transcript,
    more,
  );

  // A page of full exchanges at a time, oldest first (the whole session at once can be tens of MB), each page with
  // its exchanges' summaries and where it starts in the session; the first also with what the whole session adds up
  // to (the API leaves that off later pages: it goes over every exchange of the session).
  // The first page is the one read without a cursor; a page's summaries are its exchanges', in the same order.
  let cursor = null;
  const loadPage = async () => {
    const page = await api(`/sessions/${encodeURIComponent(id)}${query({ limit: PAGE, cursor })}`, { signal });
    if (cursor === null) status.replaceChildren(sessionFacts(page));
    page.exchanges.forEach((x, i) => transcript.append(safeCard(x, page.summaries[i], page.offset + i)));
    cursor = page.next_cursor;
    clear(more);
    if (cursor) loadMoreButton(more, loadPage, signal);
  };
  try {
    await loadPage();
  } catch (err) {
    clear(status);
    throw err;
  }
}

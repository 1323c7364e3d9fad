// One session as a transcript: for each exchange, the turn it added, the assistant's answer, and what it cost; with
// export (JSONL, Markdown) and verification of the session's records.

import { api, download } from './api.js';
import { errorBox, facts, h, link, loading, outcomeBadge, time, who } from './dom.js';
import { answer, lastTurn, maskingText, timingText, usageText } from './blocks.js';

function exchangeCard(x, summary, index) {
  const masking = maskingText(summary && summary.masking);
  return h(
    'article',
    { class: `exchange-card${x.outcome !== 'ok' ? ' not-ok' : ''}`, 'data-exchange': x.id },
    h(
      'header',
      {},
      h('span', { class: 'index' }, `#${index + 1}`),
      ' ',
      time(x.started_at),
      ' ',
      h('span', { class: 'model' }, x.model ?? 'no model'),
      ' ',
      outcomeBadge(x.outcome),
      ' ',
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
                ? `Verified: ${r.records} records of ${r.exchanges} exchanges are intact.`
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
  );

  const session = await api(`/sessions/${encodeURIComponent(id)}`, { signal });
  status.replaceChildren();
  const summaries = new Map(session.summaries.map((s) => [s.id, s]));
  const first = session.exchanges[0];
  if (first) {
    status.append(
      facts([
        ['Caller', who(first.caller)],
        ['Connection', first.connection],
        [
          'Client',
          [first.client && first.client.address, first.client && first.client.userAgent].filter(Boolean).join(' · '),
        ],
        ['Agent', first.agent ? JSON.stringify(first.agent) : null],
        ['Exchanges', String(session.exchanges.length)],
      ]),
    );
  }
  root.append(
    h(
      'div',
      { class: 'transcript' },
      session.exchanges.map((x, i) => exchangeCard(x, summaries.get(x.id), i)),
    ),
  );
}

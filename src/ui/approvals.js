// Calls held for approval, refreshed every 2 s. Approve or deny with an optional reason (a denial needs one; the
// caller receives it). Who may decide is the gateway's rule (approver groups, never one's own call): when it
// refuses, its message is shown on the card.

import { api } from './api.js';
import { age, errorBox, facts, h, link, time, who } from './dom.js';

const REFRESH_MS = 2000;

function card(a, onDecided) {
  const reason = h('input', {
    name: 'reason',
    placeholder: 'Reason (required to deny)',
    autocomplete: 'off',
    'aria-label': 'Reason',
  });
  const grantMax = Math.floor((a.rule.grantMaxMs ?? 0) / 60_000);
  const grant =
    grantMax > 0
      ? h('input', {
          name: 'grant',
          type: 'number',
          min: 1,
          max: grantMax,
          placeholder: `≤ ${grantMax}`,
          'aria-label': 'Grant minutes',
        })
      : null;
  const out = h('div', { class: 'decision' });
  const waiting = h('span', { class: 'waiting' }, age(a.heldAt));
  const decide = async (decision, button) => {
    out.replaceChildren();
    const body = {};
    if (reason.value.trim()) body.reason = reason.value.trim();
    if (grant && grant.value) body.grant_minutes = Number(grant.value);
    for (const b of buttons) b.disabled = true;
    try {
      const result = await api(`/approvals/${encodeURIComponent(a.id)}/${decision}`, { method: 'POST', body });
      out.append(
        h(
          'div',
          { class: 'ok-box', role: 'status' },
          `${decision === 'approve' ? 'Approved' : 'Denied'} — status now ${result.status}.`,
        ),
      );
      onDecided(a.id);
    } catch (err) {
      out.append(errorBox(err));
      for (const b of buttons) b.disabled = false;
    }
    button.blur();
  };
  const approve = h(
    'button',
    { type: 'button', class: 'approve', onclick: (e) => decide('approve', e.target) },
    'Approve',
  );
  const deny = h('button', { type: 'button', class: 'deny', onclick: (e) => decide('deny', e.target) }, 'Deny');
  const buttons = [approve, deny];
  const s = a.request;
  const el = h(
    'article',
    { class: 'approval', 'data-approval': a.id },
    h(
      'header',
      {},
      h('strong', {}, a.rule.name),
      ' — ',
      who(a.caller),
      ' on ',
      h('code', {}, a.connection),
      ' · waiting ',
      waiting,
    ),
    a.rule.message ? h('p', {}, a.rule.message) : null,
    facts([
      ['Approval', h('code', {}, a.id)],
      ['Session', link(`/sessions/${encodeURIComponent(a.sessionId)}`, h('code', {}, a.sessionId))],
      ['Held at', time(a.heldAt)],
      ['Expires', time(a.expiresAt)],
      ['Model', s.model],
      ['Max tokens', s.maxTokens == null ? null : String(s.maxTokens)],
      ['Messages', String(s.messages)],
      ['Tools offered', s.toolsOffered.join(', ')],
      ['Tools used', s.toolsUsed.join(', ')],
      ['Masked', s.masked.join(', ')],
      ['Matched', a.matched.join(', ')],
      ['Approvals', a.rule.approvalsRequired > 1 ? `${a.approvals.length} of ${a.rule.approvalsRequired}` : null],
      ['Approvers', a.rule.approverGroups.length ? a.rule.approverGroups.join(', ') : null],
    ]),
    h('div', { class: 'role' }, 'Latest turn (masked)'),
    h('div', { class: 'block text' }, s.lastTurn),
    s.excerpts.length
      ? h(
          'ul',
          { class: 'excerpts' },
          s.excerpts.map((x) => h('li', {}, x)),
        )
      : null,
    h('div', { class: 'decide' }, reason, grant ? [' Grant minutes ', grant] : null, ' ', approve, ' ', deny),
    out,
  );
  return { el, tick: () => waiting.replaceChildren(age(a.heldAt)) };
}

export async function renderApprovals({ root, signal, cleanup }) {
  const list = h('div', { class: 'approvals' });
  const status = h('div', { class: 'status', 'aria-live': 'polite' });
  root.append(
    h('h1', {}, 'Approvals'),
    h(
      'p',
      { class: 'hint' },
      'Calls held by approval rules wait here; the client sees nothing until someone decides. Refreshed every 2 s.',
    ),
    status,
    list,
  );
  // Cards stay in place across refreshes so a reason being typed is not wiped out.
  const cards = new Map();
  const decided = new Set();
  let timer = null;
  const refresh = async () => {
    try {
      const { items } = await api('/approvals', { signal });
      const ids = new Set(items.map((a) => a.id));
      for (const [id, c] of cards) {
        if (!ids.has(id) && !decided.has(id)) {
          c.el.remove();
          cards.delete(id);
        }
      }
      for (const a of items) {
        const known = cards.get(a.id);
        if (known) known.tick();
        else {
          const c = card(a, (id) => decided.add(id));
          cards.set(a.id, c);
          list.append(c.el);
        }
      }
      status.replaceChildren(
        items.length === 0
          ? h('p', { class: 'empty' }, 'Nothing is waiting for approval.')
          : h('p', { class: 'muted' }, `${items.length} waiting.`),
      );
    } catch (err) {
      if (signal.aborted) return;
      status.replaceChildren(errorBox(err));
      // Approvals not enabled on this gateway: nothing will change by asking again.
      if (err.status === 404) return;
    }
    if (!signal.aborted) timer = setTimeout(refresh, REFRESH_MS);
  };
  cleanup(() => clearTimeout(timer));
  await refresh();
}

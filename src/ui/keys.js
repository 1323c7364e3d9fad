// Gateway keys (admins): create one for a service — shown once, here, with a button to copy it — list them as
// authentication has them, rotate one (a new key of the same name; the old one works out an overlap), revoke one. The API says so when the person is not an admin.

import { api } from './api.js';
import { clear, errorBox, h, time } from './dom.js';

function field(label, name, placeholder) {
  const input = h('input', { name, placeholder, autocomplete: 'off', 'aria-label': label });
  return { input, row: h('label', {}, h('span', {}, label), input) };
}

/** The key just created (or made by a rotation): the only time anyone sees it. */
function shownOnce(created, what = `Key "${created.name}" created.`) {
  const code = h('code', { class: 'new-key', 'aria-label': 'New key' }, created.key);
  const copied = h('span', { role: 'status' });
  const copy = h(
    'button',
    {
      type: 'button',
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(created.key);
          copied.textContent = 'Copied.';
        } catch {
          copied.textContent = 'Select the key and copy it.';
        }
      },
    },
    'Copy',
  );
  return h(
    'div',
    { class: 'ok-box' },
    h('p', {}, `${what} It is shown once: store it now (e.g. as the service's ANTHROPIC_API_KEY).`),
    h('p', {}, code, ' ', copy, ' ', copied),
  );
}

export async function renderKeys({ root, signal }) {
  const name = field('Name', 'name', 'ci-nightly');
  const connections = field('Connections', 'connections', 'every connection (or: anthropic, prod)');
  const owner = field('Owner', 'owner', 'you (or: platform@example.com)');
  const expires = field('Expires', 'expires', 'never (or: 30d, 12h, 90m)');
  const result = h('div', { class: 'key-result' });
  const create = h('button', { type: 'submit' }, 'Create key');
  const form = h(
    'form',
    {
      class: 'key-form',
      onsubmit: async (e) => {
        e.preventDefault();
        clear(result);
        const body = { name: name.input.value.trim() };
        const conns = connections.input.value
          .split(',')
          .map((c) => c.trim())
          .filter(Boolean);
        if (conns.length) body.connections = conns;
        if (owner.input.value.trim()) body.owner = owner.input.value.trim();
        if (expires.input.value.trim()) body.expires = expires.input.value.trim();
        create.disabled = true;
        try {
          const created = await api('/keys', { method: 'POST', body, signal });
          result.append(shownOnce(created));
          name.input.value = '';
          await load();
        } catch (err) {
          result.append(errorBox(err));
        } finally {
          create.disabled = false;
        }
      },
    },
    name.row,
    connections.row,
    owner.row,
    expires.row,
    create,
  );
  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'list keys' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['Name', 'State', 'Owner', 'Connections', 'Created', 'Expires', 'Id', ''].map((t) => h('th', {}, t)),
      ),
    ),
    tbody,
  );
  const status = h('div');
  root.append(
    h('h1', {}, 'Gateway keys'),
    h(
      'p',
      { class: 'hint' },
      'Keys for services without an identity-provider token. Only a key’s SHA-256 is stored; creating, rotating and ' +
        'revoking one are ledger records naming who did it.',
    ),
    form,
    result,
    status,
    table,
  );

  const revoke = async (k, button, out) => {
    const also = k.revokedAt !== null ? ' (with the key that replaced it: the whole name is revoked)' : '';
    if (!confirm(`Revoke key "${k.name}"${also}? Its calls are refused from the next one on.`)) return;
    button.disabled = true;
    try {
      await api(`/keys/${encodeURIComponent(k.name)}/revoke`, { method: 'POST', signal });
      await load();
    } catch (err) {
      out.append(errorBox(err));
      button.disabled = false;
    }
  };

  const rotate = async (k, button, out) => {
    const overlap = prompt(
      `Rotate key "${k.name}": a new key of the same name, owner and connections. How long may the old one keep ` +
        'working, while the new one is put in place? (0: not at all; e.g. 1h, 12h, 7d)',
      '1h',
    );
    if (overlap === null) return;
    button.disabled = true;
    try {
      const rotated = await api(`/keys/${encodeURIComponent(k.name)}/rotate`, {
        method: 'POST',
        body: { overlap: overlap.trim() },
        signal,
      });
      const until =
        rotated.replaced.revokedAt <= rotated.createdAt
          ? 'is revoked'
          : `keeps working until ${new Date(rotated.replaced.revokedAt).toLocaleString()}`;
      clear(result);
      result.append(
        shownOnce(rotated, `Key "${rotated.name}" rotated: the old one (${rotated.replaced.id}) ${until}.`),
      );
      await load();
    } catch (err) {
      out.append(errorBox(err));
      button.disabled = false;
    }
  };

  const load = async () => {
    const { items } = await api('/keys', { signal });
    clear(tbody);
    clear(status);
    table.hidden = items.length === 0;
    if (items.length === 0) status.append(h('p', { class: 'empty' }, 'No gateway keys yet.'));
    for (const k of items.sort((a, b) => b.createdAt - a.createdAt)) {
      const cell = h('td');
      // A key rotated with an overlap is live until its revocation comes; the name's current key is the one to rotate.
      const rotating = k.state === 'live' && k.revokedAt !== null;
      if (k.state === 'live' && !rotating) {
        const button = h('button', { type: 'button' }, 'Rotate');
        button.onclick = () => rotate(k, button, cell);
        cell.append(button, ' ');
      }
      if (k.state === 'live') {
        const button = h('button', { type: 'button', class: 'deny' }, 'Revoke');
        button.onclick = () => revoke(k, button, cell);
        cell.append(button);
      }
      tbody.append(
        h(
          'tr',
          { 'data-key': k.name, class: k.state === 'live' ? null : 'inactive' },
          h('td', {}, k.name),
          h('td', {}, ...(rotating ? ['live until ', time(k.revokedAt), ' (rotated)'] : [k.state])),
          h('td', {}, k.owner),
          h('td', {}, k.connections.length ? k.connections.join(', ') : 'every connection'),
          h('td', {}, time(k.createdAt)),
          h('td', {}, k.expiresAt ? time(k.expiresAt) : 'never'),
          h('td', {}, h('code', {}, k.id)),
          cell,
        ),
      );
    }
  };
  try {
    await load();
  } catch (err) {
    // Only the error (a 403 for non-admins), not an empty form and table under it.
    form.hidden = true;
    table.hidden = true;
    throw err;
  }
}

// The config the gateway runs (admins): which one (its SHA-256, as `vigil config check` prints it), whether the last
// reload was applied, a button to read the config file again and apply it (as SIGHUP does), and the reloads on the
// ledger: who asked, when, what changed. The API says so when the person is not an admin.

import { api } from './api.js';
import { clear, errorBox, facts, h, time, who } from './dom.js';

/** What one reload (or one answer of POST /config/reload) changed, in a line. */
function changed(r) {
  const parts = [];
  const c = r.connections ?? { added: [], changed: [], removed: [] };
  if (c.added.length) parts.push(`connections added: ${c.added.join(', ')}`);
  if (c.changed.length) {
    parts.push(`changed: ${c.changed.map((x) => `${x.name} (${x.keys.join(', ')})`).join('; ')}`);
  }
  if (c.removed.length) parts.push(`removed: ${c.removed.join(', ')}`);
  const named = [
    ['defaultConnection', 'default connection'],
    ['identity', 'identity'],
    ['admin', 'admin access'],
    ['adminAccess', 'admin access'],
    ['retention', 'retention'],
    ['limits', 'sizes'],
    ['shutdown', 'shutdown grace'],
    ['publicUrl', 'public URL'],
    ['approvals', 'approval webhooks'],
    ['siem', 'SIEM sinks'],
    ['logLevel', 'log level'],
  ];
  for (const [key, label] of named) {
    // A record holds what changed (absent otherwise); the reload's answer says true/false or null.
    if (r[key] !== undefined && r[key] !== false && r[key] !== null && !parts.includes(label)) parts.push(label);
  }
  return parts.length ? parts.join(' · ') : 'nothing a running gateway applies';
}

export async function renderConfig({ root, signal }) {
  const status = h('div');
  const result = h('div', { class: 'reload-result', 'aria-live': 'polite' });
  const reload = h('button', { type: 'button' }, 'Reload config');
  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'list reloads' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['When', 'Who', 'What changed', 'Config'].map((t) => h('th', {}, t)),
      ),
    ),
    tbody,
  );
  root.append(
    h('h1', {}, 'Config'),
    h(
      'p',
      { class: 'hint' },
      'The config this gateway runs. A reload reads its config file again and applies it without dropping a call; ' +
        'each is a ledger record naming who asked. Listeners, the store and signing need a restart.',
    ),
    status,
    h('p', {}, reload),
    result,
    h('h2', {}, 'Reloads'),
    table,
  );

  reload.onclick = async () => {
    reload.disabled = true;
    clear(result);
    try {
      const changes = await api('/config/reload', { method: 'POST', signal });
      result.append(h('div', { class: 'ok-box' }, `Config reloaded: ${changed(changes)}.`));
      await load();
    } catch (err) {
      result.append(errorBox(err));
      await load().catch(() => undefined);
    } finally {
      reload.disabled = false;
    }
  };

  const load = async () => {
    const c = await api('/config', { signal });
    clear(status);
    clear(tbody);
    status.append(
      facts([
        ['Running config', h('code', { 'aria-label': 'Running config SHA-256' }, c.sha256)],
        // Start-up, or the last reload applied.
        ['Applied', time(c.lastReload.lastSuccessAt)],
        ['Last reload', c.lastReload.successful ? null : 'refused — the config pushed is not the one running'],
      ]),
    );
    reload.hidden = !c.reloadable;
    table.hidden = c.reloads.length === 0;
    if (c.reloads.length === 0) status.append(h('p', { class: 'empty' }, 'No reloads since the store began.'));
    for (const r of c.reloads) {
      tbody.append(
        h(
          'tr',
          {},
          h('td', {}, time(r.at)),
          h('td', {}, r.by.method === 'signal' ? r.by.subject : who(r.by)),
          h('td', {}, changed(r)),
          h('td', {}, h('code', { title: r.configSha256 }, r.configSha256.slice(0, 12))),
        ),
      );
    }
  };
  await load();
}

// The Vigil web UI: a hash router over a handful of views, each a client of the admin REST API (/api/v1). The hash
// holds the whole state of a view (`#/sessions?model=…`, `#/sessions/<id>`), so reload, back and links work.

import { api, clearToken, getToken, isAbort, setToken, setUnauthenticatedHandler, uiConfig } from './api.js';
import { clear, errorBox, h, who } from './dom.js';
import { renderAccessLog } from './access-log.js';
import { renderApprovals } from './approvals.js';
import { renderKeys } from './keys.js';
import { renderConfig } from './config.js';
import { renderExchange } from './exchange.js';
import { renderSearch } from './search.js';
import { renderSession } from './session.js';
import { renderSessions } from './sessions.js';
import { renderUsage } from './usage.js';
import { finishSignIn, takeSignInAnswer } from './oidc-sign-in.js';
import { renderSignIn } from './sign-in.js';

const ROUTES = [
  { pattern: /^\/sessions$/, view: renderSessions, nav: 'sessions' },
  { pattern: /^\/sessions\/([^/]+)$/, view: renderSession, nav: 'sessions' },
  { pattern: /^\/exchanges\/([^/]+)$/, view: renderExchange, nav: 'sessions' },
  { pattern: /^\/search$/, view: renderSearch, nav: 'search' },
  { pattern: /^\/usage$/, view: renderUsage, nav: 'usage' },
  { pattern: /^\/approvals$/, view: renderApprovals, nav: 'approvals' },
  { pattern: /^\/keys$/, view: renderKeys, nav: 'keys' },
  { pattern: /^\/config$/, view: renderConfig, nav: 'config' },
  { pattern: /^\/access-log$/, view: renderAccessLog, nav: 'access-log' },
];

const NAV = [
  ['sessions', 'Sessions'],
  ['search', 'Search'],
  ['usage', 'Usage'],
  ['approvals', 'Approvals'],
  ['keys', 'Keys'],
  ['config', 'Config'],
  ['access-log', 'Access log'],
];

const root = document.getElementById('view');
const navEl = document.getElementById('nav');
const whoEl = document.getElementById('who');
const verifyEl = document.getElementById('verify');
const noticeEl = document.getElementById('notice');

/** The view on screen: aborting it cancels its requests and timers. */
let current = null;
/** The "Verify store" request in flight, if any: it belongs to the person signed in when it was asked. */
let verifying = null;
let signedIn = false;

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/sessions';
  const [path, q = ''] = raw.split('?');
  return { path, query: new URLSearchParams(q) };
}

function renderNav(active) {
  clear(navEl);
  for (const [id, label] of NAV) {
    navEl.append(
      h(
        'a',
        { href: `#/${id}`, class: id === active ? 'active' : null, 'aria-current': id === active ? 'page' : null },
        label,
      ),
    );
  }
}

function startView() {
  if (current) current.abort();
  current = new AbortController();
  clear(root);
  clear(noticeEl);
  return current;
}

/** A message above the view, about the page it is shown on: the next view (or sign-in) drops it. */
function showNotice(err) {
  clear(noticeEl);
  if (err) noticeEl.append(errorBox(err));
}

function route() {
  const { path, query } = parseHash();
  const controller = startView();
  const match = ROUTES.map((r) => ({ r, m: r.pattern.exec(path) })).find((x) => x.m);
  if (!match) {
    renderNav(null);
    root.append(errorBox(new Error(`No such page: #${path}`)));
    return;
  }
  renderNav(match.r.nav);
  let params;
  try {
    params = match.m.slice(1).map(decodeURIComponent);
  } catch {
    // A hand-edited or truncated link (`#/sessions/%E0`): decodeURIComponent throws URIError.
    root.append(errorBox(new Error(`Not a valid address: #${path}`)));
    return;
  }
  const view = {
    root,
    params,
    query,
    signal: controller.signal,
    /** Run `fn` when the view is left (timers). */
    cleanup: (fn) => controller.signal.addEventListener('abort', fn, { once: true }),
  };
  Promise.resolve(match.r.view(view)).catch((err) => {
    if (isAbort(err) || controller.signal.aborted) return;
    root.append(errorBox(err));
  });
}

/** Forget the store's verify status, cancelling a verify still running: its answer is for nobody now. */
function dropVerify() {
  if (verifying) verifying.abort();
  verifying = null;
  clear(verifyEl);
}

async function showSignIn(err) {
  signedIn = false;
  const controller = startView();
  renderNav(null);
  renderWho(null);
  dropVerify();
  // Without /ui-config (a gateway being restarted, say) the paste form still works: no provider button, that is all.
  const config = await uiConfig().catch(() => null);
  if (controller.signal.aborted) return;
  renderSignIn({
    root,
    signal: controller.signal,
    error: err,
    signIn: config && config.sign_in,
    onSignedIn: (me) => {
      signedIn = true;
      renderWho(me);
      offerVerify();
      route();
    },
  });
}

function renderWho(me) {
  clear(whoEl);
  if (!me) return;
  // The admin API's local admin when no identity is configured (LOCAL_ADMIN in admin-auth.ts).
  const localAdmin = me.reader.method === 'local_user' && me.reader.subject === 'admin-api:localhost';
  whoEl.append(
    h(
      'span',
      { class: 'who-name', title: JSON.stringify(me.reader) },
      localAdmin ? 'local admin (no identity configured)' : who(me.reader),
    ),
    ' ',
    h('span', { class: `badge role-${me.role}` }, me.role),
  );
  if (getToken()) {
    whoEl.append(
      ' ',
      h(
        'button',
        {
          type: 'button',
          class: 'link',
          onclick: () => {
            clearToken();
            dropVerify();
            boot({ signedOut: true });
          },
        },
        'Sign out',
      ),
    );
  }
}

/**
 * The store's verify status in the header, on demand: verifying rehashes every record, which on a large store is
 * minutes of the gateway's CPU, so opening a page must not start it. OK or BROKEN with the first problem.
 */
function offerVerify() {
  dropVerify();
  verifyEl.append(
    h(
      'button',
      { type: 'button', class: 'badge', title: 'Recheck the whole store’s hash chains', onclick: refreshVerify },
      'Verify store',
    ),
  );
}

async function refreshVerify() {
  dropVerify();
  const controller = new AbortController();
  verifying = controller;
  verifyEl.append(h('span', { class: 'muted' }, 'Store: verifying…'));
  try {
    const report = await api('/verify', { signal: controller.signal });
    // Signed out (or in as someone else) meanwhile: the answer was for that session, which is gone. An abort that
    // comes after the response arrived cancels no fetch, so this is checked, not only the fetch's AbortError.
    if (controller.signal.aborted) return;
    verifying = null;
    clear(verifyEl);
    const first = report.problems && report.problems[0];
    verifyEl.append(
      h(
        'button',
        { type: 'button', class: `badge ${report.ok ? 'ok' : 'bad'}`, title: 'Verify again', onclick: refreshVerify },
        report.ok ? `Store OK · ${report.records} records` : `Store BROKEN · ${report.problems.length} problem(s)`,
      ),
    );
    if (first)
      verifyEl.append(
        ' ',
        // An index row no record made (index_changed) is in no chain.
        h(
          'span',
          { class: 'verify-message' },
          `${first.problem}${first.chain ? ` in ${first.chain}` : ''}: ${first.detail}`,
        ),
      );
  } catch (err) {
    if (controller.signal.aborted) return;
    verifying = null;
    clear(verifyEl);
    if (err.status === 401) return;
    verifyEl.append(
      h(
        'span',
        { class: 'muted', title: err.message },
        err.status === 403 ? 'Store: verify needs admin or auditor' : `Store: ${err.message}`,
      ),
    );
  }
}

/**
 * Finish a sign-in with the identity provider when the address carries its answer: the answer leaves the address (and
 * the history) at once, the view the person was on comes back, and the token is kept like a pasted one.
 *
 * @returns why the answer was refused (not this tab's, cancelled, the code not traded), or null.
 */
async function finishProviderSignIn() {
  const taken = takeSignInAnswer();
  if (!taken) return null;
  history.replaceState(null, '', `${location.pathname}${taken.returnTo}`);
  try {
    setToken(await finishSignIn(taken));
    return null;
  } catch (err) {
    return err;
  }
}

/** Find out who is here: the views when the API knows (or needs no credential), else sign-in. */
async function boot({ signedOut = false } = {}) {
  // A refused answer changes nothing, so a token this tab already keeps stays, and so does its session: the person
  // is told the answer was ignored, above the view. (It used to show the sign-in page over a token that was still
  // kept: the person thought they were signed out, and a reload signed them back in.) Such answers come from Back
  // into the provider's pages, a bookmarked address, or someone else's link: none of them should sign anyone out.
  const refused = await finishProviderSignIn();
  try {
    const me = await api('/whoami', { signIn: false });
    signedIn = true;
    renderWho(me);
    offerVerify();
    route();
    showNotice(refused);
  } catch (err) {
    if (err.status !== 401) {
      showNotice(refused);
      root.append(errorBox(err));
      return;
    }
    // A token the API refuses (expired, say) is of no more use. After a deliberate sign-out, "missing credential" is
    // no news: the form alone. A refused answer from the provider says more than either.
    clearToken();
    showSignIn(refused ?? (signedOut ? null : err));
  }
}

setUnauthenticatedHandler((err) => showSignIn(err));
window.addEventListener('hashchange', () => {
  if (signedIn) route();
});
boot();

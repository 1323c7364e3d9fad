// Sign-in: the API wants a credential. The person pastes an OIDC access/ID token from their identity provider, or an
// admin API token; it is checked with /whoami and kept in sessionStorage for this tab only.

import { api, clearToken, setToken } from './api.js';
import { errorBox, h } from './dom.js';

/** Show the sign-in form; `onSignedIn(me)` once a token is accepted. */
export function renderSignIn({ root, error, onSignedIn }) {
  const input = h('textarea', {
    id: 'token',
    name: 'token',
    rows: 4,
    required: true,
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'eyJhbGciOi…  or an admin API token',
  });
  const message = h('div', { class: 'sign-in-message' });
  if (error) message.append(errorBox(error));
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h(
    'form',
    {
      class: 'sign-in',
      onsubmit: async (event) => {
        event.preventDefault();
        const token = input.value.trim();
        if (!token) return;
        button.disabled = true;
        message.replaceChildren();
        setToken(token);
        try {
          const me = await api('/whoami', { signIn: false });
          onSignedIn(me);
        } catch (err) {
          clearToken();
          message.append(errorBox(err));
        } finally {
          button.disabled = false;
        }
      },
    },
    h('h1', {}, 'Sign in'),
    h(
      'p',
      {},
      'This gateway asks who you are. Paste an access or ID token from your identity provider (its groups give your role), ' +
        'or an admin API token. It is kept for this browser tab only and sent only to this gateway’s API.',
    ),
    h('label', { for: 'token' }, 'Token'),
    input,
    message,
    button,
  );
  root.append(form);
  input.focus();
}

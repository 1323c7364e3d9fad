// Sign-in: the API wants a credential. With admin.ui.oidc, a button signs in with the company's identity provider
// (oidc-sign-in.js); and always, the person can paste an OIDC access/ID token from their identity provider, or an
// admin API token. Either token is checked with /whoami and kept in sessionStorage for this tab only.

import { api, clearToken, setToken } from './api.js';
import { errorBox, h } from './dom.js';
import { startSignIn } from './oidc-sign-in.js';

/** "Sign in with <IdP>", for `/ui-config`'s `sign_in`; errors go to `message`. */
function providerButton(signIn, message) {
  const button = h(
    'button',
    {
      type: 'button',
      class: 'provider',
      onclick: async () => {
        button.disabled = true;
        message.replaceChildren();
        try {
          await startSignIn(signIn);
        } catch (err) {
          message.append(errorBox(err));
          button.disabled = false;
        }
      },
    },
    `Sign in with ${signIn.name}`,
  );
  return button;
}

/**
 * Show the sign-in form; `onSignedIn(me)` once a token is accepted. `signIn`: `/ui-config`'s `sign_in` (null without
 * a provider to sign in with).
 */
export function renderSignIn({ root, error, signIn, onSignedIn }) {
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
    signIn
      ? [
          h(
            'p',
            {},
            `This gateway asks who you are. Sign in with ${signIn.name} (your groups there give your role), or ` +
              'paste an admin API token or a token from your identity provider below.',
          ),
          h('p', {}, providerButton(signIn, message)),
        ]
      : h(
          'p',
          {},
          'This gateway asks who you are. Paste an access or ID token from your identity provider (its groups give ' +
            'your role), or an admin API token.',
        ),
    h('p', { class: 'muted' }, 'A token is kept for this browser tab only and sent only to this gateway’s API.'),
    h('label', { for: 'token' }, 'Token'),
    input,
    message,
    button,
  );
  root.append(form);
  input.focus();
}

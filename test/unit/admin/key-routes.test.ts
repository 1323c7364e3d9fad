/**
 * The name a gateway key created or revoked through the admin API records as who did it, and gives as its default
 * owner: what approvals match a key's owner against (an e-mail for an OIDC user).
 */
import { describe, expect, it } from 'vitest';
import { adminActorName } from '../../../src/admin/key-routes.js';

describe('adminActorName', () => {
  it('is an OIDC user’s e-mail, else their subject; an admin token by name; the local admin as itself', () => {
    expect(
      adminActorName({ method: 'oidc', subject: 'u-123', issuer: 'https://idp', email: 'alice@example.com' }),
    ).toBe('alice@example.com');
    expect(adminActorName({ method: 'oidc', subject: 'u-123', issuer: 'https://idp' })).toBe('u-123');
    expect(adminActorName({ method: 'admin_token', subject: 'provisioner' })).toBe('admin-token:provisioner');
    expect(adminActorName({ method: 'local_user', subject: 'admin-api:localhost' })).toBe('admin-api:localhost');
  });
});

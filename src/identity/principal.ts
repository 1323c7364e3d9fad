/** Who made a call, as recorded with every exchange. Never carries the caller's token. */
export interface Principal {
  /** How the caller proved who they are. */
  readonly method: 'anonymous' | 'oidc' | 'gateway_key';
  /** Stable subject: OIDC `sub`, the gateway key's name, or `anonymous`. */
  readonly subject: string;
  readonly issuer?: string;
  readonly name?: string;
  readonly email?: string;
  readonly groups?: readonly string[];
  /** For gateway keys: the key's name and owner. */
  readonly keyName?: string;
  readonly owner?: string;
  /**
   * For gateway keys: which key (`gatewayKeyId` of its hash). A name is unique among live keys only, so a key created after
   * another of the same name was revoked has the same subject and name, and only this tells the two apart. Absent in
   * records made before it was kept.
   */
  readonly keyId?: string;
}

/**
 * A person known by their account on this machine, not by a credential: the CLI's OS user (`cli:<user>`), or the admin
 * API's local admin without identity (`admin-api:localhost`). How they read and decide is recorded with this method.
 */
export interface LocalUser {
  readonly method: 'local_user';
  readonly subject: string;
}

export const ANONYMOUS: Principal = Object.freeze({ method: 'anonymous', subject: 'anonymous' });

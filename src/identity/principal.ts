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
}

export const ANONYMOUS: Principal = Object.freeze({ method: 'anonymous', subject: 'anonymous' });

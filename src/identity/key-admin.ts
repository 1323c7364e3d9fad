/**
 * Creating and revoking gateway keys: both are ledger records (`key.created`, `key.revoked`), so every key's life is
 * on the tamper-evident chain. The key itself is shown once and never stored; only its SHA-256 is.
 */
import { VigilError } from '../errors.js';
import { appendConfirmed } from '../store/append-confirmed.js';
import { ANONYMOUS } from './principal.js';
import type {
  AuditStore,
  KeyCreatedData,
  KeyRevokedData,
  ListedGatewayKey,
  NewRecord,
  RecordingReader,
  StoredGatewayKey,
} from '../store/audit-store.js';
import { gatewayKeyId, generateGatewayKey, parseKeyLifetime } from './gateway-keys.js';

const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export interface CreateKeyInput {
  readonly name: string;
  readonly owner: string;
  readonly connections: readonly string[];
  /** `30d`, `12h`, `90m`; absent: no expiry. */
  readonly expires?: string | undefined;
  /** Who ran the command, for the record. */
  readonly createdBy: string;
  /** Who asked through the admin API, as they authenticated. */
  readonly actor?: RecordingReader | undefined;
  /**
   * How long to wait for the store to say whether the key was written when its answer was lost (default
   * {@link LOST_ANSWER_WAIT_MS}).
   */
  readonly lostAnswerWaitMs?: number | undefined;
}

/**
 * The live `gateway_keys` row of this name, if any: the index, not the ledger, since it keeps a name unique among its
 * live rows (a new key's row would be refused) and a revocation is what takes a row out of the way.
 */
async function liveIndexRow(store: AuditStore, name: string): Promise<StoredGatewayKey | undefined> {
  return (await indexRows(store, name)).find((r) => r.revokedAt === null);
}

async function indexRows(store: AuditStore, name: string): Promise<StoredGatewayKey[]> {
  return (await store.listGatewayKeys()).flatMap((k) => (k.index && k.index.name === name ? [k.index] : []));
}

export async function createGatewayKey(
  store: AuditStore,
  input: CreateKeyInput,
  knownConnections: readonly string[],
  now = Date.now(),
): Promise<{ key: string; record: StoredGatewayKey }> {
  if (!KEY_NAME.test(input.name)) {
    throw new VigilError(
      'BAD_REQUEST',
      `key name "${input.name}" must be 1-63 characters of letters, digits, ".", "_" or "-"`,
    );
  }
  if (input.name === ANONYMOUS.subject) {
    // Records, grants and holds name callers by subject: a key must not pass for the callers without identity.
    throw new VigilError('BAD_REQUEST', `key name "${input.name}" is reserved for callers without identity`);
  }
  for (const c of input.connections) {
    if (!knownConnections.includes(c)) {
      throw new VigilError('BAD_REQUEST', `no connection named "${c}" (configured: ${knownConnections.join(', ')})`);
    }
  }
  if (await liveIndexRow(store, input.name))
    throw new VigilError(
      'BAD_REQUEST',
      `a live key named "${input.name}" exists: revoke it first (vigil keys revoke ${input.name})`,
    );
  const { key, hash } = generateGatewayKey();
  const data: KeyCreatedData = {
    hash,
    name: input.name,
    owner: input.owner,
    connections: [...input.connections],
    createdAt: now,
    expiresAt: input.expires ? now + parseKeyLifetime(input.expires) : null,
    createdBy: input.createdBy,
    ...(input.actor ? { actor: input.actor } : {}),
  };
  // PostgreSQL's answer to the commit can be lost with the connection while the record was written: then the key
  // exists, and this is the only time it can be shown.
  await appendConfirmed(store, { kind: 'key.created', at: now, data } satisfies NewRecord, {
    waitMs: input.lostAnswerWaitMs ?? LOST_ANSWER_WAIT_MS,
    unknown:
      `the store stopped answering while key "${input.name}" was being created, and cannot say whether it was: if ` +
      'vigil keys list shows it, revoke it (its key was never shown) and create another',
  }).catch(nameTakenMeanwhile(input.name));
  return { key, record: { ...data, revokedAt: null } };
}

/**
 * A live key of this name appeared between the check and the append (another `keys create` or `rotate`, from the
 * CLI, the admin API or another gateway): the store's unique index on live names refused the append, which wrote
 * nothing. Said as such, not as a database error.
 */
function nameTakenMeanwhile(name: string): (err: unknown) => never {
  return (err) => {
    const code = (err as { code?: unknown } | null)?.code;
    if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === '23505') {
      throw new VigilError(
        'BAD_REQUEST',
        `a live key named "${name}" was created meanwhile (another create or rotate): nothing was written; see vigil keys list`,
        { cause: err },
      );
    }
    throw err;
  };
}

/** How long key creation waits for the store to say whether a key whose answer was lost was written. */
const LOST_ANSWER_WAIT_MS = 15_000;

/**
 * Revoke the key of this name, at once — and with it any key of the name still working out the overlap of a rotation
 * (`rotateGatewayKey`): a name revoked is a name nobody calls with. One append: all of them or none.
 *
 * @returns the name's live key (else the newest rotated one) as revoked, and the ids of the others revoked with it
 */
export async function revokeGatewayKey(
  store: AuditStore,
  name: string,
  revokedBy: string,
  now = Date.now(),
  options: { lostAnswerWaitMs?: number; actor?: RecordingReader } = {},
): Promise<StoredGatewayKey & { readonly alsoRevoked: readonly string[] }> {
  const working = (await indexRows(store, name))
    .filter((r) => r.revokedAt === null || r.revokedAt > now)
    .sort((a, b) => Number(a.revokedAt !== null) - Number(b.revokedAt !== null) || b.createdAt - a.createdAt);
  const [main, ...others] = working;
  if (!main) throw new VigilError('NOT_FOUND', `no live key named "${name}" (see: vigil keys list)`);
  const records = working.map((k): NewRecord => ({
    kind: 'key.revoked',
    at: now,
    data: {
      name,
      hash: k.hash,
      revokedAt: now,
      revokedBy,
      ...(options.actor ? { actor: options.actor } : {}),
    } satisfies KeyRevokedData,
  }));
  // As for creation: revoked though the answer was lost is revoked, and a second try would say "no live key".
  await appendConfirmed(store, records, {
    waitMs: options.lostAnswerWaitMs ?? LOST_ANSWER_WAIT_MS,
    unknown:
      `the store stopped answering while key "${name}" was being revoked, and cannot say whether it was: ` +
      'vigil keys list says; revoke it again if it is still live',
  });
  return { ...main, revokedAt: now, alsoRevoked: others.map((k) => gatewayKeyId(k.hash)) };
}

/** The longest overlap a rotation allows: the key it replaces works this long at most. */
const MAX_OVERLAP_MS = 30 * 86_400_000;

export interface RotateKeyInput {
  /** How long the key replaced keeps working (`0`, `90m`, `12h`, `7d`); default {@link DEFAULT_OVERLAP}. */
  readonly overlap?: string | undefined;
  /** The new key's lifetime; default: the one the replaced key was given (none if it had none). */
  readonly expires?: string | undefined;
  readonly rotatedBy: string;
  readonly actor?: RecordingReader | undefined;
  readonly lostAnswerWaitMs?: number | undefined;
}

export const DEFAULT_OVERLAP = '1h';

/**
 * Replace the live key of this name with a new one of the same name, owner and connections — so allow lists, approval
 * rules, usage and limits, which know callers by key name, go on as before — while the old key keeps working for
 * `overlap` (the time to put the new key where the jobs read it), then is refused. One append of two records:
 * `key.revoked` of the old key for the end of the overlap (`rotatedTo`), and `key.created` of the new one (`rotates`).
 * A revocation of the name during the overlap revokes both at once.
 */
export async function rotateGatewayKey(
  store: AuditStore,
  name: string,
  input: RotateKeyInput,
  now = Date.now(),
): Promise<{ key: string; record: StoredGatewayKey; replaced: { id: string; revokedAt: number } }> {
  const overlapMs = input.overlap === undefined ? parseKeyLifetime(DEFAULT_OVERLAP) : parseOverlap(input.overlap);
  // The key as authentication has it (the ledger's name, owner, connections and expiry), not as its index row says:
  // a row changed or added without a record must not pass what it says on to a new, genuine key.
  const old = (await store.listGatewayKeys()).find(
    (k) => k.name === name && k.index !== null && k.index.revokedAt === null,
  );
  if (!old) throw new VigilError('NOT_FOUND', `no live key named "${name}" to rotate (see: vigil keys list)`);
  const state = keyState(old, now);
  if (state !== 'live') {
    throw new VigilError(
      'BAD_REQUEST',
      state === 'expired'
        ? `key "${name}" expired at ${new Date(old.expiresAt!).toISOString()}: revoke it and create a new one`
        : `key "${name}" is ${state} as authentication has it (vigil keys list says why): revoke it, run vigil verify, and create a new one`,
    );
  }
  const { key, hash } = generateGatewayKey();
  const lifetimeMs = input.expires
    ? parseKeyLifetime(input.expires)
    : old.expiresAt !== null
      ? old.expiresAt - old.createdAt
      : null;
  const actor = input.actor ? { actor: input.actor } : {};
  const revoked: KeyRevokedData = {
    name,
    hash: old.hash,
    revokedAt: now + overlapMs,
    revokedBy: input.rotatedBy,
    rotatedTo: gatewayKeyId(hash),
    ...actor,
  };
  const created: KeyCreatedData = {
    hash,
    name,
    owner: old.owner,
    connections: [...old.connections],
    createdAt: now,
    expiresAt: lifetimeMs === null ? null : now + lifetimeMs,
    createdBy: input.rotatedBy,
    rotates: gatewayKeyId(old.hash),
    ...actor,
  };
  // The revocation first: it takes the old key out of the way of the name's one live key.
  await appendConfirmed(
    store,
    [
      { kind: 'key.revoked', at: now, data: revoked },
      { kind: 'key.created', at: now, data: created },
    ],
    {
      waitMs: input.lostAnswerWaitMs ?? LOST_ANSWER_WAIT_MS,
      unknown:
        `the store stopped answering while key "${name}" was being rotated, and cannot say whether it was: if ` +
        'vigil keys list shows a new key of that name, revoke the name (its key was never shown) and create another',
    },
  ).catch(nameTakenMeanwhile(name));
  return {
    key,
    record: { ...created, revokedAt: null },
    replaced: { id: gatewayKeyId(old.hash), revokedAt: revoked.revokedAt },
  };
}

/** A rotation's overlap: `0` (the old key stops at once) or a lifetime of at most {@link MAX_OVERLAP_MS}. */
function parseOverlap(text: string): number {
  if (text.trim() === '0') return 0;
  let ms: number;
  try {
    ms = parseKeyLifetime(text);
  } catch {
    throw new VigilError(
      'BAD_REQUEST',
      `invalid overlap "${text}": use 0, or a number of minutes, hours or days, e.g. 90m, 12h or 7d`,
    );
  }
  if (ms > MAX_OVERLAP_MS) {
    throw new VigilError('BAD_REQUEST', `overlap "${text}" is longer than 30d: the old key would outlive the point`);
  }
  return ms;
}

/** What authentication would make of a listed key now. */
export function keyState(k: ListedGatewayKey, now: number): 'live' | 'revoked' | 'refused' | 'expired' {
  // A revocation to come (a key rotated with an overlap) leaves it live until then.
  if (k.revokedAt !== null && k.revokedAt <= now) return 'revoked';
  // No index row, or no key.created record: authentication does not know the key.
  if (k.index === null || !k.inLedger) return 'refused';
  return k.expiresAt !== null && k.expiresAt <= now ? 'expired' : 'live';
}

/** A listed key as `keys list` shows it: as authentication has it, and how its index row disagrees with the ledger. */
export function listedKey(k: ListedGatewayKey): StoredGatewayKey & { ledgerMismatch: readonly string[] } {
  const { hash, name, owner, connections, createdAt, expiresAt, revokedAt } = k;
  return { hash, name, owner, connections, createdAt, expiresAt, revokedAt, ledgerMismatch: k.ledgerMismatch };
}

/** A key as the CLI shows it: its id (as callers are recorded with it) in place of its hash. */
export function shownKey<T extends { hash: string }>(k: T): Omit<T, 'hash'> & { id: string } {
  const { hash, ...rest } = k;
  return { id: gatewayKeyId(hash), ...rest };
}

/** A key as listings show it (`vigil keys list --json`, `GET /api/v1/keys`): by id, never by hash, with its state. */
export interface GatewayKeyView extends Omit<StoredGatewayKey, 'hash'> {
  readonly id: string;
  readonly ledgerMismatch: readonly string[];
  readonly state: 'live' | 'revoked' | 'refused' | 'expired';
}

export function listedKeyView(k: ListedGatewayKey, now: number): GatewayKeyView {
  return { ...shownKey(listedKey(k)), state: keyState(k, now) };
}

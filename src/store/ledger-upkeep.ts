/**
 * What a gateway does for its ledger besides appending: sign digests of its chain on an interval and at shutdown,
 * watch every chain for digests that are overdue, and purge expired exchanges on the retention schedule. Signing and
 * purging use the signing key from `signing.key.file`.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { VigilConfig } from '../config/config-schema.js';
import { ConfigError } from '../errors.js';
import type { AuditStore } from './audit-store.js';
import { DigestWatch, NOT_CHECKED, type DigestWatchStatus } from './digest-watch.js';
import { Digester } from './digests.js';
import { RetentionScheduler, retentionPolicy, type RetentionPolicy } from './retention.js';
import { SigningKey } from './signing-key.js';

interface UpkeepLog {
  info(o: object, msg: string): void;
  warn(o: object, msg: string): void;
}

/** The signing key's file: `signing.key.file` (relative to data_dir), default `<data_dir>/signing-key.pem`. */
export function signingKeyFile(config: VigilConfig): string {
  return path.resolve(config.data_dir, config.signing.key?.file ?? 'signing-key.pem');
}

/** The ledger signing key; generated on first use when the file does not exist yet. */
export function loadSigningKey(config: VigilConfig): SigningKey {
  try {
    return SigningKey.load(signingKeyFile(config), { create: true });
  } catch (err) {
    throw new ConfigError([`signing.key.file: ${(err as Error).message}`]);
  }
}

/**
 * Signs what this process appended to its chain — a final digest, as a gateway signs at shutdown — before a command
 * that wrote records closes the store. With `create: false` no signing key is generated: without one (a reader's copy
 * of the config, say), the records stay an unsigned tail, which `verify --public-key` reports.
 */
export async function signChain(config: VigilConfig, store: AuditStore, options: { create: boolean }): Promise<void> {
  const file = signingKeyFile(config);
  if (!options.create && !existsSync(file)) return;
  await new Digester(store, loadSigningKey(config), { intervalMs: 0 }).close();
}

/**
 * `signing.overdue_after` in ms: how long a chain's records may go without a digest of their chain. Default three
 * `signing.interval`s (a digest is due once per interval; the rest is slack for a slow store and clocks that differ
 * between gateways); 0 — or no interval, when digests are signed at shutdown only — turns the check off.
 */
export function digestsOverdueAfterMs(config: VigilConfig): number {
  return config.signing.overdue_after ?? 3 * config.signing.interval;
}

/**
 * Runs `fn` — a command that writes, which may run long (a retention run purging a backlog) — signing this process's
 * chain every `signing.interval` while it runs, as a gateway does, and its final digest once `fn` succeeds: a long
 * run's records do not go unsigned past `signing.overdue_after`. A periodic digest that fails is tried again by the
 * next one, and by the final digest, which throws.
 */
export async function whileSigning<T>(config: VigilConfig, store: AuditStore, fn: () => Promise<T>): Promise<T> {
  const digester = new Digester(store, loadSigningKey(config), { intervalMs: config.signing.interval });
  digester.start();
  try {
    const result = await fn();
    await digester.close();
    return result;
  } finally {
    await digester.stop();
  }
}

export interface LedgerUpkeep {
  readonly key: SigningKey;
  /** What the last check for overdue digests found (nothing overdue when the check is off). */
  digests(): DigestWatchStatus;
  /** The retention windows of a reloaded config (see RetentionScheduler.setPolicy). */
  setRetention(policy: RetentionPolicy, everyMs: number): void;
  /**
   * Stops the schedules, waits for a running purge and check, and signs the chain's final digest. Call before closing
   * the store.
   */
  close(): Promise<void>;
}

export function startLedgerUpkeep(config: VigilConfig, store: AuditStore, log: UpkeepLog): LedgerUpkeep {
  const key = loadSigningKey(config);
  const digester = new Digester(store, key, {
    intervalMs: config.signing.interval,
    onError: (err) => log.warn({ err }, 'could not append a signed digest; retrying at the next interval'),
  });
  digester.start();
  const retention = new RetentionScheduler(store, retentionPolicy(config), key, {
    everyMs: config.retention.schedule,
    log,
  });
  retention.start();
  const overdueAfterMs = digestsOverdueAfterMs(config);
  const watch = overdueAfterMs > 0 ? new DigestWatch(store, { overdueAfterMs, log }) : undefined;
  watch?.start();
  return {
    key,
    digests: () => watch?.status() ?? NOT_CHECKED,
    setRetention: (policy, everyMs) => retention.setPolicy(policy, everyMs),
    async close() {
      // An alert it appends goes under the final digest below.
      await watch?.close();
      await retention.close();
      // A final digest that cannot be written (the store already failed) is reported, not thrown: shutdown goes on,
      // and verify reports the chain's unsigned tail.
      await digester.close().catch((err: unknown) => log.warn({ err }, 'could not sign the final digest at shutdown'));
    },
  };
}

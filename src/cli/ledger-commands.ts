/**
 * CLI verbs for the ledger's life over time:
 *   vigil retention run [--dry-run] [--json]                  purge what is past its connection's window
 *   vigil holds add --session ID | --caller SUBJECT|EMAIL --reason "…"
 *   vigil holds list [--active] [--json]
 *   vigil holds release HOLD-ID --reason "…"
 *   vigil keys public [--out FILE]                           the public half of the ledger signing key
 * Each takes --config FILE or --data-dir DIR. Commands that write sign their chain (a digest) before they exit.
 */
import { cliActor } from './cli-actor.js';
import { CliError } from './cli-error.js';
import { parseOptions } from './parse-options.js';
import { listJson } from './list-json.js';
import { writeFileSync } from 'node:fs';
import type { ParseArgsConfig } from 'node:util';
import { loadConfig } from '../config/load-config.js';
import type { VigilConfig } from '../config/config-schema.js';
import { VigilError } from '../errors.js';
import type { AuditStore, ListedHold, StoredHold } from '../store/audit-store.js';
import { addHold, releaseHold } from '../store/holds.js';
import { loadSigningKey, signingKeyFile, whileSigning } from '../store/ledger-upkeep.js';
import { openStore } from '../store/open-store.js';
import { retentionPolicy, retentionQuery, runRetention, WAL_KEPT_WARNING } from '../store/retention.js';

type Out = { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };

const COMMON = {
  config: { type: 'string' },
  'data-dir': { type: 'string' },
  json: { type: 'boolean', default: false },
} as const satisfies ParseArgsConfig['options'];

function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O) {
  return parseOptions(args, { ...COMMON, ...options });
}

const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * What a listing appends to a key's or hold's line: a mark when its index row disagrees with the ledger, then the
 * lines that say how (verify's words).
 */
export const mismatchMarked = (details: readonly string[]): string =>
  `${details.length ? '  (index disagrees with ledger)' : ''}\n${details.map((d) => `  - ${d}\n`).join('')}`;

/**
 * Warns an operator when keys or holds of the `table` index disagree with the ledger (`items`, those listed or
 * counted), saying how they were `shown`; nothing when none do.
 */
export function warnLedgerMismatch(
  out: Out,
  table: 'gateway_keys' | 'holds',
  items: readonly { ledgerMismatch: readonly string[] }[],
  shown: string,
): void {
  const count = items.filter((i) => i.ledgerMismatch.length > 0).length;
  if (count === 0) return;
  out.stderr.write(
    `vigil: warning: the ${table} index disagrees with the ledger on ${count} ${table === 'holds' ? 'hold' : 'key'}(s): ` +
      `the table was changed without a record. ${shown}. Run \`vigil verify\` to see every change\n`,
  );
}

/** Opens the store for writing, runs `fn`, signs what this process appended, closes. */
async function withWritableStore<T>(config: VigilConfig, fn: (store: AuditStore) => Promise<T>): Promise<T> {
  const store = await openStore(config);
  try {
    // Signed every signing.interval while it runs (a long retention run), and once more at the end.
    return await whileSigning(config, store, () => fn(store));
  } finally {
    await store.close();
  }
}

/** `vigil retention run [--dry-run]`. */
export async function retentionCommand(args: string[], out: Out): Promise<number> {
  const [verb, ...rest] = args;
  if (verb !== 'run')
    throw new CliError('usage: vigil retention run [--dry-run] [--json] [--config FILE | --data-dir DIR]');
  const { values } = parse(rest, { 'dry-run': { type: 'boolean', default: false } });
  const config = loadConfig({ configFile: values.config, dataDir: values['data-dir'] });
  const policy = retentionPolicy(config);
  const dryRun = values['dry-run'];
  if (!retentionQuery(policy, Date.now())) {
    out.stdout.write(
      values.json
        ? `${JSON.stringify({ dryRun, exchanges: 0, records: 0, blobs: 0, batches: 0, keptForever: true })}\n`
        : 'nothing to purge: every connection keeps its exchanges forever (set retention.default or connections[].retention)\n',
    );
    return 0;
  }
  const key = loadSigningKey(config);
  const run = async (store: AuditStore): Promise<number> => {
    const result = await runRetention(store, policy, key, {
      dryRun,
      onBatch: (b) =>
        out.stderr.write(`… ${dryRun ? 'would remove' : 'removed'} ${b.exchanges} exchanges (${b.records} records)\n`),
    });
    if (result.walKept) out.stderr.write(`vigil: warning: ${WAL_KEPT_WARNING}\n`);
    const holds = await store.listHolds();
    const holdsLedgerMismatch = holds.flatMap((h) => h.ledgerMismatch);
    warnLedgerMismatch(
      out,
      'holds',
      holds,
      `Purges keep what the index or the hold records hold, and so ${dryRun ? 'does this count' : 'did this run'} (see \`vigil holds list\`)`,
    );
    if (values.json) {
      const { purgeRecords, ...rest } = result;
      out.stdout.write(
        `${JSON.stringify(
          { ...rest, purgeRecords: purgeRecords.map((r) => `${r.chain}:${r.chainSeq}`), holdsLedgerMismatch },
          null,
          2,
        )}\n`,
      );
      return 0;
    }
    if (result.exchanges === 0) {
      out.stdout.write(
        `nothing ${dryRun ? 'would be' : 'was'} purged: no exchange is past its connection's window (holds excepted)\n`,
      );
      return 0;
    }
    const range = result.timeRange ? ` from ${iso(result.timeRange.from)} to ${iso(result.timeRange.to)}` : '';
    const per = Object.entries(result.byConnection)
      .map(([c, n]) => `${c} ${n}`)
      .join(', ');
    out.stdout.write(
      dryRun
        ? `dry run: would purge ${result.exchanges} exchanges (${result.records} records)${range} [${per}]\n`
        : `purged ${result.exchanges} exchanges (${result.records} records, ${result.blobs} blobs)${range} [${per}] ` +
            `in ${result.batches} batch(es), each sealed by a signed retention.purged record\n`,
    );
    return 0;
  };
  try {
    if (dryRun) {
      const store = await openStore(config, { readonly: true });
      try {
        return await run(store);
      } finally {
        await store.close();
      }
    }
    return await withWritableStore(config, run);
  } catch (err) {
    if ((err as { code?: string }).code === '42501') {
      throw new CliError(
        `the database role may not delete (${(err as Error).message}): retention purges run as the schema owner ` +
          '(vigil retention run --config <a config whose store.postgres.url names the owner>)',
        1,
      );
    }
    throw err;
  }
}

/** `vigil holds add|list|release`. */
export async function holdsCommand(args: string[], out: Out): Promise<number> {
  const [verb, ...rest] = args;
  const { values, positionals } = parse(rest, {
    session: { type: 'string' },
    caller: { type: 'string' },
    reason: { type: 'string' },
    active: { type: 'boolean', default: false },
  });
  const config = loadConfig({ configFile: values.config, dataDir: values['data-dir'] });
  try {
    if (verb === 'add') {
      if (values.reason === undefined)
        throw new CliError('usage: vigil holds add --session ID | --caller SUBJECT|EMAIL --reason "…"');
      const hold = await withWritableStore(config, (store) =>
        addHold(store, { session: values.session, caller: values.caller, reason: values.reason!, by: cliActor() }),
      );
      if (values.json) out.stdout.write(`${JSON.stringify(hold, null, 2)}\n`);
      else out.stdout.write(`${hold.holdId}\n`);
      out.stderr.write(
        `hold ${hold.holdId} placed on ${hold.session ? `session ${hold.session}` : `caller ${hold.caller}`}: ` +
          'its exchanges are kept out of every purge until the hold is released\n',
      );
      return 0;
    }
    if (verb === 'list') {
      const store = await openStore(config, { readonly: true });
      try {
        const holds = await store.listHolds({ activeOnly: values.active });
        if (values.json) out.stdout.write(listJson({ items: holds.map(shownHold) }, 'holds'));
        else if (holds.length === 0) out.stdout.write('no holds\n');
        else {
          for (const h of holds) {
            out.stdout.write(
              `${h.id}  ${h.releasedAt === null ? 'active' : `released ${iso(h.releasedAt)} by ${h.releasedBy}`}  ` +
                `${h.session ? `session ${h.session}` : `caller ${h.caller}`}  placed ${iso(h.createdAt)} by ${h.createdBy}  ` +
                `reason: ${h.reason}${mismatchMarked(h.ledgerMismatch)}`,
            );
          }
        }
        warnLedgerMismatch(
          out,
          'holds',
          holds,
          'They are marked above, and shown as purges have them: active while the index or the hold.added and ' +
            'hold.released records say so',
        );
        return 0;
      } finally {
        await store.close();
      }
    }
    if (verb === 'release') {
      const id = positionals[0];
      if (!id || values.reason === undefined) throw new CliError('usage: vigil holds release HOLD-ID --reason "…"');
      await withWritableStore(config, (store) => releaseHold(store, id, { reason: values.reason!, by: cliActor() }));
      out.stdout.write(`hold ${id} released: its exchanges fall under retention again\n`);
      return 0;
    }
    throw new CliError('usage: vigil holds add|list|release …');
  } catch (err) {
    if (err instanceof VigilError) throw new CliError(err.message, 1);
    throw err;
  }
}

/** A hold as `holds list --json` shows it: as purges have it, and how its index row disagrees with the ledger. */
function shownHold(h: ListedHold): StoredHold & { ledgerMismatch: readonly string[] } {
  const { id, session, caller, reason, createdBy, createdAt, releasedAt, releasedBy, releaseReason } = h;
  return {
    id,
    session,
    caller,
    reason,
    createdBy,
    createdAt,
    releasedAt,
    releasedBy,
    releaseReason,
    ledgerMismatch: h.ledgerMismatch,
  };
}

/** `vigil keys public [--out FILE]`: the PEM public key that `vigil verify --public-key` takes. */
export async function publicKeyCommand(args: string[], out: Out): Promise<number> {
  const { values } = parse(args, { out: { type: 'string' } });
  const config = loadConfig({ configFile: values.config, dataDir: values['data-dir'] });
  const key = loadSigningKey(config);
  const pem = key.publicKeyPem();
  if (values.out !== undefined) {
    writeFileSync(values.out, pem);
    out.stderr.write(`public key ${key.keyId} (of ${signingKeyFile(config)}) written to ${values.out}\n`);
  } else {
    out.stdout.write(pem);
  }
  return 0;
}

/**
 * What a command that writes does for its chain: it signs every `signing.interval` while it runs, as a gateway does,
 * and once more when it ends (real stores of both kinds).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../../../src/config/load-config.js';
import type { AuditStore } from '../../../src/store/audit-store.js';
import { whileSigning } from '../../../src/store/ledger-upkeep.js';
import { createStoreFixture, storeKinds, type StoreFixture } from '../../support/stores.js';

const note = (store: AuditStore, at: number) => store.append({ records: [{ kind: 'note', at, data: {} }] });

describe.each(storeKinds())('whileSigning on %s', (kind) => {
  let fixture: StoreFixture;

  beforeEach(async () => {
    fixture = await createStoreFixture(kind);
  });
  afterEach(async () => {
    await fixture?.dispose();
  });

  it('signs a long command as it runs (a retention run), so it is not taken for a writer that stopped signing', async () => {
    // Went wrong: a command that writes signed its chain only when it ended, so a retention run purging for longer
    // than signing.overdue_after went unsigned that long (and was taken for a writer that stopped signing).
    const config = validateConfig({
      connections: [{ name: 'a' }],
      data_dir: mkdtempSync(path.join(tmpdir(), 'vigil-cmd-')),
      signing: { interval: 20 },
    });
    const command = await fixture.open();
    await whileSigning(config, command, async () => {
      await note(command, Date.now());
      await sleep(200); // a purge batch, say: ten intervals
      await note(command, Date.now());
    });
    const kinds = (await command.chainRecords(command.chainId, 0, 100)).map((r) => r.kind);
    expect(kinds.slice(0, 2)).toEqual(['chain.opened', 'note']);
    expect(kinds.indexOf('digest.signed')).toBe(2); // signed while it ran, before its second record
    expect(kinds.at(-1)).toBe('digest.signed'); // and at the end
    expect(kinds.at(-2)).toBe('note');
  });
});

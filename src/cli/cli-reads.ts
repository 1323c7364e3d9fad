/**
 * A person reading recorded content from the command line is recorded too (`recording.read`), as the admin API does.
 * The CLI reads the store directly, so this is best effort: when the store cannot be written (a read-only copy),
 * the read goes on with a warning.
 */
import { loadConfig } from '../config/load-config.js';
import type { RecordingReadData } from '../store/audit-store.js';
import { signChain } from '../store/ledger-upkeep.js';
import { openStore } from '../store/open-store.js';
import { cliLocalUser } from './cli-actor.js';

type Out = { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };

export async function recordCliRead(
  values: { config?: string | undefined; 'data-dir'?: string | undefined },
  what: RecordingReadData['what'],
  ids: readonly string[],
  out: Out,
  query?: string,
): Promise<void> {
  const data: RecordingReadData = {
    actor: cliLocalUser(),
    role: 'admin',
    what,
    ids,
    ...(query !== undefined ? { query } : {}),
    address: null,
  };
  try {
    const config = loadConfig({ configFile: values.config, dataDir: values['data-dir'] });
    const store = await openStore(config);
    try {
      await store.append({ records: [{ kind: 'recording.read', at: Date.now(), data }] });
      // Signed when this machine has the signing key (a reader's machine may not: the read stays an unsigned tail).
      await signChain(config, store, { create: false }).catch((err: unknown) =>
        out.stderr.write(
          `vigil: warning: this read was recorded but could not be signed (${(err as Error).message})\n`,
        ),
      );
    } finally {
      await store.close();
    }
  } catch (err) {
    out.stderr.write(`vigil: warning: this read could not be recorded in the access log (${(err as Error).message})\n`);
  }
}

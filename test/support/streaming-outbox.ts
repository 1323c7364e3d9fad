import path from 'node:path';
import pino from 'pino';
import { Outbox } from '../../src/export/outbox.js';
import { createSink } from '../../src/export/sink.js';
import { sinkConfigSchema } from '../../src/export/sinks-config.js';
import { SqliteAuditStore } from '../../src/store/sqlite/sqlite-audit-store.js';

/** A failed delivery as the outbox logs it: when, and the retry it announced (-1: none). */
export interface DeliveryFailure {
  readonly at: number;
  readonly retryInMs: number;
}

/**
 * A running outbox (its own timer, default poll) on a new SQLite store in `dir`, to a syslog sink named after its
 * `transport` at 127.0.0.1:`port`; `onFailure` hears each failed delivery. What closes them is pushed on `cleanups`.
 */
export function streamingOutbox(opts: {
  readonly dir: string;
  readonly transport: 'udp' | 'tcp';
  readonly port: number;
  readonly onFailure: (failure: DeliveryFailure) => void;
  readonly cleanups: Array<() => Promise<void> | void>;
}): { store: SqliteAuditStore; outbox: Outbox } {
  const { transport, port, onFailure, cleanups } = opts;
  const store = SqliteAuditStore.open({ file: path.join(opts.dir, 'vigil.db') });
  cleanups.push(() => store.close());
  const sink = createSink(
    sinkConfigSchema.parse({ type: 'syslog', name: transport, transport, host: '127.0.0.1', port }),
  );
  const log = pino(
    { level: 'warn' },
    {
      write: (line: string) => {
        const l = JSON.parse(line) as { msg: string; retryInMs?: number };
        if (l.msg.startsWith('SIEM sink delivery failed')) onFailure({ at: Date.now(), retryInMs: l.retryInMs ?? -1 });
      },
    },
  );
  const outbox = new Outbox(store, [sink], { gateway: 'test', log });
  cleanups.push(() => outbox.close(0));
  outbox.start();
  return { store, outbox };
}

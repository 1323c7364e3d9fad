/**
 * Exports of recorded exchanges, streamed one exchange at a time so memory stays flat however many are exported:
 * JSONL (one {@link ExchangeView} per line, exactly what `readExchange` returns) or a Markdown transcript. Shared by
 * the admin API and `vigil sessions export`.
 */
import type { Writable } from 'node:stream';
import { readExchanges, type ExchangeView } from '../recorder/exchange-reader.js';
import type { AuditStore, ExchangeFilter } from '../store/audit-store.js';
import { markdownExchange, markdownTitle } from './markdown-transcript.js';

export type ExportFormat = 'jsonl' | 'markdown';

export const EXPORT_FORMATS: readonly ExportFormat[] = ['jsonl', 'markdown'];

/** Exchanges listed per store page while exporting a filtered set. */
const PAGE = 200;
/**
 * Exchanges read from the store together: a read per exchange was two round trips each (PostgreSQL: ~0.3 ms an
 * exchange; through SQLite's read thread it would be as many), while memory holds only this many exchanges at once.
 */
const READ_BATCH = 25;

/** The exchanges `ids` names, in that order, read {@link READ_BATCH} at a time. */
async function* readInBatches(store: AuditStore, ids: readonly string[]): AsyncGenerator<ExchangeView> {
  for (let i = 0; i < ids.length; i += READ_BATCH) {
    const batch = ids.slice(i, i + READ_BATCH);
    const views = await readExchanges(store, batch);
    for (const id of batch) {
      const view = views.get(id);
      if (view) yield view;
    }
  }
}

/** A session's exchanges in the order they started; `keep` drops the ones the reader may not see. */
export async function* sessionExchanges(
  store: AuditStore,
  sessionId: string,
  keep: (x: ExchangeView) => boolean = () => true,
): AsyncGenerator<ExchangeView> {
  const ids = (await store.listExchanges(sessionId)).map((x) => x.id);
  for await (const view of readInBatches(store, ids)) if (keep(view)) yield view;
}

/** Every exchange matching `filter`, newest first, read page by page. */
export async function* filteredExchanges(store: AuditStore, filter: ExchangeFilter): AsyncGenerator<ExchangeView> {
  let cursor: string | undefined;
  do {
    const page = await store.listExchangesFiltered({ ...filter, limit: PAGE, cursor });
    yield* readInBatches(
      store,
      page.items.map((x) => x.id),
    );
    cursor = page.nextCursor ?? undefined;
  } while (cursor !== undefined);
}

/** Resolves when `out` can take more, or is closed (a client that went away must not hold an export forever). */
export function drained(out: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      out.off('drain', done);
      out.off('close', done);
      resolve();
    };
    out.on('drain', done);
    out.on('close', done);
  });
}

export interface ExportOptions {
  readonly format: ExportFormat;
  /** The Markdown transcript's title. */
  readonly title: string;
  /** Called after every exchange written, with the count so far. */
  readonly onProgress?: (written: number) => void;
}

/**
 * Write the exchanges to `out`, waiting for `drain` whenever it pushes back. Does not end `out`.
 *
 * @returns how many exchanges were written.
 */
export async function writeExport(
  exchanges: AsyncIterable<ExchangeView>,
  out: Writable,
  options: ExportOptions,
): Promise<number> {
  const write = async (chunk: string): Promise<void> => {
    if (!out.write(chunk)) await drained(out);
    if (out.destroyed) throw new Error('the export was cut: its destination closed');
  };
  let n = 0;
  if (options.format === 'markdown') await write(markdownTitle(options.title));
  for await (const x of exchanges) {
    n++;
    await write(options.format === 'jsonl' ? `${JSON.stringify(x)}\n` : markdownExchange(x, n));
    options.onProgress?.(n);
  }
  return n;
}

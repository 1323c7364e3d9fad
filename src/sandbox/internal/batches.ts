/**
 * The Message Batches API. A batch is answered in full when it is created, so it is `ended` at once; its
 * results are the same replies `/v1/messages` would give for each request's params.
 * https://docs.anthropic.com/en/api/creating-message-batches
 */
import { isObject } from './directives.js';
import type { Exchange } from './exchange.js';
import { sendBytes, sendError, sendJson } from './exchange.js';
import { batchId } from './ids.js';
import { messageBody, parseJsonBody, parseMessagesRequest, planReply } from './reply.js';

interface Batch {
  meta: Record<string, unknown> & { id: string };
  /** The results file: one JSON object per line, in request order. */
  results: Buffer;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** Batches by id, in creation order. */
export class BatchStore {
  readonly #batches = new Map<string, Batch>();
  /** Where results are fetched from; the real API also answers with an absolute URL on its own origin. */
  readonly #origin: () => string;

  constructor(origin: () => string) {
    this.#origin = origin;
  }

  /** Route a request under `/v1/messages/batches`; `rest` is what follows it, split on `/`. */
  handle(ex: Exchange, rest: readonly string[]): void {
    const [id, sub, ...extra] = rest;
    if (id === undefined) {
      if (ex.method === 'POST') return this.#create(ex);
      if (ex.method === 'GET') return this.#list(ex);
    } else if (extra.length === 0) {
      const action = batchAction(ex.method, sub);
      if (action !== undefined) {
        const batch = this.#batches.get(decodeURIComponent(id));
        if (batch === undefined) return sendError(ex, 404, 'not_found_error', `Message batch not found: ${id}`);
        switch (action) {
          case 'retrieve':
          // Every batch has already ended, so cancelling changes nothing, as with a real ended batch.
          case 'cancel':
            return sendJson(ex, 200, batch.meta);
          case 'delete':
            this.#batches.delete(batch.meta.id);
            return sendJson(ex, 200, { id: batch.meta.id, type: 'message_batch_deleted' });
          case 'results':
            return sendBytes(ex, 200, 'application/binary', batch.results);
        }
      }
    }
    sendError(ex, 404, 'not_found_error', `Not found: ${ex.method} ${ex.path}`);
  }

  #create(ex: Exchange): void {
    const json = parseJsonBody(ex.body);
    if (!json.ok) return sendError(ex, 400, 'invalid_request_error', json.message);
    const requests = isObject(json.value) ? json.value['requests'] : undefined;
    if (!Array.isArray(requests) || requests.length === 0) {
      return sendError(ex, 400, 'invalid_request_error', 'requests: Field required');
    }
    let succeeded = 0;
    let errored = 0;
    const lines: string[] = [];
    for (const [i, entry] of requests.entries()) {
      const customId = isObject(entry) ? entry['custom_id'] : undefined;
      if (typeof customId !== 'string') {
        return sendError(ex, 400, 'invalid_request_error', `requests.${i}.custom_id: Field required`);
      }
      const params = isObject(entry) ? entry['params'] : undefined;
      const parsed = parseMessagesRequest(params);
      let result: unknown;
      if (parsed.ok) {
        const raw = JSON.stringify(params);
        result = {
          type: 'succeeded',
          message: messageBody(planReply(parsed.value, raw.length, raw.includes('"cache_control"') ? 'read' : 'none')),
        };
        succeeded++;
      } else {
        result = {
          type: 'errored',
          error: { type: 'error', error: { type: 'invalid_request_error', message: parsed.message } },
        };
        errored++;
      }
      lines.push(JSON.stringify({ custom_id: customId, result }));
    }
    const id = batchId();
    const now = new Date();
    const meta = {
      id,
      type: 'message_batch',
      processing_status: 'ended',
      request_counts: { processing: 0, succeeded, errored, canceled: 0, expired: 0 },
      ended_at: now.toISOString(),
      created_at: now.toISOString(),
      expires_at: new Date(now.getTime() + DAY_MS).toISOString(),
      archived_at: null,
      cancel_initiated_at: null,
      results_url: `${this.#origin()}/v1/messages/batches/${id}/results`,
    };
    this.#batches.set(id, { meta, results: Buffer.from(lines.join('\n') + '\n') });
    sendJson(ex, 200, meta);
  }

  #list(ex: Exchange): void {
    const q = new URLSearchParams(ex.query);
    const limit = Math.min(Math.max(Number(q.get('limit') ?? 20) || 20, 1), 1000);
    const all = [...this.#batches.values()].map((b) => b.meta).reverse(); // newest first
    const after = q.get('after_id');
    const start = after === null ? 0 : all.findIndex((b) => b.id === after) + 1;
    const data = all.slice(start, start + limit);
    sendJson(ex, 200, {
      data,
      has_more: start + limit < all.length,
      first_id: data[0]?.id ?? null,
      last_id: data.at(-1)?.id ?? null,
    });
  }
}

function batchAction(
  method: string,
  sub: string | undefined,
): 'retrieve' | 'delete' | 'cancel' | 'results' | undefined {
  if (sub === undefined) return method === 'GET' ? 'retrieve' : method === 'DELETE' ? 'delete' : undefined;
  if (sub === 'cancel' && method === 'POST') return 'cancel';
  if (sub === 'results' && method === 'GET') return 'results';
  return undefined;
}

/**
 * The Files API, kept in memory for the life of the fake.
 * https://docs.anthropic.com/en/api/files-create
 */
import type { Exchange } from './exchange.js';
import { sendBytes, sendError, sendJson } from './exchange.js';
import { fileId } from './ids.js';
import { parseMultipart } from './multipart.js';

interface StoredFile {
  meta: {
    type: 'file';
    id: string;
    filename: string;
    mime_type: string;
    size_bytes: number;
    created_at: string;
    /**
     * The real API only lets tool-generated files be downloaded; the fake lets uploads be downloaded too, so a
     * test can check that bytes went through a gateway unchanged.
     */
    downloadable: boolean;
  };
  data: Buffer;
}

/** Uploaded files by id, in upload order. */
export class FileStore {
  readonly #files = new Map<string, StoredFile>();

  /** Route a request under `/v1/files`; `rest` is what follows it, split on `/`. */
  handle(ex: Exchange, rest: readonly string[]): void {
    const [id, sub, ...extra] = rest;
    if (id === undefined) {
      if (ex.method === 'POST') return this.#upload(ex);
      if (ex.method === 'GET') return this.#list(ex);
    } else if (extra.length === 0) {
      const file = this.#files.get(decodeURIComponent(id));
      if (sub === undefined && (ex.method === 'GET' || ex.method === 'DELETE')) {
        if (file === undefined) return notFound(ex, id);
        if (ex.method === 'GET') return sendJson(ex, 200, file.meta);
        this.#files.delete(file.meta.id);
        return sendJson(ex, 200, { id: file.meta.id, type: 'file_deleted' });
      }
      if (sub === 'content' && ex.method === 'GET') {
        if (file === undefined) return notFound(ex, id);
        return sendBytes(ex, 200, file.meta.mime_type, file.data);
      }
    }
    sendError(ex, 404, 'not_found_error', `Not found: ${ex.method} ${ex.path}`);
  }

  #upload(ex: Exchange): void {
    const parts = parseMultipart(ex.body, ex.req.headers['content-type']);
    const part = parts?.find((p) => p.name === 'file');
    if (part === undefined) {
      return sendError(ex, 400, 'invalid_request_error', 'file: Field required (multipart/form-data upload)');
    }
    const meta: StoredFile['meta'] = {
      type: 'file',
      id: fileId(),
      filename: part.filename ?? 'upload',
      mime_type: part.contentType ?? 'application/octet-stream',
      size_bytes: part.data.length,
      created_at: new Date().toISOString(),
      downloadable: true,
    };
    // Copy: the part is a view into the request body, which should not be kept alive by the store.
    this.#files.set(meta.id, { meta, data: Buffer.from(part.data) });
    sendJson(ex, 200, meta);
  }

  #list(ex: Exchange): void {
    // Newest first, like the real API.
    const data = [...this.#files.values()].map((f) => f.meta).reverse();
    sendJson(ex, 200, {
      data,
      has_more: false,
      first_id: data[0]?.id ?? null,
      last_id: data.at(-1)?.id ?? null,
      next_page: null,
    });
  }
}

function notFound(ex: Exchange, id: string): void {
  sendError(ex, 404, 'not_found_error', `File not found: ${id}`);
}

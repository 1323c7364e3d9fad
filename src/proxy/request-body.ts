/** Reads a request body into memory, refusing (413) beyond the limit without reading the rest. */
import type { IncomingMessage } from 'node:http';
import { VigilError } from '../errors.js';

export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    return Promise.reject(tooLarge(limit));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        req.pause();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)));
    req.once('error', (err) =>
      reject(new VigilError('BAD_REQUEST', 'the request body could not be read', { cause: err })),
    );
  });
}

function tooLarge(limit: number): VigilError {
  return new VigilError(
    'BODY_TOO_LARGE',
    `request body is larger than this gateway accepts (${limit} bytes; raise limits.max_request_body to allow more)`,
  );
}

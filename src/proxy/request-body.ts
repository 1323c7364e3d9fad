/**
 * Reads a request body into memory, refusing (413) beyond the limit without reading the rest, and decodes a
 * compressed one: masking, policy and the record must see what the caller actually sent.
 */
import type { IncomingMessage } from 'node:http';
import { VigilError } from '../errors.js';
import { contentCodings, decodeWhole, SUPPORTED_CODINGS, unsupportedCoding } from '../net/content-coding.js';

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

/**
 * The body with its `content-encoding` undone, or null when it has none (`identity` or absent). The decoded body is
 * what is judged, recorded and forwarded (without the header): a gzip body would otherwise reach the store as an
 * opaque blob that no masking saw. Decoded, it is held to the same limit as any body (no decompression bombs).
 *
 * @throws VigilError 400 for an encoding the gateway cannot undo or bytes that do not decode; 413 past `limit`.
 */
export function decodeBody(body: Buffer, encoding: string | undefined, limit: number): Buffer | null {
  if (encoding === undefined) return null; // the usual request: no allocation on the hot path
  const codings = contentCodings(encoding);
  if (codings.length === 0) return null;
  const unknown = unsupportedCoding(codings);
  if (unknown !== undefined) {
    throw new VigilError(
      'BAD_REQUEST',
      `request content-encoding "${unknown}" is not supported by this gateway (send ${SUPPORTED_CODINGS}, or none)`,
    );
  }
  let out = body;
  // Listed in the order they were applied: undone last first (RFC 9110 §8.4).
  for (const coding of codings.reverse()) {
    try {
      out = decodeWhole(coding, out, { maxOutputLength: limit });
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(limit);
      throw new VigilError('BAD_REQUEST', `request body could not be decoded as ${coding}`, { cause: err });
    }
  }
  return out;
}

function tooLarge(limit: number): VigilError {
  return new VigilError(
    'BODY_TOO_LARGE',
    `request body is larger than this gateway accepts (${limit} bytes; raise limits.max_request_body to allow more)`,
  );
}

/**
 * Reads a request body into memory, refusing (413) beyond the limit without reading the rest, and decodes a
 * compressed one: masking, policy and the record must see what the caller actually sent.
 */
import type { IncomingMessage } from 'node:http';
import { brotliDecompressSync, gunzipSync, inflateSync, type ZlibOptions } from 'node:zlib';
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

const DECODERS: Record<string, (buf: Buffer, options: ZlibOptions) => Buffer> = {
  gzip: gunzipSync,
  'x-gzip': gunzipSync,
  deflate: inflateSync,
  br: brotliDecompressSync,
};

/**
 * The body with its `content-encoding` undone, or null when it has none (`identity` or absent). The decoded body is
 * what is judged, recorded and forwarded (without the header): a gzip body would otherwise reach the store as an
 * opaque blob that no masking saw. Decoded, it is held to the same limit as any body (no decompression bombs).
 *
 * @throws VigilError 400 for an encoding the gateway cannot undo or bytes that do not decode; 413 past `limit`.
 */
export function decodeBody(body: Buffer, encoding: string | undefined, limit: number): Buffer | null {
  if (encoding === undefined) return null; // the usual request: no allocation on the hot path
  const codings = encoding
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  if (codings.length === 0) return null;
  let out = body;
  // Listed in the order they were applied: undone last first (RFC 9110 §8.4).
  for (const coding of codings.reverse()) {
    const decode = DECODERS[coding];
    if (!decode) {
      throw new VigilError(
        'BAD_REQUEST',
        `request content-encoding "${coding}" is not supported by this gateway (send gzip, deflate, br, or none)`,
      );
    }
    try {
      out = decode(out, { maxOutputLength: limit });
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

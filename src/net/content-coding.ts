/**
 * HTTP content codings (RFC 9110 §8.4): the ones the gateway undoes, for request bodies (whole, in memory) and
 * response bodies (streamed, for the record only — the client gets upstream's bytes as they are).
 */
import type { Readable, Transform, Writable } from 'node:stream';
import {
  brotliDecompressSync,
  createBrotliDecompress,
  createGunzip,
  createInflate,
  gunzipSync,
  inflateSync,
  type ZlibOptions,
} from 'node:zlib';

interface Coding {
  readonly whole: (buf: Buffer, options: ZlibOptions) => Buffer;
  readonly stream: () => Transform;
}

const CODINGS: Readonly<Record<string, Coding>> = {
  gzip: { whole: gunzipSync, stream: createGunzip },
  'x-gzip': { whole: gunzipSync, stream: createGunzip },
  deflate: { whole: inflateSync, stream: createInflate },
  br: { whole: brotliDecompressSync, stream: createBrotliDecompress },
};

/** The codings above, as an error message names them (`x-gzip` is gzip's old name). */
export const SUPPORTED_CODINGS = 'gzip, deflate, br';

/** The codings a `content-encoding` header lists, in the order they were applied, without `identity`. */
export function contentCodings(header: string | undefined): string[] {
  if (header === undefined) return [];
  return header
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
}

/** The first of `codings` the gateway cannot undo, or undefined when it can undo them all. */
export function unsupportedCoding(codings: readonly string[]): string | undefined {
  return codings.find((c) => !Object.hasOwn(CODINGS, c));
}

/**
 * Undo one coding of a whole body, output limited as `options` says.
 * @throws when `coding` is an {@link unsupportedCoding}, or the bytes do not decode.
 */
export function decodeWhole(coding: string, body: Buffer, options: ZlibOptions): Buffer {
  const c = Object.hasOwn(CODINGS, coding) ? CODINGS[coding] : undefined;
  if (!c) throw new Error(`unsupported content coding "${coding}"`);
  return c.whole(body, options);
}

/** A streaming decoder: bytes are written to `input`, decoded bytes come out of `output` (the same stream for one). */
export interface StreamDecoder {
  readonly input: Writable;
  readonly output: Readable;
}

/**
 * A streaming decoder undoing `codings` (last applied first), or null when there is nothing to undo or a coding is
 * not one the gateway knows (the bytes are then kept as they came). An error in any stage ends `output` with it.
 */
export function streamDecoder(codings: readonly string[]): StreamDecoder | null {
  if (codings.length === 0 || unsupportedCoding(codings) !== undefined) return null;
  const stages = [...codings].reverse().map((c) => CODINGS[c]!.stream());
  for (let i = 1; i < stages.length; i++) {
    const next = stages[i]!;
    stages[i - 1]!.on('error', (err) => next.destroy(err)).pipe(next);
  }
  return { input: stages[0]!, output: stages.at(-1)! };
}

/** The JSON bodies the admin API's POST routes take (approval decisions, gateway keys): small objects. */
import type { IncomingMessage } from 'node:http';
import { VigilError } from '../errors.js';
import { readBody } from '../proxy/request-body.js';

const MAX_BODY = 16 * 1024;

/** The request's body as a JSON object; an empty body is `{}`. */
export async function jsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const raw = await readBody(req, MAX_BODY);
  if (raw.length === 0) return {};
  try {
    const v = JSON.parse(raw.toString('utf8')) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch {
    throw new VigilError('BAD_REQUEST', 'the body must be a JSON object, e.g. {"reason": "…"}');
  }
}

/** `body[key]` when it is a string of at most 2000 characters; undefined when absent; else 400 naming the key. */
export function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length > 2000)
    throw new VigilError('BAD_REQUEST', `${key} must be a string of at most 2000 characters`);
  return v;
}

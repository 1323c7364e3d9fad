/**
 * Identifiers shaped like the real API's, so code that sniffs prefixes (`msg_01…`, `toolu_01…`, `req_011C…`) or
 * stores ids in fixed-width columns sees what production would send.
 */
import { randomBytes } from 'node:crypto';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** `length` base-62 characters; the modulo bias is irrelevant for ids that only need to be unique. */
function base62(length: number): string {
  const bytes = randomBytes(length);
  let out = '';
  for (let i = 0; i < length; i++) out += BASE62[bytes[i]! % 62];
  return out;
}

/** A message id, e.g. `msg_01XFDUDYJgAACzvnptvVoYEL`. */
export const messageId = (): string => `msg_01${base62(22)}`;
/** A tool-use block id, e.g. `toolu_01A09q90qw90lq917835lq9`. */
export const toolUseId = (): string => `toolu_01${base62(22)}`;
/** A `request-id` header value, e.g. `req_011CSHoEeqs5C35K2UUqR7Fy`. */
export const requestId = (): string => `req_011C${base62(20)}`;
/** A message batch id, e.g. `msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d`. */
export const batchId = (): string => `msgbatch_01${base62(22)}`;
/** A file id, e.g. `file_011CNha8iCJcU1wXNR6q4V8w`. */
export const fileId = (): string => `file_011C${base62(20)}`;

/**
 * Requests Node's HTTP parser refuses before a server's handler sees them: headers over {@link MAX_HEADER_BYTES}, a
 * request too slow to arrive, or bytes that are not HTTP/1.1. Node's own answer to them has no body; these answers
 * carry the server's JSON error body, naming what was wrong, with a `request-id` to find the log line by.
 */
import http from 'node:http';
import type https from 'node:https';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { newExchangeId } from '../recorder/ids.js';
import { VigilError } from '../errors.js';

/**
 * The most a request's headers may hold in all (Node's default is 16 KiB): an identity provider's access token with
 * many group claims runs to several, and it is the caller's only way in. Give it to `http.createServer` as
 * `maxHeaderSize`.
 */
export const MAX_HEADER_BYTES = 64 * 1024;

/** What a refused request is told: the error in the server's JSON shape. */
export type RefusalBody = (refusal: VigilError) => string;

/** Answer what `server`'s parser refuses with `body`'s JSON instead of Node's empty answer. */
export function answerParserRefusals(server: http.Server | https.Server, log: Logger, body: RefusalBody): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // As Node's own handler does: no answer on a socket whose current response has begun (it would corrupt it).
    const current = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || current?.headersSent) {
      socket.destroy();
      return;
    }
    const refusal = refusalOf(err);
    const requestId = `vigil_${newExchangeId()}`;
    log.warn(
      { requestId, code: err.code, status: refusal.status },
      'request refused before it was read: it is not valid HTTP, or too large or slow',
    );
    const text = body(refusal);
    socket.end(
      `HTTP/1.1 ${refusal.status} ${http.STATUS_CODES[refusal.status]}\r\n` +
        'content-type: application/json\r\n' +
        `content-length: ${Buffer.byteLength(text)}\r\n` +
        `request-id: ${requestId}\r\n` +
        'connection: close\r\n\r\n' +
        text,
    );
  });
}

function refusalOf(err: NodeJS.ErrnoException): VigilError {
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    return new VigilError(
      'HEADERS_TOO_LARGE',
      `the request's headers are larger than the gateway accepts (${MAX_HEADER_BYTES / 1024} KiB in all)`,
    );
  }
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT')
    return new VigilError('REQUEST_TIMEOUT', 'the request did not arrive in time');
  return new VigilError('BAD_REQUEST', `the request is not valid HTTP/1.1 (${err.code ?? err.message})`);
}

/**
 * A real HTTP receiver on 127.0.0.1:0 that records every request (method, path, headers, body) and answers with
 * whatever the test says: the stand-in for a webhook, Splunk HEC or an OpenTelemetry collector.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AuditEvent } from '../../src/export/audit-event.js';

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export interface Reply {
  readonly status: number;
  readonly body?: string;
  readonly contentType?: string;
  /** Never answer (to exercise timeouts); the connection is dropped when the server closes. */
  readonly hang?: boolean;
}

export interface RecordingHttpServer {
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** What the next requests get; default 200 with an empty body. A promise: the answer waits for it. */
  reply: (req: RecordedRequest) => Reply | Promise<Reply>;
  close(): Promise<void>;
}

/** The audit events an HTTP SIEM sink POSTed in `requests` (bodies `{"events": [...]}`), in the order received. */
export function postedEvents(requests: readonly RecordedRequest[]): AuditEvent[] {
  return requests.flatMap((r) => (JSON.parse(r.body) as { events: AuditEvent[] }).events);
}

export async function startRecordingHttpServer(): Promise<RecordingHttpServer> {
  const requests: RecordedRequest[] = [];
  const state: RecordingHttpServer = {
    url: '',
    requests,
    reply: () => ({ status: 200 }),
    close: async () => undefined,
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const recorded = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      requests.push(recorded);
      const reply = await state.reply(recorded);
      if (reply.hang) return;
      res.writeHead(reply.status, { 'content-type': reply.contentType ?? 'application/json' });
      res.end(reply.body ?? '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

/** A loopback port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

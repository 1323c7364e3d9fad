/**
 * Baseline: the least a Node reverse proxy can do — pipe the request to the upstream over a kept-alive connection
 * and pipe the response back, no parsing, no recording. Vigil's CPU per request is compared against this.
 *
 * Usage: node bench/pipe-proxy.mjs <upstream-url>   → prints `pipe-proxy listening on <url>`
 */
import http from 'node:http';

const upstream = new URL(process.argv[2] ?? 'http://127.0.0.1:9090');
const agent = new http.Agent({ keepAlive: true, maxSockets: 256, keepAliveMsecs: 30_000 });
// Per-connection headers must not be forwarded (RFC 9110 §7.6.1); Node frames the body itself.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-connection',
]);

const server = http.createServer({ noDelay: true, keepAliveTimeout: 65_000 }, (req, res) => {
  const headers = {};
  for (const [name, value] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(name)) headers[name] = value;
  headers.host = upstream.host;
  const out = http.request(
    { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent },
    (up) => {
      const back = {};
      for (const [name, value] of Object.entries(up.headers)) if (!HOP_BY_HOP.has(name)) back[name] = value;
      res.writeHead(up.statusCode ?? 502, back);
      up.pipe(res);
    },
  );
  out.on('error', () => (res.headersSent ? res.destroy() : res.writeHead(502).end()));
  req.pipe(out);
});
server.listen(0, '127.0.0.1', () => {
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  process.stdout.write(`pipe-proxy listening on http://127.0.0.1:${port}\n`);
});
process.once('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});

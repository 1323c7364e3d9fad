/**
 * A real HTTP proxy that tunnels (CONNECT), as a company's egress proxy does, requiring Basic credentials when given
 * them: it records each tunnel asked for, and refuses (407) one whose credentials are wrong.
 */
import http from 'node:http';
import net from 'node:net';

export interface Tunnel {
  /** `host:port` asked for. */
  readonly target: string;
  /** The Proxy-Authorization header as received, decoded (`user:password`), or null. */
  readonly credentials: string | null;
  readonly allowed: boolean;
}

export class ConnectProxy {
  readonly tunnels: Tunnel[] = [];
  private readonly server: http.Server;
  private readonly sockets = new Set<net.Socket>();

  /** @param credentials - `user:password` the proxy requires; none: it requires none. */
  constructor(private readonly credentials?: string) {
    this.server = http.createServer((_req, res) => {
      res.writeHead(405, { 'content-type': 'text/plain' }).end('only CONNECT here\n');
    });
    this.server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
      this.sockets.add(client);
      client.on('close', () => this.sockets.delete(client));
      client.on('error', () => client.destroy());
      const auth = req.headers['proxy-authorization'];
      const given = auth?.startsWith('Basic ') ? Buffer.from(auth.slice(6), 'base64').toString() : null;
      const allowed = this.credentials === undefined || given === this.credentials;
      this.tunnels.push({ target: req.url ?? '', credentials: given, allowed });
      if (!allowed) {
        client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n\r\n');
        return;
      }
      const [host, port] = (req.url ?? '').split(':');
      const upstream = net.connect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (head.length) upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      this.sockets.add(upstream);
      upstream.on('close', () => this.sockets.delete(upstream));
      upstream.on('error', () => client.destroy());
    });
  }

  /** Listens on 127.0.0.1; resolves with the proxy's port. */
  listen(): Promise<number> {
    return new Promise((resolve) =>
      this.server.listen(0, '127.0.0.1', () => resolve((this.server.address() as net.AddressInfo).port)),
    );
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

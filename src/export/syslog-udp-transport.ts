/**
 * Syslog over UDP (RFC 5426): one datagram per message on a connected socket. UDP has no delivery guarantee at all;
 * a connected socket at least turns the receiver's ICMP "port unreachable" into an error on a later send, which makes
 * the outbox retry the batch. Use TCP or TLS where losing an audit event matters.
 */
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';

export class SyslogUdpTransport {
  readonly #host: string;
  readonly #port: number;
  #socket: Promise<dgram.Socket> | undefined;

  constructor(host: string, port: number) {
    this.#host = host;
    this.#port = port;
  }

  /** Sends each message as its own datagram, in order; rejects on the first error the kernel reports. */
  async send(messages: readonly Buffer[]): Promise<void> {
    const pending = (this.#socket ??= this.#open());
    try {
      const socket = await pending;
      for (const m of messages) {
        await new Promise<void>((resolve, reject) => socket.send(m, (err) => (err ? reject(err) : resolve())));
      }
    } catch (err) {
      this.#drop(pending);
      throw err;
    }
  }

  async #open(): Promise<dgram.Socket> {
    // The socket's family must match the receiver's address, so resolve first.
    const { address, family } = await lookup(this.#host);
    const socket = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
    socket.on('error', () => this.#drop(Promise.resolve(socket)));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(this.#port, address, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    return socket;
  }

  #drop(pending: Promise<dgram.Socket>): void {
    if (this.#socket === pending) this.#socket = undefined;
    pending
      .then(
        (s) => s.close(),
        () => undefined,
      )
      .catch(() => undefined);
  }

  async close(): Promise<void> {
    const pending = this.#socket;
    this.#socket = undefined;
    if (!pending) return;
    const socket = await pending.catch(() => undefined);
    if (!socket) return;
    await new Promise<void>((resolve) => {
      try {
        socket.close(() => resolve());
      } catch {
        resolve(); // already closed after an error
      }
    });
  }
}

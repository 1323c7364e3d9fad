/**
 * Syslog over TCP (RFC 6587) or TLS (RFC 5425): one persistent connection, opened on first use and opened again after
 * any failure, carrying octet-counted frames.
 *
 * A write "succeeds" once the kernel has the bytes; plain syslog has no acknowledgement, so a receiver that dies with
 * bytes in flight loses them silently (RELP exists for that). Two things narrow the window: the socket is read so the
 * receiver's FIN is noticed, and a new batch waits one event-loop turn for pending socket events before it trusts an
 * existing connection. What remains is covered by the outbox's at-least-once retry only when the failure shows up.
 */
import net from 'node:net';
import tls from 'node:tls';

export interface SyslogStreamOptions {
  readonly host: string;
  readonly port: number;
  /** Deadline for connecting (TLS handshake included) and, separately, for handing one batch to the kernel. */
  readonly timeoutMs: number;
  /** Present for TLS: ca, cert, key, rejectUnauthorized. */
  readonly tls?: tls.ConnectionOptions | undefined;
}

export class SyslogStreamTransport {
  readonly #opts: SyslogStreamOptions;
  #socket: net.Socket | undefined;

  constructor(opts: SyslogStreamOptions) {
    this.#opts = opts;
  }

  /** Writes `data` (already framed); resolves once it was handed to the kernel without error, else rejects. */
  async send(data: Buffer): Promise<void> {
    const socket = await this.#connected();
    try {
      await write(socket, data, this.#opts.timeoutMs);
    } catch (err) {
      this.#drop(socket);
      throw err;
    }
  }

  async #connected(): Promise<net.Socket> {
    if (this.#socket) {
      // Let an already-arrived FIN or RST be processed before writing into a connection the receiver has left.
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.#socket && isUsable(this.#socket)) return this.#socket;
      if (this.#socket) this.#drop(this.#socket);
    }
    const socket = await connect(this.#opts);
    const drop = (): void => this.#drop(socket);
    socket.on('error', drop);
    socket.on('end', drop);
    socket.on('close', drop);
    // Syslog receivers send nothing, but the socket must flow for 'end' to be emitted when the receiver closes.
    socket.resume();
    this.#socket = socket;
    return socket;
  }

  #drop(socket: net.Socket): void {
    if (this.#socket === socket) this.#socket = undefined;
    socket.destroy();
  }

  /** Ends the connection after what was written is flushed. */
  async close(): Promise<void> {
    const socket = this.#socket;
    this.#socket = undefined;
    if (!socket || socket.destroyed) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => socket.destroy(), this.#opts.timeoutMs);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.end();
    });
  }
}

function isUsable(socket: net.Socket): boolean {
  return !socket.destroyed && socket.writable && !socket.readableEnded;
}

function connect(opts: SyslogStreamOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = opts.tls
      ? tls.connect({ ...opts.tls, host: opts.host, port: opts.port })
      : net.connect({ host: opts.host, port: opts.port });
    const timer = setTimeout(() => fail(new Error(`connect timed out after ${opts.timeoutMs} ms`)), opts.timeoutMs);
    function fail(err: Error): void {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    }
    socket.once('error', fail);
    socket.once(opts.tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      socket.off('error', fail);
      // Audit batches are small and latency matters more than packet count; keep-alive finds a vanished receiver.
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 30_000);
      resolve(socket);
    });
  });
}

function write(socket: net.Socket, data: Buffer, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => done(new Error(`write timed out after ${timeoutMs} ms`)), timeoutMs);
    const onError = (err: Error): void => done(err);
    const onClose = (): void => done(new Error('connection closed by the receiver'));
    function done(err?: Error | null): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (err) reject(err);
      else resolve();
    }
    socket.once('error', onError);
    socket.once('close', onClose);
    socket.write(data, (err) => done(err));
  });
}

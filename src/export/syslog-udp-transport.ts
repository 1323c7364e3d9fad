/**
 * Syslog over UDP (RFC 5426): one datagram per message on a connected socket. UDP has no delivery guarantee at all;
 * what a connected socket does give is the receiver host's ICMP "port unreachable" (RFC 1122, 4.1.3.1), which Linux
 * turns into ECONNREFUSED on the socket. Node reports it as an `error` event (from the socket's receive side, not from
 * `send`), a round trip after the datagram left. So a batch is only reported delivered once a short window after its
 * last datagram has passed without such an error; a refusal makes the batch fail and the outbox send it again.
 *
 * What this cannot see: a receiver host that is down or unreachable, a firewall that drops without answering, a
 * receiver that is up but overloaded (its socket buffer full), a refusal slower than the window (that one fails the
 * next batch instead, so it is reported and that batch resent, but the earlier batch is gone), and ICMP the receiver's
 * host rate-limits. Use TCP or TLS where losing an audit event matters.
 */
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';

/** How long a batch waits after its last datagram for the receiver's refusal: a round trip on a LAN, with margin. */
export const UDP_REFUSAL_WAIT_MS = 50;

/** A connected socket and the first error it reported, which condemns it. */
interface Connected {
  readonly socket: dgram.Socket;
  error: Error | undefined;
  /** Called once when the socket reports its first error. */
  onError: ((err: Error) => void) | undefined;
}

export class SyslogUdpTransport {
  readonly #host: string;
  readonly #port: number;
  readonly #refusalWaitMs: number;
  #connected: Promise<Connected> | undefined;

  /** `refusalWaitMs`: the wait after each batch (default {@link UDP_REFUSAL_WAIT_MS}); 0 does not wait at all. */
  constructor(host: string, port: number, opts: { refusalWaitMs?: number } = {}) {
    this.#host = host;
    this.#port = port;
    this.#refusalWaitMs = opts.refusalWaitMs ?? UDP_REFUSAL_WAIT_MS;
  }

  /**
   * Sends each message as its own datagram, in order, then waits for a refusal; rejects on the first error the socket
   * reports — during the batch, in the window after it, or since the previous batch (a late refusal) — and forgets
   * the socket, so the next batch starts on a new one (resolving the host again).
   */
  async send(messages: readonly Buffer[]): Promise<void> {
    const pending = (this.#connected ??= this.#open());
    try {
      const c = await pending;
      for (const m of messages) {
        if (c.error) throw c.error;
        await new Promise<void>((resolve, reject) => c.socket.send(m, (err) => (err ? reject(err) : resolve())));
      }
      await refusal(c, this.#refusalWaitMs);
    } catch (err) {
      this.#drop(pending);
      throw err;
    }
  }

  async #open(): Promise<Connected> {
    // The socket's family must match the receiver's address, so resolve first.
    const { address, family } = await lookup(this.#host);
    const socket = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
    const c: Connected = { socket, error: undefined, onError: undefined };
    // Kept, not acted on here: the error belongs to the batch in flight, or else to the next one.
    socket.on('error', (err) => {
      if (c.error) return;
      c.error = (err as NodeJS.ErrnoException).code === 'ECONNREFUSED' ? refused(err) : err;
      c.onError?.(c.error);
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(this.#port, address, () => {
        socket.off('error', reject);
        resolve();
      });
    }).catch((err: unknown) => {
      closeQuietly(socket);
      throw err;
    });
    return c;
  }

  /** Forgets the socket (if it is still the current one) and closes it. */
  #drop(pending: Promise<Connected>): void {
    if (this.#connected === pending) this.#connected = undefined;
    pending.then((c) => closeQuietly(c.socket)).catch(() => undefined);
  }

  async close(): Promise<void> {
    const pending = this.#connected;
    this.#connected = undefined;
    if (!pending) return;
    const c = await pending.catch(() => undefined);
    if (!c) return;
    await new Promise<void>((resolve) => {
      try {
        c.socket.close(() => resolve());
      } catch {
        resolve(); // already closed
      }
    });
  }
}

/** Resolves after `ms` unless the socket reports an error first (or already has), in which case it rejects. */
function refusal(c: Connected, ms: number): Promise<void> {
  if (c.error) return Promise.reject(c.error);
  if (ms <= 0) return Promise.resolve(); // not even a turn of the event loop: a refusal will fail the next batch
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      c.onError = undefined;
      resolve();
    }, ms);
    c.onError = (err) => {
      clearTimeout(timer);
      c.onError = undefined;
      reject(err);
    };
  });
}

/** ECONNREFUSED from `recvmsg` reads as if receiving failed; say what it means for a sender. */
function refused(err: Error): Error {
  return Object.assign(new Error('ECONNREFUSED: the receiver answered ICMP port unreachable', { cause: err }), {
    code: 'ECONNREFUSED',
  });
}

function closeQuietly(socket: dgram.Socket): void {
  try {
    socket.close();
  } catch {
    // already closed
  }
}

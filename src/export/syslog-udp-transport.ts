/**
 * Syslog over UDP (RFC 5426): one datagram per message on a connected socket. UDP has no delivery guarantee at all;
 * what a connected socket does give is the receiver host's ICMP "port unreachable" (RFC 1122, 4.1.3.1), which Linux
 * turns into ECONNREFUSED on the socket, a round trip after the datagram left. Node reports it as an `error` event
 * from the socket's receive side or, when a datagram is sent before the socket was read, as the error of that `send`.
 * So a batch is only reported delivered once a short window after its last datagram has passed without such an
 * error; a refusal makes the batch fail and the outbox send it again.
 *
 * The window is not paid once per batch: `send` may be called again before the previous batch is confirmed (the
 * outbox keeps up to {@link UDP_IN_FLIGHT_BATCHES} in flight), so the next batch's datagrams go out while the
 * previous one waits. Batches are confirmed in order, and an error condemns every batch still waiting on the socket —
 * the refusal cannot be pinned on one of them — so the outbox resends from the first one.
 *
 * A batch's datagrams go out only after those of the batches handed over before it; a batch whose signal aborts
 * meanwhile (this gateway no longer delivers for the sink: another one sends from the cursor) is not written, or not
 * the rest of it, and fails.
 *
 * What this cannot see: a receiver host that is down or unreachable, a firewall that drops without answering, a
 * receiver that is up but overloaded (its socket buffer full), a refusal slower than the window (that one fails the
 * batches still waiting instead, so it is reported and they are resent, but the batches confirmed before it are gone),
 * and ICMP the receiver's host rate-limits. Use TCP or TLS where losing an audit event matters.
 */
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';

/** How long a batch waits after its last datagram for the receiver's refusal: a round trip on a LAN, with margin. */
export const UDP_REFUSAL_WAIT_MS = 50;

/**
 * Batches the outbox may hand over before the first is confirmed. Each waits {@link UDP_REFUSAL_WAIT_MS}; with this
 * many waiting at once a backlog flows at up to 8 batches per window instead of one, while what is sent but not yet
 * confirmed — what a refusal makes the outbox send again — stays bounded.
 */
export const UDP_IN_FLIGHT_BATCHES = 8;

/** A connected socket and the first error it reported, which condemns it. */
interface Connected {
  readonly socket: dgram.Socket;
  error: Error | undefined;
  /** The batches waiting for their window on this socket: each is told of the socket's first error. */
  readonly waiting: Set<(err: Error) => void>;
}

export class SyslogUdpTransport {
  readonly #host: string;
  readonly #port: number;
  readonly #refusalWaitMs: number;
  #connected: Promise<Connected> | undefined;
  /** The datagrams of one batch go out only after the previous batch's, so the receiver gets them in order. */
  #sending: Promise<unknown> = Promise.resolve();
  /** Batches handed over and not yet confirmed or failed; close() waits for them. */
  readonly #unsettled = new Set<Promise<unknown>>();

  /** `refusalWaitMs`: the wait after each batch (default {@link UDP_REFUSAL_WAIT_MS}); 0 does not wait at all. */
  constructor(host: string, port: number, opts: { refusalWaitMs?: number } = {}) {
    this.#host = host;
    this.#port = port;
    this.#refusalWaitMs = opts.refusalWaitMs ?? UDP_REFUSAL_WAIT_MS;
  }

  /**
   * Sends each message as its own datagram, in order and after the batches handed over before, then waits for a
   * refusal; rejects on the first error the socket reports — during the batch, in the window after it, or since an
   * earlier batch was confirmed (a late refusal) — and forgets the socket, so the next batch starts on a new one
   * (resolving the host again). May be called again before the returned promise settles. Once `signal` aborts, no
   * more of the batch is written, and it rejects with the signal's reason.
   */
  send(messages: readonly Buffer[], signal?: AbortSignal): Promise<void> {
    const sent = this.#sending.then(() => this.#sendAll(messages, signal));
    this.#sending = sent.catch(() => undefined);
    const confirmed = sent.then(({ c, pending }) =>
      waitForRefusal(c, this.#refusalWaitMs).catch((err: unknown) => {
        this.#drop(pending);
        throw err;
      }),
    );
    const tracked = confirmed.catch(() => undefined);
    this.#unsettled.add(tracked);
    void tracked.then(() => this.#unsettled.delete(tracked));
    return confirmed;
  }

  /** Hands the batch's datagrams to the kernel, one after another; on an error, forgets the socket. */
  async #sendAll(
    messages: readonly Buffer[],
    signal: AbortSignal | undefined,
  ): Promise<{ c: Connected; pending: Promise<Connected> }> {
    // A send the kernel takes at once calls back on the next tick, so batches handed over together would go out in
    // one run without the event loop turning: the gateway's requests would wait behind it, and so would a refusal
    // reported on the receive side. Let it turn before each batch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    signal?.throwIfAborted();
    const pending = (this.#connected ??= this.#open());
    try {
      const c = await pending;
      for (const m of messages) {
        signal?.throwIfAborted();
        if (c.error) throw c.error;
        await new Promise<void>((resolve, reject) =>
          c.socket.send(m, (err) => (err ? reject(condemn(c, err)) : resolve())),
        );
      }
      return { c, pending };
    } catch (err) {
      // Called off, the socket is still good for the batches of the next leadership.
      if (!signal?.aborted || err !== signal.reason) this.#drop(pending);
      throw err;
    }
  }

  async #open(): Promise<Connected> {
    // The socket's family must match the receiver's address, so resolve first.
    const { address, family } = await lookup(this.#host);
    const socket = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
    const c: Connected = { socket, error: undefined, waiting: new Set() };
    // Kept, not acted on here: the error belongs to the batches in flight, or else to the next one.
    socket.on('error', (err) => void condemn(c, err));
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

  /** Waits for the batches handed over to be confirmed or to fail, then closes the socket. */
  async close(): Promise<void> {
    await Promise.all(this.#unsettled);
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

/**
 * Keeps the socket's first error, from whichever side Node reports it, and fails every batch waiting on the socket:
 * a refusal cannot be pinned on one datagram, and a receiver that went away may have dropped earlier ones unread.
 * Returns the error kept.
 */
function condemn(c: Connected, err: Error): Error {
  if (c.error) return c.error;
  c.error = (err as NodeJS.ErrnoException).code === 'ECONNREFUSED' ? refused(err) : err;
  for (const fail of c.waiting) fail(c.error);
  c.waiting.clear();
  return c.error;
}

/** Resolves after `ms` unless the socket reports an error first (or already has), in which case it rejects. */
function waitForRefusal(c: Connected, ms: number): Promise<void> {
  if (c.error) return Promise.reject(c.error);
  if (ms <= 0) return Promise.resolve(); // not even a turn of the event loop: a refusal will fail the next batch
  return new Promise<void>((resolve, reject) => {
    let immediate: NodeJS.Immediate | undefined;
    const fail = (err: Error): void => {
      clearTimeout(timer);
      if (immediate) clearImmediate(immediate);
      reject(err);
    };
    // Timers run before the event loop polls for I/O, and setImmediate right after: a refusal that reached the
    // socket before the window ended is seen even when the loop was busy (a GC pause, a starved CPU) past the window.
    const timer = setTimeout(() => {
      immediate = setImmediate(() => {
        c.waiting.delete(fail);
        resolve();
      });
    }, ms);
    c.waiting.add(fail);
  });
}

/** ECONNREFUSED from `recvmsg` reads as if receiving failed, from `send` as if that datagram was; say what it means. */
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

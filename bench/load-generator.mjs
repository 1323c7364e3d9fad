/**
 * Drives one scenario against one target: `concurrency` agents, each with one request in flight, over a pool of
 * as many kept-alive connections. A warm-up phase first (JIT, connection set-up, upstream pools), then a measured
 * phase bounded by a request count and a time cap.
 */
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { AgentSession, MESSAGES_PATH } from './workload.mjs';

/**
 * @typedef {object} RunSamples  one run of one scenario against one target
 * @property {number[]} latencyMs   per successful request: sent → last body byte
 * @property {number[]} ttfbMs      per successful request: sent → first body chunk
 * @property {number} requests      measured requests completed (errors included)
 * @property {number} errors        measured requests that did not end in a 200 with a complete body
 * @property {string | null} firstError
 * @property {number} seconds       wall time of the measured phase
 * @property {boolean} capped       the time cap ended the phase before the request count was reached
 * @property {number} requestBytes  measured phase only
 * @property {number} responseBytes measured phase only
 * @property {{ requestBytes: number, responseBytes: number, requests: number }} sent  warm-up included
 */

/**
 * @param {{ url: string, prefix?: string, concurrency: number, requests: number, warmup: number, timeCapMs: number,
 *           stream: boolean, seed: number, onMeasureStart?: () => void }} opts
 *   `prefix`: put before the API path, e.g. `/c/<connection>` for one of Vigil's named connections.
 *   `onMeasureStart` runs synchronously between warm-up and measurement (CPU snapshots).
 * @returns {Promise<RunSamples>}
 */
export async function runScenario(opts) {
  const pool = new Pool(opts.url, {
    connections: opts.concurrency,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  });
  const agents = Array.from(
    { length: opts.concurrency },
    (_, i) => new AgentSession({ stream: opts.stream, seed: opts.seed + i }),
  );
  const sent = { requestBytes: 0, responseBytes: 0, requests: 0 };
  const prefix = opts.prefix ?? '';

  /** One request; returns its timings or the error text. */
  const one = async (agent) => {
    const { headers, body } = agent.next();
    sent.requests++;
    sent.requestBytes += body.length;
    const t0 = performance.now();
    let first = 0;
    let bytes = 0;
    try {
      const res = await pool.request({ method: 'POST', path: prefix + MESSAGES_PATH, headers, body });
      for await (const chunk of res.body) {
        if (first === 0) first = performance.now();
        bytes += chunk.length;
      }
      const end = performance.now();
      sent.responseBytes += bytes;
      if (res.statusCode !== 200) return { error: `HTTP ${res.statusCode}`, bytesIn: body.length, bytesOut: bytes };
      return { latency: end - t0, ttfb: first - t0, bytesIn: body.length, bytesOut: bytes };
    } catch (err) {
      return {
        error: `${err?.code ?? ''} ${err?.message ?? String(err)}`.trim(),
        bytesIn: body.length,
        bytesOut: bytes,
      };
    }
  };

  /** Run `total` requests over all agents; stop issuing at `deadline`. */
  const phase = async (total, deadline, sink) => {
    let issued = 0;
    const worker = async (agent) => {
      while (issued < total && performance.now() < deadline) {
        issued++;
        sink(await one(agent));
      }
    };
    await Promise.all(agents.map(worker));
  };

  try {
    let warmErrors = 0;
    let warmFirstError = null;
    await phase(opts.warmup, performance.now() + opts.timeCapMs, (r) => {
      if (r.error) {
        warmErrors++;
        warmFirstError ??= r.error;
      }
    });
    if (warmErrors === opts.warmup && opts.warmup > 0) {
      // Measuring a target that fails every request would only time its error path.
      throw new Error(`every warm-up request to ${opts.url} failed; first: ${warmFirstError}`);
    }

    const latencies = [];
    const ttfbs = [];
    let errors = 0;
    let firstError = null;
    let bytesIn = 0;
    let bytesOut = 0;
    let done = 0;
    opts.onMeasureStart?.();
    const start = performance.now();
    const deadline = start + opts.timeCapMs;
    await phase(opts.requests, deadline, (r) => {
      done++;
      bytesIn += r.bytesIn;
      bytesOut += r.bytesOut;
      if (r.error) {
        errors++;
        firstError ??= r.error;
        return;
      }
      latencies.push(r.latency);
      ttfbs.push(r.ttfb);
    });
    return {
      latencyMs: latencies,
      ttfbMs: ttfbs,
      requests: done,
      errors,
      firstError,
      seconds: (performance.now() - start) / 1000,
      capped: done < opts.requests,
      requestBytes: bytesIn,
      responseBytes: bytesOut,
      sent,
    };
  } finally {
    await pool.destroy();
  }
}

/**
 * Pooling the runs of one scenario against one target (one per round) into the figures the report shows.
 */

/** Nearest-rank percentile of a sorted array. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** Median; the mean of the middle two for an even count. */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * @typedef {object} ScenarioSummary
 * @property {number} requests   measured requests over all rounds
 * @property {number} errors
 * @property {string | null} firstError
 * @property {boolean} capped    some round hit its time cap
 * @property {number} rps        median over rounds of successful requests ÷ seconds: on a shared machine one slow
 *                               round (a noisy neighbour) should not decide a verdict
 * @property {number} rpsPooled  all successful requests ÷ all measured seconds
 * @property {number[]} rpsPerRound  to judge the spread
 * @property {{ p50: number, p99: number, mean: number }} latencyMs
 * @property {{ p50: number, p99: number }} ttfbMs
 * @property {number} avgRequestBytes
 * @property {number} avgResponseBytes
 * @property {{ proxyMs: number | null, proxyTicks: number | null, upstreamMsPerRequest: number,
 *              loadGeneratorMsPerRequest: number }} cpu
 */

/**
 * @param {Array<import('./load-generator.mjs').RunSamples & { cpu: { proxyMs: number | null, proxyTicks: number | null,
 *   upstreamMs: number, loadGeneratorMs: number } }>} runs
 * @returns {ScenarioSummary}
 */
export function summarizeRuns(runs) {
  const latencies = runs.flatMap((r) => r.latencyMs).sort((a, b) => a - b);
  const ttfbs = runs.flatMap((r) => r.ttfbMs).sort((a, b) => a - b);
  const total = (f) => runs.reduce((a, r) => a + f(r), 0);
  const requests = total((r) => r.requests);
  const errors = total((r) => r.errors);
  const seconds = total((r) => r.seconds);
  const proxyKnown = runs.every((r) => r.cpu.proxyMs !== null);
  const perRound = runs.map((r) => (r.requests - r.errors) / r.seconds);
  return {
    requests,
    errors,
    firstError: runs.find((r) => r.firstError)?.firstError ?? null,
    capped: runs.some((r) => r.capped),
    rps: median(perRound),
    rpsPooled: (requests - errors) / seconds,
    rpsPerRound: perRound,
    latencyMs: {
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      mean: latencies.reduce((a, b) => a + b, 0) / (latencies.length || 1),
    },
    ttfbMs: { p50: percentile(ttfbs, 50), p99: percentile(ttfbs, 99) },
    avgRequestBytes: total((r) => r.requestBytes) / (requests || 1),
    avgResponseBytes: total((r) => r.responseBytes) / (requests || 1),
    cpu: {
      proxyMs: proxyKnown ? total((r) => r.cpu.proxyMs) : null,
      proxyTicks: proxyKnown ? total((r) => r.cpu.proxyTicks) : null,
      upstreamMsPerRequest: total((r) => r.cpu.upstreamMs) / (requests || 1),
      loadGeneratorMsPerRequest: total((r) => r.cpu.loadGeneratorMs) / (requests || 1),
    },
  };
}

/**
 * Turning measurements into the three performance goals and the tables people read: a plain-text table for the
 * terminal and a Markdown one for the README. Every verdict is computed from this run's numbers.
 */

/** The scenarios, in the order they run and are shown. */
export const SCENARIOS = [
  { key: 'json c=1', stream: false, concurrency: 1 },
  { key: 'json c=32', stream: false, concurrency: 32 },
  { key: 'sse c=1', stream: true, concurrency: 1 },
  { key: 'sse c=32', stream: true, concurrency: 32 },
];

/** The goals Vigil is held to, each against a baseline measured in the same run. */
export const GOALS = {
  addedTtfbMs: 1, // added time to first byte vs direct, SSE c=1, p50: below this
  cpuVsPipe: 2, // CPU per request ÷ the Node pipe proxy's, all scenarios: at most this
  throughputVsDirect: 0.7, // requests/s at c=32 ÷ direct: at least this (JSON and SSE)
};

const fmt = (n, digits = 2) => (n === null || n === undefined || Number.isNaN(n) ? 'n/a' : n.toFixed(digits));
const times = (n) => (n === null || n === undefined || Number.isNaN(n) ? 'n/a' : `${n.toFixed(2)}×`);

/** CPU per request over every measured request of a target, in ms (finer than any one scenario's ticks). */
function cpuPerRequest(target) {
  let ms = 0;
  let requests = 0;
  for (const s of Object.values(target.scenarios)) {
    if (s.cpu.proxyMs === null) return null;
    ms += s.cpu.proxyMs;
    requests += s.requests;
  }
  return requests > 0 ? ms / requests : null;
}

/**
 * The goals for every Vigil target, plus the same figures for the baseline proxies as context.
 *
 * @param {Array<{ name: string, role: string, skipped?: string, scenarios?: Record<string, any> }>} targets
 */
export function evaluate(targets) {
  const ran = targets.filter((t) => !t.skipped);
  const direct = ran.find((t) => t.role === 'direct');
  const pipe = ran.find((t) => t.name === 'node pipe proxy');
  const pipeCpu = pipe ? cpuPerRequest(pipe) : null;
  return ran
    .filter((t) => t.role !== 'direct')
    .map((t) => {
      const addedTtfb = direct ? t.scenarios['sse c=1'].ttfbMs.p50 - direct.scenarios['sse c=1'].ttfbMs.p50 : null;
      const addedJson = direct
        ? t.scenarios['json c=1'].latencyMs.p50 - direct.scenarios['json c=1'].latencyMs.p50
        : null;
      const cpu = cpuPerRequest(t);
      const cpuRatio = cpu !== null && pipeCpu ? cpu / pipeCpu : null;
      const tputJson = direct ? t.scenarios['json c=32'].rps / direct.scenarios['json c=32'].rps : null;
      const tputSse = direct ? t.scenarios['sse c=32'].rps / direct.scenarios['sse c=32'].rps : null;
      const verdict = (ok) => (t.role !== 'vigil' ? null : ok === null ? 'n/a' : ok ? 'PASS' : 'MISS');
      return {
        target: t.name,
        role: t.role,
        addedTtfbP50Ms: addedTtfb,
        addedJsonLatencyP50Ms: addedJson,
        cpuMsPerRequest: cpu,
        cpuVsPipe: cpuRatio,
        throughputVsDirect: { json: tputJson, sse: tputSse },
        verdicts: {
          addedTtfb: verdict(addedTtfb === null ? null : addedTtfb < GOALS.addedTtfbMs),
          cpuVsPipe: verdict(cpuRatio === null ? null : cpuRatio <= GOALS.cpuVsPipe),
          throughputVsDirect: verdict(
            tputJson === null || tputSse === null ? null : Math.min(tputJson, tputSse) >= GOALS.throughputVsDirect,
          ),
        },
      };
    });
}

function pad(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) =>
    r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  '),
  );
}

function measurementRows(targets) {
  const rows = [];
  for (const t of targets) {
    if (t.skipped) continue;
    for (const { key, stream } of SCENARIOS) {
      const s = t.scenarios[key];
      rows.push([
        t.name,
        key,
        fmt(s.rps, 0),
        fmt(s.latencyMs.p50),
        fmt(s.latencyMs.p99),
        stream ? fmt(s.ttfbMs.p50) : '',
        stream ? fmt(s.ttfbMs.p99) : '',
        s.cpu.proxyMs === null ? '' : fmt(s.cpu.proxyMs / s.requests, 3),
        `${s.errors}${s.capped ? ' (capped)' : ''}`,
      ]);
    }
  }
  return rows;
}

const HEAD = ['target', 'scenario', 'req/s', 'p50 ms', 'p99 ms', 'TTFB p50', 'TTFB p99', 'proxy CPU ms/req', 'errors'];

function goalLines(goals) {
  const lines = [];
  for (const g of goals) {
    const v = g.verdicts;
    const tag = (verdict) => (verdict ? `  ${verdict}` : '');
    lines.push(`${g.target}:`);
    lines.push(
      `  added TTFB vs direct, SSE c=1 p50: ${fmt(g.addedTtfbP50Ms, 3)} ms (goal < ${GOALS.addedTtfbMs} ms)${tag(v.addedTtfb)}` +
        `   [JSON c=1 added latency p50: ${fmt(g.addedJsonLatencyP50Ms, 3)} ms]`,
    );
    lines.push(
      `  CPU/request ÷ node pipe proxy, all scenarios: ${times(g.cpuVsPipe)} (${fmt(g.cpuMsPerRequest, 3)} ms/req; goal ≤ ${GOALS.cpuVsPipe}×)${tag(v.cpuVsPipe)}`,
    );
    lines.push(
      `  throughput c=32 ÷ direct: JSON ${times(g.throughputVsDirect.json)}, SSE ${times(g.throughputVsDirect.sse)} (goal ≥ ${GOALS.throughputVsDirect}× for both)${tag(v.throughputVsDirect)}`,
    );
  }
  return lines;
}

/** The report for the terminal. */
export function textReport(run) {
  const lines = [];
  lines.push('', `Results (${run.meta.machineNote})`, '');
  lines.push(...pad([HEAD, ...measurementRows(run.targets)]));
  for (const t of run.targets) if (t.skipped) lines.push(`${t.name}: skipped — ${t.skipped}`);
  lines.push('', 'Goals (Vigil, against baselines from this run; other proxies shown for comparison):');
  lines.push(...goalLines(run.goals));
  for (const t of run.targets) {
    const rec = t.findings?.recording;
    if (!rec) continue;
    lines.push('', `${t.name} recording:`);
    lines.push(
      `  ${rec.exchanges} exchanges, ${mib(rec.rawBytes)} of request+response bodies sent; ` +
        (rec.storedBytes === null
          ? 'store size not measured (not SQLite files in the data dir)'
          : `${mib(rec.storedBytes)} stored after stop (${fmt(rec.storedPerRaw * 100, 1)}% of raw, ` +
            `${fmt(rec.storedBytesPerExchange / 1024, 1)} KiB per exchange)`),
    );
    lines.push(
      `  store files while running: ${files(rec.storeFilesWhileRunning)}; after stop: ${files(rec.storeFilesAfterStop)}`,
    );
    lines.push(`  vigil verify (exit ${t.findings.verify.exitCode}): ${t.findings.verify.output}`);
    if (t.findings.peakRssMiB) lines.push(`  peak RSS: ${fmt(t.findings.peakRssMiB, 0)} MiB`);
  }
  return lines.join('\n');
}

const mib = (bytes) => `${fmt(bytes / 1048576, 1)} MiB`;
const files = (f) =>
  Object.entries(f)
    .map(([n, b]) => `${n} ${mib(b)}`)
    .join(', ') || 'none';

/** The Markdown block for the README. */
export function markdownReport(run) {
  const out = [];
  out.push(`Measured by \`npm run bench\` on ${run.meta.machineNote}; ${run.meta.workloadNote}`, '');
  out.push(`| ${HEAD.join(' | ')} |`, `|${HEAD.map((_, i) => (i < 2 ? ' --- ' : ' ---: ')).join('|')}|`);
  for (const r of measurementRows(run.targets)) out.push(`| ${r.join(' | ')} |`);
  out.push('', '| goal | target | measured | verdict |', '| --- | --- | ---: | --- |');
  for (const g of run.goals.filter((x) => x.role === 'vigil')) {
    out.push(
      `| added TTFB vs direct (SSE, c=1, p50) < ${GOALS.addedTtfbMs} ms | ${g.target} | ${fmt(g.addedTtfbP50Ms, 3)} ms | ${g.verdicts.addedTtfb} |`,
    );
    out.push(
      `| CPU/request ≤ ${GOALS.cpuVsPipe}× Node pipe proxy | ${g.target} | ${times(g.cpuVsPipe)} | ${g.verdicts.cpuVsPipe} |`,
    );
    out.push(
      `| throughput at c=32 ≥ ${GOALS.throughputVsDirect}× direct | ${g.target} | JSON ${times(g.throughputVsDirect.json)}, SSE ${times(g.throughputVsDirect.sse)} | ${g.verdicts.throughputVsDirect} |`,
    );
  }
  return out.join('\n');
}

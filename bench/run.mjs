/**
 * `npm run bench`: how much Vigil adds to latency, CPU and throughput, against baselines measured in the same run.
 *
 *   node bench/run.mjs [--vigil-config FILE]... [--targets NAME,…] [--out FILE] [--keep-tmp]
 *   BENCH_QUICK=1 node bench/run.mjs      a smoke run with small counts (results go to the temp dir)
 *
 * --vigil-config FILE  also benchmark Vigil run with this config (e.g. a PostgreSQL store); repeatable
 * --targets a,b        only targets whose name contains one of these (direct always runs: it is the baseline)
 * --keep-tmp           keep the work dir (data dirs, logs) for inspection
 *
 * One fake Anthropic upstream process serves every target; each target (direct, Node pipe proxy, nginx when
 * installed, Vigil) runs in its own process and is loaded alone, in rounds that interleave the targets; the load
 * generator runs here. Prints a table, the goals with PASS/MISS, Vigil's recording size and `vigil verify`, a
 * Markdown table for the README, and writes everything to bench/results/latest.json. Exits 1 when a request failed
 * or `vigil verify` did not pass (the figures are then not a valid measurement); a missed goal is a finding, exit 0.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { runScenario } from './load-generator.mjs';
import { CLK_TCK, cpuTime, stopChild, tail } from './processes.mjs';
import { evaluate, markdownReport, SCENARIOS, textReport } from './report.mjs';
import { summarizeRuns } from './stats.mjs';
import { benchTargets, REPO_ROOT, startUpstream } from './targets.mjs';
import { TURNS_PER_SESSION } from './workload.mjs';

const { values: args } = parseArgs({
  options: {
    'vigil-config': { type: 'string', multiple: true, default: [] },
    targets: { type: 'string' },
    out: { type: 'string' },
    'keep-tmp': { type: 'boolean', default: false },
  },
});

const QUICK = process.env.BENCH_QUICK === '1';
// A smoke run must not overwrite the committed figures the README quotes.
const OUT =
  args.out ??
  (QUICK ? path.join(os.tmpdir(), 'vigil-bench-quick.json') : path.join(REPO_ROOT, 'bench', 'results', 'latest.json'));
/** Measured rounds; each scenario's req/s is the median over them, latencies and CPU are pooled. */
const ROUNDS = QUICK ? 2 : 4;
/**
 * Requests per scenario and round; every run has its own warm-up, since it opens fresh connections. Over all
 * rounds, enough for CPU ticks (10 ms each) to resolve a fraction of a millisecond per request.
 */
const COUNTS = QUICK
  ? { 1: { warmup: 20, requests: 40 }, 32: { warmup: 64, requests: 200 } }
  : { 1: { warmup: 100, requests: 400 }, 32: { warmup: 320, requests: 2000 } };
/** Per run: a target slower than this is reported with what it managed ("capped"). */
const TIME_CAP_MS = QUICK ? 10_000 : 20_000;

const cpus = os.cpus();
const machineNote =
  `${cpus.length}-core ${cpus[0]?.model?.trim() ?? 'CPU'}, Linux ${os.release()}, Node ${process.version}; ` +
  'load generator, proxy and fake upstream share these cores';

/**
 * Wait until `pid` stops using CPU (no tick for 100 ms, at most 3 s), so that work it defers, such as writing
 * records, is charged to the requests that caused it.
 */
async function settle(pid) {
  if (pid === null) return;
  const deadline = Date.now() + 3_000;
  let last = cpuTime(pid).ticks;
  while (Date.now() < deadline) {
    await sleep(100);
    const now = cpuTime(pid).ticks;
    if (now === last) return;
    last = now;
  }
}

async function main() {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-'));
  const log = (line) => process.stderr.write(`${line}\n`);
  log(`vigil bench${QUICK ? ' (BENCH_QUICK: smoke counts, numbers not meaningful)' : ''} — ${machineNote}`);
  log(`work dir: ${tmp}`);
  // On every way out, Ctrl-C included (which skips `finally`); children are stopped by processes.mjs first.
  if (!args['keep-tmp']) process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

  let targets = benchTargets({ vigilConfigs: args['vigil-config'] });
  if (args.targets) {
    const wanted = args.targets.split(',').map((s) => s.trim());
    targets = targets.filter((t) => t.role === 'direct' || wanted.some((w) => t.name.includes(w)));
  }

  const upstream = await startUpstream(tmp);
  const upstreamUrl = upstream.url;
  /** @type {Array<{ target: import('./targets.mjs').Target, running?: import('./targets.mjs').RunningTarget,
   *   skipped?: string, traffic: import('./targets.mjs').Traffic, runs: Record<string, any[]>, findings?: object }>} */
  const entries = targets.map((target) => ({
    target,
    traffic: { requests: 0, requestBytes: 0, responseBytes: 0 },
    runs: Object.fromEntries(SCENARIOS.map((sc) => [sc.key, []])),
  }));
  try {
    // Every target runs at once but only one is loaded at a time; idle ones cost nothing.
    for (const [i, entry] of entries.entries()) {
      entry.skipped = entry.target.unavailable() ?? undefined;
      if (entry.skipped) {
        log(`${entry.target.name}: skipped — ${entry.skipped}`);
        continue;
      }
      const workDir = path.join(tmp, `${i}-${entry.target.name.replace(/[^a-z0-9]+/gi, '-').replace(/-+$/, '')}`);
      mkdirSync(workDir, { recursive: true });
      entry.running = await entry.target.start({ upstreamUrl, workDir });
    }
    const live = entries.filter((e) => e.running);

    // Rounds, with the target order rotated each round, so that drift on a shared machine (other tenants,
    // CPU frequency, the upstream warming up) spreads over every target instead of favouring one.
    // Round 0 is a warm-up of every process on every path (JIT, pools, the store's first pages); it is not kept.
    for (let round = 0; round <= ROUNDS; round++) {
      const kept = round > 0;
      for (const [si, sc] of SCENARIOS.entries()) {
        const counts = kept ? COUNTS[sc.concurrency] : { warmup: 0, requests: COUNTS[sc.concurrency].warmup };
        for (let k = 0; k < live.length; k++) {
          const entry = live[(k + round) % live.length];
          const { running } = entry;
          let before;
          const samples = await runScenario({
            url: running.url,
            concurrency: sc.concurrency,
            stream: sc.stream,
            warmup: counts.warmup,
            requests: counts.requests,
            timeCapMs: TIME_CAP_MS,
            // Fresh text every round: repeating a round's conversations would flatter a deduplicating recorder.
            seed: 1_000_000 * (round + 1) + 1_000 * si,
            onMeasureStart: () => {
              before = {
                proxy: running.pid === null ? null : cpuTime(running.pid),
                upstream: cpuTime(upstream.child.pid),
                self: process.cpuUsage(),
              };
            },
          });
          if (samples.requests > 0 && samples.errors === samples.requests) {
            throw new Error(
              `every request to ${entry.target.name} failed (first: ${samples.firstError})` +
                (running.logFile ? `; its log ends:\n${tail(running.logFile)}` : ''),
            );
          }
          const self = process.cpuUsage(before.self);
          await settle(running.pid);
          const proxy = running.pid === null ? null : cpuTime(running.pid);
          const up = cpuTime(upstream.child.pid);
          entry.traffic.requests += samples.sent.requests;
          entry.traffic.requestBytes += samples.sent.requestBytes;
          entry.traffic.responseBytes += samples.sent.responseBytes;
          const rps = (samples.requests - samples.errors) / samples.seconds;
          log(
            `${kept ? `round ${round}/${ROUNDS}` : 'warm-up  '}  ${entry.target.name.padEnd(16)} ${sc.key.padEnd(9)} ` +
              `${rps.toFixed(0).padStart(6)} req/s` +
              (samples.errors ? `  ERRORS ${samples.errors} (first: ${samples.firstError})` : '') +
              (samples.capped ? '  (time cap reached)' : ''),
          );
          if (!kept) continue;
          entry.runs[sc.key].push({
            ...samples,
            cpu: {
              proxyMs: proxy === null ? null : proxy.ms - before.proxy.ms,
              proxyTicks: proxy === null ? null : proxy.ticks - before.proxy.ticks,
              upstreamMs: up.ms - before.upstream.ms,
              loadGeneratorMs: (self.user + self.system) / 1000,
            },
          });
        }
      }
    }
  } finally {
    for (const entry of entries) {
      if (!entry.running) continue;
      // Stop every target even if one fails to stop cleanly; the failure is part of the report.
      entry.findings = await entry.running.finish(entry.traffic).catch((err) => {
        log(`${entry.target.name}: stopping failed: ${err?.stack ?? err}`);
        return { finishError: String(err) };
      });
    }
    await stopChild(upstream.child);
  }

  const results = entries.map((e) =>
    e.skipped
      ? { name: e.target.name, role: e.target.role, skipped: e.skipped }
      : {
          name: e.target.name,
          role: e.target.role,
          scenarios: Object.fromEntries(SCENARIOS.map((sc) => [sc.key, summarizeRuns(e.runs[sc.key])])),
          traffic: e.traffic,
          findings: e.findings,
        },
  );

  const run = {
    meta: {
      generatedAt: new Date().toISOString(),
      quick: QUICK,
      machineNote,
      cpus: cpus.length,
      cpuModel: cpus[0]?.model?.trim() ?? null,
      node: process.version,
      clkTck: CLK_TCK,
      rounds: ROUNDS,
      countsPerRound: COUNTS,
      timeCapMsPerRun: TIME_CAP_MS,
      workloadNote:
        `Claude-Code-shaped requests (~40 KB first turn, growing ~1.2 KB per turn for ${TURNS_PER_SESSION} turns per ` +
        `session); per scenario ${ROUNDS} rounds of ${COUNTS[1].requests} requests at c=1 or ${COUNTS[32].requests} at ` +
        `c=32 after a warm-up, targets interleaved; req/s is the median of the rounds` +
        `${QUICK ? ' (BENCH_QUICK smoke run)' : ''}.`,
    },
    targets: results,
    goals: evaluate(results),
  };

  process.stdout.write(`${textReport(run)}\n\nMarkdown for the README:\n\n${markdownReport(run)}\n`);
  // Masking on its own: throughput on a realistic Claude Code body (its share of CPU per request is the difference
  // between "vigil (sqlite)" and "vigil (sqlite, no masking)" above).
  const masking = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bench', 'masking.mjs')], { encoding: 'utf8' });
  process.stdout.write(`\nMasking throughput (bench/masking.mjs):\n${masking.stdout}${masking.stderr}`);
  run.masking = masking.stdout;
  // Recording on its own as a conversation grows: CPU per exchange at ~100 KB to ~650 KB requests.
  const recording = spawnSync(process.execPath, ['--expose-gc', path.join(REPO_ROOT, 'bench', 'recording.mjs')], {
    encoding: 'utf8',
  });
  process.stdout.write(
    `\nRecording as a conversation grows (bench/recording.mjs):\n${recording.stdout}${recording.stderr}`,
  );
  run.recording = recording.stdout;
  mkdirSync(path.dirname(OUT), { recursive: true });
  writeFileSync(OUT, `${JSON.stringify(run, null, 2)}\n`);
  log(`\nwrote ${OUT}`);
  const failedVerify = results.some((t) => t.findings?.verify && !t.findings.verify.ok);
  const errors = results.some((t) => t.scenarios && Object.values(t.scenarios).some((s) => s.errors > 0));
  // A run with errors or a failed verify is not a valid measurement; a missed goal is a finding, not a failure.
  return failedVerify || errors ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench failed: ${err?.stack ?? err}\n`);
    process.exit(1);
  },
);

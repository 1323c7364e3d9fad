/**
 * How much memory Vigil holds with its traffic spread over several connections, against the same traffic on one: the
 * caches that grow with traffic (last request bodies, masking memos, request pieces) are bounded for the whole
 * gateway, not per connection.
 *
 *   npm run build && node bench/connections-memory.mjs [--connections 1,8] [--requests N]
 *
 * --connections LIST  how many connections, one run each (default 1,8)
 * --requests N        streamed requests per run, split evenly over the connections (default 120000: ~2 minutes a run
 *                     here; each agent starts a new conversation every 20 turns, so this is 6,000 conversations)
 *
 * Each run starts the fake upstream and a Vigil configured with that many connections to it (`/c/c0`, `/c/c1`, …),
 * then drives 32 agents split evenly over the connections, and prints the gateway's peak and final RSS and whether
 * `vigil verify` passed, as one JSON line.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runScenario } from './load-generator.mjs';
import { stopChild } from './processes.mjs';
import { startUpstream, vigilTarget } from './targets.mjs';

const { values: args } = parseArgs({
  options: {
    connections: { type: 'string', default: '1,8' },
    requests: { type: 'string', default: '120000' },
  },
});
const TOTAL = Number(args.requests);
const CONCURRENCY = 32;

/** A config of `n` connections, c0…, to `upstream`. */
const configText = (n, upstream) =>
  [
    'connections:',
    ...Array.from({ length: n }, (_, i) => [
      `  - name: c${i}`,
      `    upstream: ${upstream}`,
      '    credential: { env: ANTHROPIC_API_KEY }',
    ]).flat(),
    '',
  ].join('\n');

async function run(connections) {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-memory-'));
  const upstream = await startUpstream(workDir);
  try {
    const target = vigilTarget({
      name: `vigil (${connections} connections)`,
      configText: (ctx) => configText(connections, ctx.upstreamUrl),
    });
    const vigil = await target.start({ workDir, upstreamUrl: upstream.url });
    const started = performance.now();
    const runs = await Promise.all(
      Array.from({ length: connections }, (_, i) =>
        runScenario({
          url: vigil.url,
          prefix: `/c/c${i}`,
          concurrency: Math.max(1, Math.floor(CONCURRENCY / connections)),
          requests: Math.ceil(TOTAL / connections),
          warmup: 0,
          timeCapMs: 1_800_000,
          stream: true,
          seed: 1000 * (i + 1),
        }),
      ),
    );
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${vigil.pid}/status`, 'utf8'));
    const sum = (key) => runs.reduce((n, r) => n + r[key], 0);
    const finished = await vigil.finish({
      requests: sum('requests'),
      requestBytes: sum('requestBytes'),
      responseBytes: sum('responseBytes'),
    });
    const result = {
      connections,
      requests: sum('requests'),
      errors: sum('errors'),
      firstError: runs.find((r) => r.firstError)?.firstError ?? null,
      seconds: Math.round((performance.now() - started) / 1000),
      peakRssMiB: Math.round(finished.peakRssMiB),
      rssMiB: rss ? Math.round(Number(rss[1]) / 1024) : null,
      verified: finished.verify.ok,
    };
    console.log(JSON.stringify(result));
    return result;
  } finally {
    await stopChild(upstream.child);
    rmSync(workDir, { recursive: true, force: true });
  }
}

let failed = false;
for (const n of args.connections.split(',').map(Number)) {
  const r = await run(n);
  failed = r.errors > 0 || !r.verified || failed;
}
process.exitCode = failed ? 1 : 0;

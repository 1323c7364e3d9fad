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
 * then drives 32 agents split evenly over the connections, and prints the gateway's peak and final RSS as one JSON line.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runScenario } from './load-generator.mjs';
import { peakRssMiB, startChild, stopChild } from './processes.mjs';
import { REPO_ROOT } from './targets.mjs';

const { values: args } = parseArgs({
  options: {
    connections: { type: 'string', default: '1,8' },
    requests: { type: 'string', default: '120000' },
  },
});
const TOTAL = Number(args.requests);
const CONCURRENCY = 32;

async function run(connections) {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-memory-'));
  const children = [];
  try {
    const upstream = await startChild(process.execPath, [path.join(REPO_ROOT, 'bench', 'upstream.mjs')], {
      ready: /fake upstream on (\S+)/,
      logFile: path.join(tmp, 'upstream.log'),
    });
    children.push(upstream.child);
    const config = [
      'connections:',
      ...Array.from({ length: connections }, (_, i) => [
        `  - name: c${i}`,
        `    upstream: ${upstream.match[1]}`,
        '    credential: { env: ANTHROPIC_API_KEY }',
      ]).flat(),
      '',
    ].join('\n');
    writeFileSync(path.join(tmp, 'vigil.yaml'), config);
    const vigil = await startChild(
      process.execPath,
      [
        path.join(REPO_ROOT, 'dist', 'cli', 'bin.js'),
        'serve',
        '--config',
        path.join(tmp, 'vigil.yaml'),
        '--listen',
        '127.0.0.1:0',
        '--data-dir',
        path.join(tmp, 'data'),
      ],
      {
        ready: /vigil listening on (http:\/\/\S+)/,
        env: { ...process.env, ANTHROPIC_API_KEY: 'bench-key' },
        logFile: path.join(tmp, 'vigil.log'),
      },
    );
    children.push(vigil.child);
    const started = performance.now();
    const runs = await Promise.all(
      Array.from({ length: connections }, (_, i) =>
        runScenario({
          url: vigil.match[1],
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
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${vigil.child.pid}/status`, 'utf8'));
    const result = {
      connections,
      requests: runs.reduce((n, r) => n + r.requests, 0),
      errors: runs.reduce((n, r) => n + r.errors, 0),
      firstError: runs.find((r) => r.firstError)?.firstError ?? null,
      seconds: Math.round((performance.now() - started) / 1000),
      peakRssMiB: Math.round(peakRssMiB(vigil.child.pid)),
      rssMiB: rss ? Math.round(Number(rss[1]) / 1024) : null,
    };
    console.log(JSON.stringify(result));
    return result;
  } finally {
    for (const child of children.reverse()) await stopChild(child, 60_000);
    rmSync(tmp, { recursive: true, force: true });
  }
}

let failed = false;
for (const n of args.connections.split(',').map(Number)) failed = (await run(n)).errors > 0 || failed;
process.exitCode = failed ? 1 : 0;

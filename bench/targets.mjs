/**
 * What the benchmark measures: the fake upstream reached directly, through baseline proxies, and through Vigil.
 *
 * A target is `{ name, role, unavailable(), start(ctx) }`; `start` returns the URL to load, the pid whose CPU is
 * the proxy's, and `finish(traffic)`, which stops it and reports anything target-specific (Vigil: what it stored
 * and whether `vigil verify` passes). To benchmark another Vigil set-up — a PostgreSQL store, say — add
 * `vigilTarget({ name: 'vigil (postgres)', configFile: 'bench/vigil-postgres.yaml' })` to the list, or pass
 * `--vigil-config <file>` to `bench/run.mjs`; the config's listener, upstream and data dir are overridden so it
 * points at the benchmark's fake upstream.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findNginx, freePort, nginxArgs, waitForPort, writeNginxConf } from './nginx.mjs';
import { peakRssMiB, startChild, stopChild } from './processes.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.dirname(BENCH_DIR);
const VIGIL_BIN = path.join(REPO_ROOT, 'dist', 'cli', 'bin.js');

/**
 * @typedef {object} TargetContext
 * @property {string} upstreamUrl  the fake Anthropic API
 * @property {string} workDir      an empty directory for this target's files and logs
 *
 * @typedef {object} Traffic  what the load generator sent this target, warm-up included
 * @property {number} requests
 * @property {number} requestBytes
 * @property {number} responseBytes
 *
 * @typedef {object} RunningTarget
 * @property {string} url
 * @property {number | null} pid  the proxy process (null: no proxy)
 * @property {string | null} logFile  where its stderr goes, to explain failures
 * @property {(traffic: Traffic) => Promise<Record<string, unknown>>} finish  stop; report target-specific findings
 *
 * @typedef {object} Target
 * @property {string} name
 * @property {'direct' | 'baseline' | 'vigil'} role
 * @property {() => string | null} unavailable  why it cannot run here, or null
 * @property {(ctx: TargetContext) => Promise<RunningTarget>} start
 */

/** @type {Target} */
export const directTarget = {
  name: 'direct',
  role: 'direct',
  unavailable: () => null,
  start: async (ctx) => ({ url: ctx.upstreamUrl, pid: null, logFile: null, finish: async () => ({}) }),
};

/** @type {Target} */
export const pipeProxyTarget = {
  name: 'node pipe proxy',
  role: 'baseline',
  unavailable: () => null,
  async start(ctx) {
    const logFile = path.join(ctx.workDir, 'pipe-proxy.log');
    const { child, match } = await startChild(
      process.execPath,
      [path.join(BENCH_DIR, 'pipe-proxy.mjs'), ctx.upstreamUrl],
      {
        ready: /pipe-proxy listening on (\S+)/,
        logFile,
      },
    );
    return {
      url: match[1],
      pid: child.pid,
      logFile,
      finish: async () => {
        const peakRss = peakRssMiB(child.pid);
        await stopChild(child);
        return { peakRssMiB: peakRss };
      },
    };
  },
};

/** @type {Target} */
export const nginxTarget = {
  name: 'nginx',
  role: 'baseline',
  unavailable: () => (findNginx() ? null : 'nginx is not on PATH (the benchmark does not install it)'),
  async start(ctx) {
    const nginx = /** @type {string} */ (findNginx());
    const port = await freePort();
    writeNginxConf({ dir: ctx.workDir, port, upstreamUrl: ctx.upstreamUrl });
    const logFile = path.join(ctx.workDir, 'logs', 'error.log');
    const { child } = await startChild(nginx, nginxArgs(nginx, ctx.workDir), {
      logFile: path.join(ctx.workDir, 'nginx.stderr.log'),
      // SIGTERM: the master stops its workers; SIGKILL would orphan them.
      exitSignal: 'SIGTERM',
    });
    try {
      await waitForPort(port);
    } catch (err) {
      await stopChild(child);
      throw err;
    }
    return {
      url: `http://127.0.0.1:${port}`,
      pid: child.pid, // CPU is read for the master and its workers
      logFile,
      finish: async () => {
        await stopChild(child);
        return {};
      },
    };
  },
};

/** SQLite files of the embedded store in `dir` (the shared-memory index `-shm` is not data). */
function storeFiles(dir) {
  const files = {};
  for (const name of readdirSync(dir)) {
    if (/^vigil\.db(-wal|-journal)?$/.test(name)) files[name] = statSync(path.join(dir, name)).size;
  }
  return files;
}

const sum = (files) => Object.values(files).reduce((a, b) => a + b, 0);

/**
 * The fake Anthropic upstream (upstream.mjs) in a process of its own, its log in `workDir`.
 *
 * @returns {Promise<{ child: import('node:child_process').ChildProcess, url: string }>}
 */
export async function startUpstream(workDir) {
  const { child, match } = await startChild(process.execPath, [path.join(BENCH_DIR, 'upstream.mjs')], {
    ready: /fake upstream on (\S+)/,
    logFile: path.join(workDir, 'upstream.log'),
  });
  return { child, url: match[1] };
}

/**
 * Vigil, as `vigil serve` runs it. With `configFile`, Vigil reads that config (store, limits, …) and the
 * benchmark overrides only its listener, upstream and data dir.
 *
 * @param {{ name: string, configFile?: string }} opts
 * @returns {Target}
 */
export function vigilTarget({ name, configFile, configText, unavailable, cleanup }) {
  let configArgs = configFile ? ['--config', path.resolve(configFile)] : [];
  return {
    name,
    role: 'vigil',
    unavailable: unavailable ?? (() => null),
    async start(ctx) {
      const dataDir = path.join(ctx.workDir, 'data');
      mkdirSync(dataDir, { recursive: true });
      if (configText) {
        const file = path.join(ctx.workDir, 'vigil.yaml');
        writeFileSync(file, configText(ctx));
        configArgs = ['--config', file];
      }
      const logFile = path.join(ctx.workDir, 'vigil.log');
      const { child, match } = await startChild(
        process.execPath,
        [
          VIGIL_BIN,
          'serve',
          ...configArgs,
          '--listen',
          '127.0.0.1:0',
          '--upstream',
          ctx.upstreamUrl,
          '--data-dir',
          dataDir,
        ],
        {
          ready: /vigil listening on (http:\/\/\S+)/,
          env: { ...process.env, ANTHROPIC_API_KEY: 'bench-key', ...BENCH_ENV },
          cwd: REPO_ROOT,
          logFile,
        },
      );
      return {
        url: match[1],
        pid: child.pid,
        logFile,
        async finish(traffic) {
          const peakRss = peakRssMiB(child.pid);
          const live = storeFiles(dataDir);
          const exit = await stopChild(child, 60_000);
          const stopped = storeFiles(dataDir);
          const verify = spawnSync(process.execPath, [VIGIL_BIN, 'verify', ...configArgs, '--data-dir', dataDir], {
            cwd: REPO_ROOT,
            encoding: 'utf8',
            timeout: 120_000,
            env: { ...process.env, ...BENCH_ENV },
          });
          await cleanup?.();
          const rawBytes = traffic.requestBytes + traffic.responseBytes;
          const storedBytes = sum(stopped);
          return {
            peakRssMiB: peakRss,
            log: logFile,
            shutdown: exit,
            recording: {
              exchanges: traffic.requests,
              rawBytes,
              storeFilesWhileRunning: live,
              storeFilesAfterStop: stopped,
              // Null when the store is not SQLite files in the data dir (e.g. PostgreSQL): not measured here.
              storedBytes: Object.keys(stopped).length > 0 ? storedBytes : null,
              storedPerRaw: Object.keys(stopped).length > 0 ? storedBytes / rawBytes : null,
              storedBytesPerExchange: Object.keys(stopped).length > 0 ? storedBytes / traffic.requests : null,
            },
            verify: {
              exitCode: verify.status,
              ok: verify.status === 0,
              output: `${verify.stdout ?? ''}${verify.stderr ?? ''}`.trim() || String(verify.error ?? ''),
            },
          };
        },
      };
    },
  };
}

/** Where the PostgreSQL target writes: VIGIL_BENCH_DATABASE_URL, or the local server's `test` database. */
const BENCH_DATABASE_URL = process.env.VIGIL_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const BENCH_ENV = { VIGIL_BENCH_DATABASE_URL: BENCH_DATABASE_URL };

/** Vigil on PostgreSQL, in a schema of its own that is dropped afterwards. */
function postgresTarget() {
  const schema = `vigil_bench_${process.pid}`;
  const psql = (sql) => spawnSync('psql', [BENCH_DATABASE_URL, '-qAtc', sql], { encoding: 'utf8' });
  return vigilTarget({
    name: 'vigil (postgres)',
    unavailable: () => {
      const r = psql('select 1');
      return r.status === 0
        ? null
        : `PostgreSQL not reachable at ${BENCH_DATABASE_URL} (${(r.stderr || r.error || '').toString().trim()})`;
    },
    configText: () =>
      [
        'store:',
        '  postgres:',
        '    url: { env: VIGIL_BENCH_DATABASE_URL }',
        `    schema: ${schema}`,
        'connections:',
        '  - name: anthropic',
        '    credential: { env: ANTHROPIC_API_KEY }',
        '',
      ].join('\n'),
    cleanup: async () => {
      psql(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    },
  });
}

/**
 * The targets of a run, in order: baselines first, then each Vigil set-up.
 *
 * @param {{ vigilConfigs?: string[] }} [opts]  extra Vigil set-ups, each a config file
 * @returns {Target[]}
 */
export function benchTargets(opts = {}) {
  return [
    directTarget,
    pipeProxyTarget,
    nginxTarget,
    vigilTarget({ name: 'vigil (sqlite)' }),
    // The same without masking: the difference is masking's share of CPU per request.
    vigilTarget({
      name: 'vigil (sqlite, no masking)',
      configText: () =>
        'connections:\n  - name: anthropic\n    credential: { env: ANTHROPIC_API_KEY }\n    masking: { enabled: false }\n',
    }),
    postgresTarget(),
    ...(opts.vigilConfigs ?? []).map((file) =>
      vigilTarget({ name: `vigil (${path.basename(file).replace(/\.ya?ml$/, '')})`, configFile: file }),
    ),
  ];
}

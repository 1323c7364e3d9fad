/**
 * Baseline: nginx as a plain reverse proxy, when it is installed (it is not a dependency: the benchmark never
 * installs it). One worker process, response buffering off (as a streaming API gateway must be), kept-alive
 * upstream connections.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** The nginx binary on PATH, or null. */
export function findNginx() {
  try {
    return execFileSync('sh', ['-c', 'command -v nginx'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

/** A port the OS says is free now. nginx cannot listen on port 0 and report it, so we ask first. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}

/**
 * Write `<dir>/nginx.conf` proxying `127.0.0.1:<port>` to `upstreamUrl`.
 *
 * @param {{ dir: string, port: number, upstreamUrl: string }} opts
 */
export function writeNginxConf({ dir, port, upstreamUrl }) {
  const upstream = new URL(upstreamUrl);
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi', 'logs'])
    mkdirSync(path.join(dir, sub), { recursive: true });
  // As root nginx would switch its workers to `nobody`, which may not read the prefix; stay root in this sandbox.
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  const conf = `${user}worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  upstream fake {
    server ${upstream.hostname}:${upstream.port};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 32m;
    # Request bodies of ~40-80 KB stay in memory rather than in temp files.
    client_body_buffer_size 1m;
    location / {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host ${upstream.host};
      proxy_buffering off;
    }
  }
}
`;
  writeFileSync(path.join(dir, 'nginx.conf'), conf);
}

/** `-e <file>` (error log before the config is read) exists from nginx 1.19.5; older ones reject the flag. */
export function nginxArgs(nginx, dir) {
  const args = ['-p', dir, '-c', 'nginx.conf', '-g', 'daemon off;'];
  // `nginx -v` writes its version to stderr.
  const r = spawnSync(nginx, ['-v'], { encoding: 'utf8' });
  const m = /nginx\/(\d+)\.(\d+)\.(\d+)/.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`);
  const atLeast = m && (Number(m[1]) > 1 || Number(m[2]) > 19 || (Number(m[2]) === 19 && Number(m[3]) >= 5));
  if (atLeast) args.unshift('-e', path.join(dir, 'logs', 'error.log'));
  return args;
}

/** Wait until something accepts TCP connections on `port`. */
export async function waitForPort(port, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

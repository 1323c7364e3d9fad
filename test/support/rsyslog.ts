/**
 * A real rsyslogd for tests: UDP, TCP and TLS (GnuTLS, anonymous client auth, a self-signed certificate made with
 * openssl for 127.0.0.1) inputs on free loopback ports, each writing what it received, one JSON line per message,
 * to its own file: rsyslog's own parse of the message (facility, severity, app-name, msgid, structured data, msg)
 * next to the raw message, so a test sees both what was sent and how a real receiver understood it.
 *
 * Needs the Debian packages `rsyslog` and `rsyslog-gnutls`, and `openssl`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { selfSigned } from './self-signed.js';

export const RSYSLOGD = '/usr/sbin/rsyslogd';

export type SyslogInput = 'udp' | 'tcp' | 'tls';
const INPUTS: readonly SyslogInput[] = ['udp', 'tcp', 'tls'];

/** One message as rsyslog received and parsed it. */
export interface ReceivedSyslog {
  readonly facility: string;
  readonly severity: string;
  readonly hostname: string;
  readonly app: string;
  readonly procid: string;
  readonly msgid: string;
  /** The STRUCTURED-DATA part, as received. */
  readonly sd: string;
  readonly msg: string;
  readonly raw: string;
}

/** The properties written per message, as `outname: rsyslog property`. */
const FIELDS: ReadonlyArray<[keyof ReceivedSyslog, string]> = [
  ['facility', 'syslogfacility-text'],
  ['severity', 'syslogseverity-text'],
  ['hostname', 'hostname'],
  ['app', 'app-name'],
  ['procid', 'procid'],
  ['msgid', 'msgid'],
  ['sd', 'structured-data'],
  ['msg', 'msg'],
  ['raw', 'rawmsg'],
];

/** A JSON object per line, built by hand with `format="json"` escaping (works on every rsyslog 8). */
function template(): string {
  const parts = FIELDS.map(
    ([out, prop], i) =>
      `  constant(value="${i === 0 ? '{' : ','}\\"${out}\\":\\"")\n  property(name="${prop}" format="json")\n  constant(value="\\"")`,
  );
  return `template(name="received" type="list") {\n${parts.join('\n')}\n  constant(value="}\\n")\n}`;
}

export class RsyslogServer {
  readonly dir: string;
  readonly ports: Readonly<Record<SyslogInput, number>>;
  /** The TLS listener's self-signed certificate, valid for 127.0.0.1 and localhost: use it as the client's CA. */
  readonly caFile: string;
  #child: ChildProcess | undefined;
  #output = '';

  private constructor(dir: string, ports: Record<SyslogInput, number>) {
    this.dir = dir;
    this.ports = ports;
    this.caFile = path.join(dir, 'cert.pem');
  }

  /** Writes config and certificate into a temporary directory and starts rsyslogd; resolves when all inputs listen. */
  static async start(): Promise<RsyslogServer> {
    if (!existsSync(RSYSLOGD)) {
      throw new Error(`${RSYSLOGD} not found: install the Debian packages rsyslog and rsyslog-gnutls`);
    }
    const dir = await mkdtemp(path.join(tmpdir(), 'vigil-rsyslog-'));
    const server = new RsyslogServer(dir, {
      udp: await freeUdpPort(),
      tcp: await freeTcpPort(),
      tls: await freeTcpPort(),
    });
    await selfSigned(dir, 'localhost', { certFile: server.caFile, keyFile: path.join(dir, 'key.pem') });
    await writeFile(path.join(dir, 'rsyslog.conf'), server.#config());
    await server.restart();
    return server;
  }

  #config(): string {
    const file = (name: string): string => path.join(this.dir, name);
    return [
      `global(workDirectory="${this.dir}" maxMessageSize="64k"`,
      `  defaultNetstreamDriverCAFile="${file('cert.pem')}"`,
      `  defaultNetstreamDriverCertFile="${file('cert.pem')}"`,
      `  defaultNetstreamDriverKeyFile="${file('key.pem')}")`,
      'module(load="imudp")',
      'module(load="imtcp")',
      template(),
      ...INPUTS.map(
        (i) => `ruleset(name="${i}") { action(type="omfile" file="${file(`${i}.log`)}" template="received") }`,
      ),
      // A receive buffer for bursts, as the README advises for a UDP input: at the default (~208 KiB) a loaded
      // machine drops part of a backlog before rsyslogd reads it, which no sender can see.
      `input(type="imudp" address="127.0.0.1" port="${this.ports.udp}" ruleset="udp" rcvbufSize="4m")`,
      `input(type="imtcp" address="127.0.0.1" port="${this.ports.tcp}" ruleset="tcp")`,
      `input(type="imtcp" address="127.0.0.1" port="${this.ports.tls}" ruleset="tls"`,
      '  streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")',
      '',
    ].join('\n');
  }

  /** Starts rsyslogd (again, after stop) on the same ports and files. */
  async restart(): Promise<void> {
    if (this.#child) throw new Error('rsyslogd is already running');
    await rm(path.join(this.dir, 'rsyslogd.pid'), { force: true });
    const child = spawn(
      RSYSLOGD,
      ['-n', '-f', path.join(this.dir, 'rsyslog.conf'), '-i', path.join(this.dir, 'rsyslogd.pid')],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.#child = child;
    const collect = (b: Buffer): void => {
      this.#output = (this.#output + b.toString()).slice(-8000);
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    child.once('exit', () => {
      if (this.#child === child) this.#child = undefined;
    });
    const deadline = Date.now() + 10_000;
    while (!(await this.#listening())) {
      if (!this.#child) throw new Error(`rsyslogd exited at start:\n${this.#output}`);
      if (Date.now() > deadline) throw new Error(`rsyslogd did not listen within 10 s:\n${this.#output}`);
      await sleep(50);
    }
  }

  /** True once both stream ports accept and a UDP probe has come through. */
  async #listening(): Promise<boolean> {
    for (const port of [this.ports.tcp, this.ports.tls]) {
      if (!(await canConnect(port))) return false;
    }
    await sendUdp(this.ports.udp, '<14>1 - - probe - - - ready');
    await sleep(20);
    return (await this.#readAll('udp')).some((r) => r.app === 'probe');
  }

  async #readAll(input: SyslogInput): Promise<ReceivedSyslog[]> {
    let text: string;
    try {
      text = await readFile(path.join(this.dir, `${input}.log`), 'utf8');
    } catch {
      return [];
    }
    // rsyslog may be half-way through writing the last line: only complete lines count (read again later).
    const lines = text.split('\n');
    lines.pop(); // what follows the last newline: empty, or a line still being written
    return lines.filter(Boolean).map((line) => JSON.parse(line) as ReceivedSyslog);
  }

  /** Everything the input received so far, in arrival order, minus the start-up probes. */
  async received(input: SyslogInput): Promise<ReceivedSyslog[]> {
    return (await this.#readAll(input)).filter((r) => r.app !== 'probe');
  }

  /** Waits until the input has received at least `count` messages. */
  async waitFor(input: SyslogInput, count: number, timeoutMs = 5000): Promise<ReceivedSyslog[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = await this.received(input);
      if (got.length >= count) return got;
      if (Date.now() > deadline) {
        throw new Error(
          `${input}: received ${got.length} of ${count} messages within ${timeoutMs} ms\n${this.#output}`,
        );
      }
      await sleep(25);
    }
  }

  /** Stops rsyslogd (SIGTERM, then SIGKILL after 5 s) and waits for it to exit. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
    this.#child = undefined;
  }

  /** Stops rsyslogd and removes the temporary directory. */
  async dispose(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * The params of each SD element of an RFC 5424 STRUCTURED-DATA string, unescaping `\"`, `\\` and `\]` (§6.3.3).
 * Throws on anything malformed, so a test fails on a message a strict receiver would reject.
 */
export function parseStructuredData(sd: string): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`bad STRUCTURED-DATA at ${i}: ${why}: ${sd}`);
  };
  if (sd === '-') return out;
  while (i < sd.length) {
    if (sd[i] !== '[') fail('expected [');
    const idEnd = sd.slice(i + 1).search(/[ \]]/);
    if (idEnd < 1) fail('expected SD-ID');
    const id = sd.slice(i + 1, i + 1 + idEnd);
    const params: Record<string, string> = {};
    i += 1 + idEnd;
    while (sd[i] === ' ') {
      const eq = sd.indexOf('="', i);
      if (eq < 0) fail('expected name="');
      const name = sd.slice(i + 1, eq);
      if (!/^[!-~]{1,32}$/.test(name) || /[= \]"]/.test(name)) fail(`bad PARAM-NAME ${name}`);
      i = eq + 2;
      let value = '';
      for (;;) {
        const c = sd[i];
        if (c === undefined) fail('unterminated value');
        if (c === '\\' && (sd[i + 1] === '"' || sd[i + 1] === '\\' || sd[i + 1] === ']')) {
          value += sd[i + 1];
          i += 2;
        } else if (c === '"') {
          i += 1;
          break;
        } else if (c === ']') {
          fail('unescaped ] in value');
        } else {
          value += c;
          i += 1;
        }
      }
      params[name] = value;
    }
    if (sd[i] !== ']') fail('expected ]');
    i += 1;
    out[id] = params;
  }
  return out;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function sendUdp(port: number, message: string): Promise<void> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    socket.send(message, port, '127.0.0.1', () => {
      socket.close();
      resolve();
    });
  });
}

function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}

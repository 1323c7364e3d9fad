/**
 * The web UI's static files (`src/ui/`), served by the admin listener under `/ui/`. The UI holds no data of its own:
 * it is a browser client of the admin REST API, which does all authentication, authorisation and access logging.
 *
 * Only a fixed list of files is served, read into memory once, so no request path ever reaches the file system (no
 * traversal, no directory listing). Every answer carries a strict Content-Security-Policy: the pages run only their
 * own scripts and styles, and recorded text (attacker-controlled) that ever slipped into markup still could not run.
 *
 * Where the files are: next to this module's folder, `../ui/`. From the sources (vitest) that is `src/ui/`; after
 * `npm run build` it is `dist/ui/`, which the build script copies from `src/ui/` (tsc copies no non-TypeScript files).
 * Besides those, the UI imports a few of the server's own modules ({@link SHARED_MODULES}), served compiled.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Every file the UI consists of, by name under `/ui/`; anything else under `/ui/` is 404. */
export const UI_FILES = [
  'index.html',
  'style.css',
  'app.js',
  'api.js',
  'dom.js',
  'blocks.js',
  'sign-in.js',
  'oidc-sign-in.js',
  'sessions.js',
  'session.js',
  'exchange.js',
  'search.js',
  'usage.js',
  'approvals.js',
  'keys.js',
  'config.js',
  'access-log.js',
] as const;

/**
 * Modules of the server the UI imports too, by the name it imports them by (`./exchange-turn.js`) → the module, from
 * the server's root folder: one implementation of a rule both apply, instead of a copy in the UI that drifts from
 * it. Such a module imports nothing at run time (a browser could not resolve it) and uses no Node API; its eslint
 * rule holds it to that.
 */
export const SHARED_MODULES: Readonly<Record<string, string>> = {
  'exchange-turn.js': 'recorder/exchange-turn',
};

/** Every name served under `/ui/`: the UI's own files, then the shared modules. */
export const SERVED_FILES: readonly string[] = [...UI_FILES, ...Object.keys(SHARED_MODULES)];

/** Where the UI's files are at run time: `src/ui/` from the sources, `dist/ui/` once built. */
export const UI_DIR = fileURLToPath(new URL('../ui/', import.meta.url));

/** The server's root folder, where {@link SHARED_MODULES} are: `src/` from the sources, `dist/` once built. */
export const SERVER_DIR = fileURLToPath(new URL('../', import.meta.url));

/** The prefix the UI is served under; the admin listener redirects `/` here. */
export const UI_PREFIX = '/ui/';

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/**
 * Headers on every UI response. The CSP allows only this origin's scripts, styles and API (no inline code, no
 * framing, no `<base>` games), and connections to `connectSources` besides (the sign-in issuer's origin, for
 * discovery and the token request); `no-referrer` keeps session ids in URLs from leaking to anything a page links to.
 */
export function uiSecurityHeaders(connectSources: readonly string[] = []): Readonly<Record<string, string>> {
  return {
    'content-security-policy':
      "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
      `connect-src ${["'self'", ...connectSources].join(' ')}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'`,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    'cross-origin-opener-policy': 'same-origin',
  };
}

/** The UI's headers without sign-in. */
export const UI_SECURITY_HEADERS = uiSecurityHeaders();

interface Asset {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

/** The UI's files in memory, or why they could not be read (the listener then answers `/ui/` with that reason). */
export type UiAssets =
  { readonly ok: true; readonly files: ReadonlyMap<string, Asset> } | { ok: false; problem: string };

/**
 * A shared module as the browser gets it: the compiled module (`dist/…js` once built) without its source-map comment.
 * From the sources (vitest) there is none, and the TypeScript is compiled here as tsc compiles it; typescript is a
 * development dependency, there whenever the sources run.
 */
function sharedModule(base: string): Buffer {
  let text: string;
  try {
    text = readFileSync(`${base}.js`, 'utf8').replace(/\n\/\/# sourceMappingURL=.*\s*$/, '\n');
  } catch {
    const ts = createRequire(import.meta.url)('typescript') as typeof import('typescript');
    const source = readFileSync(`${base}.ts`, 'utf8');
    const compilerOptions = {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2023,
      verbatimModuleSyntax: true,
    };
    text = ts.transpileModule(source, { compilerOptions }).outputText;
  }
  return Buffer.from(text);
}

/** Whether a compiled module imports another at run time, which the browser could not resolve under `/ui/`. */
export function importsAtRunTime(text: string): boolean {
  return /^\s*import\b|^\s*export\s[^;]*\bfrom\s/m.test(text);
}

/** Read the UI's files from `dir`, and the shared modules from `serverDir`, once, at start-up. */
export function loadUiAssets(dir: string = UI_DIR, serverDir: string = SERVER_DIR): UiAssets {
  const files = new Map<string, Asset>();
  const add = (name: string, body: Buffer): void => {
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    files.set(name, { body, type: CONTENT_TYPES[path.extname(name)] ?? 'application/octet-stream', etag });
  };
  try {
    for (const name of UI_FILES) add(name, readFileSync(path.join(dir, name)));
    for (const [name, module] of Object.entries(SHARED_MODULES)) add(name, sharedModule(path.join(serverDir, module)));
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    return { ok: false, problem: `the web UI's files are missing from ${dir} (${reason}): run npm run build` };
  }
  for (const name of Object.keys(SHARED_MODULES)) {
    if (importsAtRunTime(files.get(name)!.body.toString())) {
      return { ok: false, problem: `the web UI cannot load ${name} alone: it imports another module at run time` };
    }
  }
  return { ok: true, files };
}

/** The file a path under `/ui/` names: `/ui/` is the index; only exact names from {@link SERVED_FILES} match. */
export function uiFileFor(pathname: string): string | undefined {
  if (!pathname.startsWith(UI_PREFIX)) return undefined;
  const name = pathname.slice(UI_PREFIX.length) || 'index.html';
  return SERVED_FILES.includes(name) ? name : undefined;
}

/**
 * Answer a GET or HEAD for a UI file: 200 with the file, or 304 when the browser's copy is current. `no-cache` makes
 * the browser revalidate every time, so an upgraded gateway never runs yesterday's script against today's API.
 *
 * @returns false when `name` is not a loaded file (the caller answers 404).
 */
export function sendUiFile(
  assets: UiAssets,
  name: string,
  req: IncomingMessage,
  res: ServerResponse,
  securityHeaders: Readonly<Record<string, string>> = UI_SECURITY_HEADERS,
): boolean {
  if (!assets.ok) return false;
  const asset = assets.files.get(name);
  if (!asset) return false;
  const headers = { ...securityHeaders, 'cache-control': 'no-cache', etag: asset.etag };
  if (req.headers['if-none-match'] === asset.etag) {
    res.writeHead(304, headers);
    res.end();
    return true;
  }
  res.writeHead(200, { ...headers, 'content-type': asset.type, 'content-length': asset.body.length });
  res.end(req.method === 'HEAD' ? undefined : asset.body);
  return true;
}

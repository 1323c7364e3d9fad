/**
 * The masking stage: everything Vigil stores passes through a Masker before it is written, so secrets and personal
 * data never reach the store. What the client receives is never touched.
 *
 * ```ts
 * const masker = compileMasker(maskingConfigSchema.parse(connection.masking ?? {}));
 * const memo = createMaskingMemo(20_000);                          // one per session
 * const { value, findings } = masker.maskJson(requestJson, '$', memo);
 * const header = masker.maskText(headerValue, 'header:user-agent').value;
 * ```
 */
import { builtinDetectors, type Detector } from './detectors.js';
import { registerScanner } from './internal/engine-registry.js';
import { formatJsonPath, parseJsonPath, PathMatcher } from './json-path.js';
import { compileAllowEntry, type MaskingConfig } from './masking-config.js';
import type { MaskingMemo, MemoEntry } from './masking-memo.js';
import { applyMasks, Scanner, type TypeCounts } from './scanner.js';
import { isPasswordName, isSecretValue, SECRET_KEY } from './secret-value.js';

/** What was masked where. `path` is a JSON path (`$.messages[3].content[0].text`) or the caller's label. */
export interface MaskFinding {
  type: string;
  path: string;
  count: number;
}

export interface MaskResult<T> {
  value: T;
  findings: MaskFinding[];
  /** False when `value` is the input itself. */
  changed: boolean;
}

/**
 * Where a value sits: a label for its findings (`'$'`, `'headers'`), or its path from the document's root as
 * segments (`['messages', 3]`) when it is a piece of a larger document — then the config's `paths` rules and
 * secret-sounding keys apply as they would to the whole document.
 */
export type JsonRoot = string | readonly (string | number)[];

export interface Masker {
  readonly enabled: boolean;
  /** Mask one string (a header value, error text, a non-JSON body); `path` labels its findings (default `text`). */
  maskText(text: string, path?: string): MaskResult<string>;
  /**
   * Walk any JSON value and mask its strings and object keys (keys of 6+ characters are scanned: tool inputs can be
   * keyed by e-mail address; colliding masked keys get `#2`, `#3`); paths named in the config are masked whole.
   * Values the API needs back byte-for-byte are never altered: string `signature`, `id`, `tool_use_id`, `file_id`,
   * `encrypted_content`, `encrypted_index`, and `data` of `redacted_thinking` blocks and of base64 media sources
   * (binary, not text). Returns the very same object when nothing changed; otherwise changed parts are copied.
   * With a memo, strings seen before (earlier turns of the session) are not scanned again.
   */
  maskJson(value: unknown, path?: JsonRoot, memo?: MaskingMemo): MaskResult<unknown>;
}

/** Longest match a custom rule is expected to make; the stream masker holds back at least this much. */
export const CUSTOM_RULE_MAX_SPAN = 256;

const OPAQUE_KEYS = new Set(['signature', 'id', 'tool_use_id', 'file_id', 'encrypted_content', 'encrypted_index']);
const AWS_SECRET_KEY = /secret[_.-]?access[_.-]?key$/i;
const AWS_SECRET_VALUE = /^[A-Za-z0-9/+]{40}$/;

function isOpaque(key: string, obj: Record<string, unknown>, v: unknown): boolean {
  if (typeof v !== 'string') return false;
  if (OPAQUE_KEYS.has(key)) return true;
  return key === 'data' && (obj['type'] === 'redacted_thinking' || obj['type'] === 'base64');
}

function toFindings(byPath: Map<string, TypeCounts>): MaskFinding[] {
  const out: MaskFinding[] = [];
  for (const [path, counts] of byPath) for (const [type, count] of counts) out.push({ type, path, count });
  return out;
}

const UNCHANGED_TEXT: readonly (readonly [string, number])[] = [];

class CompiledMasker implements Masker {
  readonly enabled = true;
  private readonly paths: PathMatcher;

  constructor(
    readonly scanner: Scanner,
    pathPatterns: readonly string[],
    private readonly enabledTypes: ReadonlySet<string>,
  ) {
    this.paths = new PathMatcher(pathPatterns.map(parseJsonPath));
  }

  detectorEnabled(type: string): boolean {
    return this.enabledTypes.has(type);
  }

  maskText(text: string, path = 'text'): MaskResult<string> {
    const counts: TypeCounts = new Map();
    const value = this.scan(text, counts);
    if (value === text) return { value, findings: [], changed: false };
    return { value, findings: toFindings(new Map([[path, counts]])), changed: true };
  }

  maskJson(value: unknown, at: JsonRoot = '$', memo?: MaskingMemo): MaskResult<unknown> {
    memo?.bind(this);
    const byPath = new Map<string, TypeCounts>();
    let states = this.paths.empty ? null : this.paths.initial();
    let key: string | undefined;
    if (typeof at !== 'string') {
      if (states !== null) for (const seg of at) states = this.paths.next(states, seg);
      if (states?.length === 0) states = null; // no rule reaches into this piece
      const last = at.at(-1);
      key = typeof last === 'string' ? last : undefined;
    }
    const walker = new Walk(this, typeof at === 'string' ? at : formatJsonPath('$', at), byPath, memo);
    const out = walker.value(value, states, key);
    return { value: out, findings: toFindings(byPath), changed: out !== value };
  }

  /** Scan and mask one string, adding to `counts`. */
  scan(text: string, counts: TypeCounts): string {
    const raw = this.scanner.rawMatches(text);
    if (raw.length === 0) return text;
    return applyMasks(text, this.scanner.resolve(text, raw), 0, text.length, counts);
  }

  /** Scan through the memo: strings seen before are not scanned again. */
  scanMemo(text: string, memo: MaskingMemo | undefined): MemoEntry {
    if (memo === undefined || text.length < memo.minLength) return this.entry(text);
    const key = memo.key(text);
    const hit = memo.get(key, text.length);
    if (hit !== undefined) return hit;
    const e = this.entry(text);
    memo.set(key, e);
    return e;
  }

  private entry(text: string): MemoEntry {
    const counts: TypeCounts = new Map();
    const value = this.scan(text, counts);
    return {
      length: text.length,
      value: value === text ? null : value,
      counts: counts.size === 0 ? UNCHANGED_TEXT : [...counts],
    };
  }

  get pathMatcher(): PathMatcher {
    return this.paths;
  }
}

/** One maskJson call: the path being visited (as segments) and the findings so far. */
class Walk {
  private readonly segs: (string | number)[] = [];

  constructor(
    private readonly m: CompiledMasker,
    private readonly root: string,
    private readonly byPath: Map<string, TypeCounts>,
    private readonly memo: MaskingMemo | undefined,
  ) {}

  private record(type: string, n: number): void {
    const path = formatJsonPath(this.root, this.segs);
    let counts = this.byPath.get(path);
    if (counts === undefined) this.byPath.set(path, (counts = new Map()));
    counts.set(type, (counts.get(type) ?? 0) + n);
  }

  value(v: unknown, states: number[] | null, key: string | undefined): unknown {
    if (states !== null && states.length > 0 && this.m.pathMatcher.complete(states)) {
      this.record('path', 1);
      return '[REDACTED:path]';
    }
    if (typeof v === 'string') return this.string(v, key);
    if (v === null || typeof v !== 'object') return v;
    if (Array.isArray(v)) return this.array(v, states);
    return this.object(v as Record<string, unknown>, states);
  }

  private string(s: string, key: string | undefined): string {
    const e = this.m.scanMemo(s, this.memo);
    for (const [type, n] of e.counts) this.record(type, n);
    // A value under a secret-sounding key (`"password": "hunter2"`) has no `=` or `:` of its own for the text
    // detectors to see; the key supplies the context.
    if (e.value === null && key !== undefined && SECRET_KEY.test(key) && isSecretValue(s, isPasswordName(key), true)) {
      const type = AWS_SECRET_KEY.test(key) && AWS_SECRET_VALUE.test(s) ? 'aws_secret_access_key' : 'generic_secret';
      if (this.m.detectorEnabled(type) && !this.m.scanner.allowedValue(s)) {
        this.record(type, 1);
        return `[REDACTED:${type}]`;
      }
    }
    return e.value ?? s;
  }

  private array(a: readonly unknown[], states: number[] | null): unknown {
    let out: unknown[] | undefined;
    for (let i = 0; i < a.length; i++) {
      const item = a[i];
      this.segs.push(i);
      const next = states === null ? null : this.m.pathMatcher.next(states, i);
      const masked = this.value(item, next, undefined);
      this.segs.pop();
      if (masked !== item && out === undefined) out = a.slice(0, i);
      if (out !== undefined) out.push(masked);
    }
    return out ?? a;
  }

  private object(o: Record<string, unknown>, states: number[] | null): unknown {
    let out: Record<string, unknown> | undefined;
    const keys = Object.keys(o);
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      const item = o[k];
      // Keys are scanned too: a tool's JSON input can be keyed by e-mail address. Findings name the masked key.
      const mk = this.key(k);
      let masked = item;
      if (!isOpaque(k, o, item)) {
        this.segs.push(mk);
        const next = states === null ? null : this.m.pathMatcher.next(states, k);
        masked = this.value(item, next, k);
        this.segs.pop();
      }
      if ((masked !== item || mk !== k) && out === undefined) {
        out = {};
        for (let j = 0; j < i; j++) out[keys[j]!] = o[keys[j]!];
      }
      if (out !== undefined) {
        let name = mk;
        for (let n = 2; name !== k && Object.hasOwn(out, name); n++) name = `${mk}#${n}`;
        out[name] = masked;
      }
    }
    return out ?? o;
  }

  private key(k: string): string {
    if (k.length < 6) return k;
    const e = this.m.scanMemo(k, this.memo);
    for (const [type, n] of e.counts) this.record(type, n);
    return e.value ?? k;
  }
}

/** A masker that keeps everything: `masking.enabled: false`. */
const PASS_THROUGH: Masker = {
  enabled: false,
  maskText: (text) => ({ value: text, findings: [], changed: false }),
  maskJson: (value) => ({ value, findings: [], changed: false }),
};

/**
 * Compile a connection's masking config once, at start-up: detectors, custom rules, allow-list and paths. The
 * returned masker is stateless and safe to share across requests.
 */
export function compileMasker(config: MaskingConfig): Masker {
  if (!config.enabled) return PASS_THROUGH;
  const switches = config.detectors as Partial<Record<string, boolean>>;
  const detectors: Detector[] = builtinDetectors({ maskPrivateIps: config.mask_private_ips }).filter(
    (d) => switches[d.type] !== false,
  );
  for (const rule of config.rules) {
    detectors.push({
      type: rule.type,
      priority: 1,
      regex: new RegExp(rule.pattern, `g${rule.flags}`),
      maxSpan: CUSTOM_RULE_MAX_SPAN,
    });
  }
  const exact = new Set<string>();
  const patterns: RegExp[] = [];
  for (const a of config.allow) {
    const c = compileAllowEntry(a);
    if (typeof c === 'string') exact.add(c);
    else patterns.push(c);
  }
  const scanner = new Scanner(detectors, { exact, patterns });
  const masker = new CompiledMasker(scanner, config.paths, new Set(detectors.map((d) => d.type)));
  registerScanner(masker, scanner);
  return masker;
}

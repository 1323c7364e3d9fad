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

/** The kinds of thing found, each once, sorted: what an error or a summary names (never the values). */
export function findingTypes(findings: readonly MaskFinding[]): string[] {
  return [...new Set(findings.map((f) => f.type))].sort();
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
   * Values the API needs back byte-for-byte are never altered — `id` of a message or tool_use, `tool_use_id` of a
   * tool result, `signature` of thinking, `data` of `redacted_thinking` blocks and of base64 media sources (binary,
   * not text), `file_id` of a file source, `encrypted_*` of search results… — each only in an object of the `type`
   * that defines it, and never inside free-form JSON (a tool's `input`, `metadata`), where these are ordinary field
   * names. Returns the very same object when nothing changed; otherwise changed parts are copied.
   * With a memo, strings seen before (earlier turns of the session) are not scanned again.
   */
  maskJson(value: unknown, path?: JsonRoot, memo?: MaskingMemo): MaskResult<unknown>;
}

/** Longest match a custom rule is expected to make; the stream masker holds back at least this much. */
export const CUSTOM_RULE_MAX_SPAN = 256;

const AWS_SECRET_KEY = /secret[_.-]?access[_.-]?key$/i;
const AWS_SECRET_VALUE = /^[A-Za-z0-9/+]{40}$/;

const OPAQUE_ID_TYPES = new Set(['message', 'message_batch', 'file', 'model', 'skill', 'skill_version']);
const FILE_ID_TYPES = new Set([
  'file', // a document or image source
  'container_upload',
  'code_execution_output',
  'bash_code_execution_output',
  'char_location',
  'page_location',
  'content_block_location',
]);
const ENCRYPTED_CONTENT_TYPES = new Set([
  'web_search_result',
  'compaction',
  'compaction_delta',
  'advisor_redacted_result',
]);

/**
 * Values the API needs back byte for byte, by field name and the `type` of the object holding them (see the
 * Messages, Files, Models and Batches API references); approval rules do not read them either. Anywhere else these names are ordinary field names — a tool's
 * input may well have a `signature` or an `id` — and are masked like any other. (A switch, not a map of predicates:
 * this runs for every string in a body, and a map lookup plus a call cost ~5% of a memoised turn.)
 */
export function isOpaque(key: string, obj: Record<string, unknown>, v: unknown): boolean {
  if (typeof v !== 'string') return false;
  switch (key) {
    case 'id':
    case 'tool_use_id':
    case 'signature':
    case 'data':
    case 'file_id':
    case 'encrypted_content':
    case 'encrypted_index':
    case 'encrypted_stdout':
      break;
    default:
      return false;
  }
  const t = obj['type'];
  if (typeof t !== 'string') return false;
  switch (key) {
    case 'id': // msg_…, toolu_… (a tool_result names it again), srvtoolu_…, mcptoolu_…; and API resources' ids
      return t.endsWith('tool_use') || OPAQUE_ID_TYPES.has(t);
    case 'tool_use_id':
      return t === 'tool_result' || t.endsWith('_tool_result');
    case 'signature':
      return t === 'thinking' || t === 'signature_delta' || t === 'compaction';
    case 'data': // redacted_thinking is encrypted; a base64 source is binary media. (A `text` source's data is text.)
      return t === 'redacted_thinking' || t === 'base64';
    case 'file_id':
      return FILE_ID_TYPES.has(t);
    case 'encrypted_content':
      return ENCRYPTED_CONTENT_TYPES.has(t);
    case 'encrypted_index':
      return t === 'web_search_result_location';
    default: // encrypted_stdout
      return t === 'encrypted_code_execution_result';
  }
}

/**
 * Where JSON is written by the model or the caller, not shaped by the API: a tool's `input`, `metadata`, a tool's
 * `input_schema`. Nothing in it is exempt, whatever its field names or `type` say.
 */
function opensFreeForm(key: string, obj: Record<string, unknown>): boolean {
  if (key === 'input') {
    const type = obj['type'];
    return typeof type === 'string' && type.endsWith('tool_use');
  }
  return key === 'metadata' || key === 'input_schema';
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
    // A piece of a request (`['metadata']`) may itself be free-form.
    if (typeof at !== 'string' && at.some((seg) => seg === 'metadata' || seg === 'input_schema')) walker.freeForm = 1;
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
  /** Depth of free-form JSON (a tool's input, metadata) the walk is in: no value there is exempt. */
  freeForm = 0;

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
      if (this.freeForm > 0 || !isOpaque(k, o, item)) {
        const free = typeof item === 'object' && item !== null && opensFreeForm(k, o);
        if (free) this.freeForm++;
        this.segs.push(mk);
        const next = states === null ? null : this.m.pathMatcher.next(states, k);
        masked = this.value(item, next, k);
        this.segs.pop();
        if (free) this.freeForm--;
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

/**
 * The small JSONPath subset masking uses: `$`, `.name`, `['name']`, `[3]`, `[*]`, `.*` and recursive descent `..name`.
 * Paths are matched while the masker walks a value, as a set of positions in each pattern (no path strings are built
 * unless a finding needs one).
 */

type Selector =
  | { readonly kind: 'key'; readonly name: string }
  | { readonly kind: 'index'; readonly n: number }
  | { readonly kind: 'any' };

/** One step: a selector, applied to a child (or, with `descend`, to any descendant). */
export interface PathStep {
  readonly descend: boolean;
  readonly sel: Selector;
}

const NAME = /^[A-Za-z_$][\w$-]*/;

/** Parse a path; throws an Error naming the problem (shown as a config error). */
export function parseJsonPath(path: string): PathStep[] {
  if (!path.startsWith('$')) throw new Error(`JSON path "${path}" must start with $`);
  const steps: PathStep[] = [];
  let i = 1;
  while (i < path.length) {
    let descend = false;
    if (path.startsWith('..', i)) {
      descend = true;
      i += 2;
    } else if (path[i] === '.') {
      i += 1;
    } else if (path[i] !== '[') {
      throw new Error(`JSON path "${path}": unexpected "${path[i]}" at ${i}`);
    }
    if (path[i] === '[') {
      const close = path.indexOf(']', i);
      if (close < 0) throw new Error(`JSON path "${path}": missing ]`);
      const inner = path.slice(i + 1, close).trim();
      i = close + 1;
      if (inner === '*') steps.push({ descend, sel: { kind: 'any' } });
      else if (/^\d+$/.test(inner)) steps.push({ descend, sel: { kind: 'index', n: Number(inner) } });
      else if (/^'[^']*'$|^"[^"]*"$/.test(inner))
        steps.push({ descend, sel: { kind: 'key', name: inner.slice(1, -1) } });
      else throw new Error(`JSON path "${path}": [${inner}] must be an index, * or a quoted name`);
      continue;
    }
    if (path[i] === '*') {
      steps.push({ descend, sel: { kind: 'any' } });
      i += 1;
      continue;
    }
    const m = NAME.exec(path.slice(i));
    if (!m) throw new Error(`JSON path "${path}": expected a name at ${i}`);
    steps.push({ descend, sel: { kind: 'key', name: m[0] } });
    i += m[0].length;
  }
  if (steps.length === 0) throw new Error(`JSON path "${path}" selects the whole value; name a member`);
  return steps;
}

/**
 * Active positions in a set of compiled paths, as a flat list of (pattern, step) pairs. `next` moves them into a
 * child; `complete` says whether the current node is selected by some pattern.
 */
export class PathMatcher {
  constructor(private readonly patterns: readonly (readonly PathStep[])[]) {}

  get empty(): boolean {
    return this.patterns.length === 0;
  }

  /** The positions at the root. */
  initial(): number[] {
    const s: number[] = [];
    for (let p = 0; p < this.patterns.length; p++) s.push(p, 0);
    return s;
  }

  next(states: readonly number[], key: string | number): number[] {
    const out: number[] = [];
    for (let k = 0; k < states.length; k += 2) {
      const p = states[k]!;
      const i = states[k + 1]!;
      const steps = this.patterns[p]!;
      const step = steps[i];
      if (step === undefined) continue;
      if (step.descend) out.push(p, i);
      const sel = step.sel;
      if (sel.kind === 'any' || (sel.kind === 'key' ? sel.name === key : sel.n === key)) out.push(p, i + 1);
    }
    return out;
  }

  complete(states: readonly number[]): boolean {
    for (let k = 0; k < states.length; k += 2) {
      if (states[k + 1] === this.patterns[states[k]!]!.length) return true;
    }
    return false;
  }
}

const PLAIN = /^[A-Za-z_$][\w$]*$/;

/** Render a path from its segments: `$.messages[3].content[0].text`, `$["odd key"]`. */
export function formatJsonPath(root: string, segments: readonly (string | number)[]): string {
  let s = root;
  for (const seg of segments) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else if (PLAIN.test(seg)) s += `.${seg}`;
    else s += `[${JSON.stringify(seg)}]`;
  }
  return s;
}

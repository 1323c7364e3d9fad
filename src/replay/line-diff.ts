/**
 * A line diff (longest common subsequence) and its unified-style rendering, for showing how an assistant's answer
 * changed. Answers are short, so a quadratic LCS on what remains after trimming the common head and tail is fine;
 * past a size cap the middle is shown as removed-then-added rather than spending memory on it.
 */

export interface DiffLine {
  /** ' ' unchanged, '-' only in the first text, '+' only in the second. */
  readonly op: ' ' | '-' | '+';
  readonly line: string;
}

/** Beyond this many cells the LCS table would cost more than the answer is worth. */
const MAX_CELLS = 4_000_000;

/** The lines of `a` and `b` as one sequence of unchanged, removed and added lines. */
export function diffLines(a: readonly string[], b: readonly string[]): DiffLine[] {
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const midA = a.slice(head, a.length - tail);
  const midB = b.slice(head, b.length - tail);
  const out: DiffLine[] = a.slice(0, head).map((line) => ({ op: ' ', line }));
  out.push(...middle(midA, midB));
  out.push(...a.slice(a.length - tail).map((line): DiffLine => ({ op: ' ', line })));
  return out;
}

function middle(a: readonly string[], b: readonly string[]): DiffLine[] {
  const n = a.length;
  const m = b.length;
  if (n * m > MAX_CELLS || n === 0 || m === 0) {
    return [...a.map((line): DiffLine => ({ op: '-', line })), ...b.map((line): DiffLine => ({ op: '+', line }))];
  }
  // lcs[i][j]: length of the LCS of a[i..] and b[j..], in one flat array.
  const w = m + 1;
  const lcs = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * w + j] =
        a[i] === b[j] ? lcs[(i + 1) * w + j + 1]! + 1 : Math.max(lcs[(i + 1) * w + j]!, lcs[i * w + j + 1]!);
    }
  }
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ op: ' ', line: a[i]! });
      i++;
      j++;
    } else if (lcs[(i + 1) * w + j]! >= lcs[i * w + j + 1]!) out.push({ op: '-', line: a[i++]! });
    else out.push({ op: '+', line: b[j++]! });
  }
  while (i < n) out.push({ op: '-', line: a[i++]! });
  while (j < m) out.push({ op: '+', line: b[j++]! });
  return out;
}

/**
 * Render a diff unified-style: each line prefixed by its op; a run of unchanged lines is cut to `context` lines next
 * to each change it borders, with a `…` line for the rest.
 */
export function renderDiff(lines: readonly DiffLine[], context = 2): string[] {
  if (lines.every((l) => l.op === ' ')) return lines.map((l) => ` ${l.line}`);
  const out: string[] = [];
  let i = 0;
  while (i < lines.length) {
    if (lines[i]!.op !== ' ') {
      out.push(`${lines[i]!.op}${lines[i]!.line}`);
      i++;
      continue;
    }
    let end = i;
    while (end < lines.length && lines[end]!.op === ' ') end++;
    const run = lines.slice(i, end);
    const keepHead = i === 0 ? 0 : context;
    const keepTail = end === lines.length ? 0 : context;
    // Cut only when it saves more than the `…` line costs.
    if (run.length > keepHead + keepTail + 1) {
      for (const l of run.slice(0, keepHead)) out.push(` ${l.line}`);
      out.push('…');
      for (const l of run.slice(run.length - keepTail)) out.push(` ${l.line}`);
    } else for (const l of run) out.push(` ${l.line}`);
    i = end;
  }
  return out;
}

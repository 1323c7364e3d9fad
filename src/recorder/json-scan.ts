/**
 * Finds the top-level members of a JSON object, and the elements of its `messages` array, as exact byte ranges of the
 * body — without decoding it or building the parsed value. The recorder stores and masks a request piece by piece, and
 * a piece it has seen before (Claude Code resends the whole conversation every turn) costs a lookup instead of a
 * parse, a scan for secrets and a serialisation.
 *
 * Offsets are byte offsets: the bytes are read as Latin-1 (one character per byte, a copy rather than a decoding), and
 * everything this looks for (quotes, backslashes, brackets, commas, colons, whitespace) is ASCII, which never occurs
 * inside a multi-byte UTF-8 character.
 *
 * Given the scan of an earlier body of the same conversation and how many bytes at its start and end the two share,
 * only what changed is scanned: the scan starts again after the last member or message that lies wholly in the shared
 * start, and once a member ends where the shared end begins, the rest is the earlier scan's, shifted. The result is
 * exactly what a scan of the whole body gives (the scan reads left to right, and its state after a value depends only
 * on the bytes before it).
 *
 * Only structure is checked (strings, nesting); a text this accepts that is not valid JSON is caught by the caller,
 * which parses what it needs.
 */

export interface Member {
  readonly key: string;
  /** Byte offsets in the body of the member's value. */
  readonly start: number;
  readonly end: number;
  /** For `messages`: the [start, end) of each element. */
  readonly elements?: ReadonlyArray<readonly [number, number]>;
}

/** The scan of an earlier body, and the bytes this one shares with it at its start and at its end. */
export interface EarlierScan {
  readonly raw: Buffer;
  readonly members: readonly Member[];
  /** Length of the common start. */
  readonly prefix: number;
  /** Length of the common end (not overlapping the common start in either body). */
  readonly suffix: number;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** The body from `base` on, read one character per byte; every position is a byte offset in the whole body. */
class Scanner {
  private readonly s: string;

  constructor(
    raw: Buffer,
    private readonly base: number,
  ) {
    this.s = raw.toString('latin1', base, raw.length);
  }

  get length(): number {
    return this.base + this.s.length;
  }

  /** The byte at `i`; NaN past the end. */
  at(i: number): number {
    return this.s.charCodeAt(i - this.base);
  }

  skipWs(i: number): number {
    while (isWs(this.at(i))) i++;
    return i;
  }

  /** End (exclusive) of the string starting at the quote at `i`, or -1. */
  stringEnd(i: number): number {
    const s = this.s;
    for (let j = i + 1 - this.base; ;) {
      const q = s.indexOf('"', j);
      if (q < 0) return -1;
      let backslashes = 0;
      for (let k = q - 1; s.charCodeAt(k) === BACKSLASH; k--) backslashes++;
      if (backslashes % 2 === 0) return q + 1 + this.base;
      j = q + 1;
    }
  }

  /** End (exclusive) of the value starting at `i`, or -1. */
  valueEnd(i: number): number {
    const c = this.at(i);
    if (c === QUOTE) return this.stringEnd(i);
    if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      let depth = 0;
      const end = this.length;
      for (let j = i; j < end; j++) {
        const d = this.at(j);
        if (d === QUOTE) {
          j = this.stringEnd(j) - 1;
          if (j < 0) return -1;
        } else if (d === OPEN_OBJECT || d === OPEN_ARRAY) depth++;
        else if (d === CLOSE_OBJECT || d === CLOSE_ARRAY) {
          depth--;
          if (depth === 0) return j + 1;
        }
      }
      return -1;
    }
    let j = i;
    const end = this.length;
    while (j < end) {
      const d = this.at(j);
      if (d === COMMA || d === CLOSE_OBJECT || d === CLOSE_ARRAY || isWs(d)) break;
      j++;
    }
    return j > i ? j : -1;
  }

  /**
   * The elements of the array whose `[` is at `start`, appended to `out`; returns the array's end (exclusive), or -1.
   * With `after`, `out` already holds the elements up to one that ends at `after`, and the scan goes on from there.
   */
  elements(start: number, out: Array<readonly [number, number]>, after?: number): number {
    let i: number;
    if (after === undefined) {
      i = this.skipWs(start + 1);
      if (this.at(i) === CLOSE_ARRAY) return i + 1;
    } else {
      i = this.skipWs(after);
      const c = this.at(i);
      if (c === CLOSE_ARRAY) return i + 1;
      if (c !== COMMA) return -1;
      i = this.skipWs(i + 1);
    }
    for (;;) {
      const e = this.valueEnd(i);
      if (e < 0) return -1;
      out.push([i, e]);
      i = this.skipWs(e);
      const c = this.at(i);
      if (c === CLOSE_ARRAY) return i + 1;
      if (c !== COMMA) return -1;
      i = this.skipWs(i + 1);
    }
  }
}

/** Where a scan may start again, given an earlier body's scan: after these members, or inside their last one's messages. */
interface Resume {
  readonly members: Member[];
  /** The member being scanned is `messages` starting at `start`, and these of its elements are known. */
  readonly messages?: { readonly start: number; readonly elements: Array<readonly [number, number]> };
  /** Right after the last known member's value, or the last known element. */
  readonly at: number;
}

function resumePoint(earlier: EarlierScan): Resume | null {
  const { members, prefix } = earlier;
  // A value is known when it ends before the common start does: the byte after it was read too (a number ends there).
  let k = 0;
  while (k < members.length && members[k]!.end < prefix) k++;
  const next = members[k];
  if (next?.elements && next.start < prefix) {
    let j = 0;
    while (j < next.elements.length && next.elements[j]![1] < prefix) j++;
    if (j > 0) {
      return {
        members: members.slice(0, k),
        messages: { start: next.start, elements: next.elements.slice(0, j) },
        at: next.elements[j - 1]![1],
      };
    }
  }
  if (k === 0) return null;
  return { members: members.slice(0, k), at: members[k - 1]!.end };
}

/**
 * When a member of this body ends at `end` inside the common end, and a member of the earlier body ends at the same
 * place in it: the members after it are the earlier ones, shifted. Else null.
 */
function sharedTail(raw: Buffer, end: number, earlier: EarlierScan): Member[] | null {
  if (earlier.suffix === 0 || end < raw.length - earlier.suffix) return null;
  const shift = raw.length - earlier.raw.length;
  const members = earlier.members;
  for (let t = members.length - 1; t >= 0; t--) {
    const m = members[t]!;
    if (m.end === end - shift) {
      return members.slice(t + 1).map((x) => ({
        key: x.key,
        start: x.start + shift,
        end: x.end + shift,
        ...(x.elements ? { elements: x.elements.map(([s, e]) => [s + shift, e + shift] as const) } : {}),
      }));
    }
    if (m.end < end - shift) return null;
  }
  return null;
}

/** The members of the object `raw` is, in order; null if it is not an object of that shape. */
export function scanObject(raw: Buffer, earlier?: EarlierScan): Member[] | null {
  const resume = earlier ? resumePoint(earlier) : null;
  const sc = new Scanner(raw, resume ? resume.at : 0);
  let members: Member[];
  let i: number;
  if (resume === null) {
    members = [];
    i = sc.skipWs(0);
    if (sc.at(i) !== OPEN_OBJECT) return null;
    i = sc.skipWs(i + 1);
    if (sc.at(i) === CLOSE_OBJECT) return sc.skipWs(i + 1) === raw.length ? members : null;
  } else {
    members = resume.members;
    i = resume.at;
    if (resume.messages) {
      const elements = resume.messages.elements;
      const end = sc.elements(resume.messages.start, elements, i);
      if (end < 0) return null;
      members.push({ key: 'messages', start: resume.messages.start, end, elements });
      i = end;
    }
  }
  // `i` is at a key when nothing is known yet, else right after the last member's value.
  let afterValue = resume !== null;
  for (;;) {
    if (afterValue) {
      if (earlier) {
        const tail = sharedTail(raw, i, earlier);
        if (tail) return members.concat(tail);
      }
      i = sc.skipWs(i);
      const c = sc.at(i);
      if (c === CLOSE_OBJECT) return sc.skipWs(i + 1) === raw.length ? members : null;
      if (c !== COMMA) return null;
      i = sc.skipWs(i + 1);
    }
    if (sc.at(i) !== QUOTE) return null;
    const keyEnd = sc.stringEnd(i);
    if (keyEnd < 0) return null;
    const key = raw.toString('utf8', i + 1, keyEnd - 1);
    const name = key.includes('\\') ? (JSON.parse(`"${key}"`) as string) : key;
    i = sc.skipWs(keyEnd);
    if (sc.at(i) !== COLON) return null;
    i = sc.skipWs(i + 1);
    let end: number;
    if (name === 'messages' && sc.at(i) === OPEN_ARRAY) {
      const elements: Array<readonly [number, number]> = [];
      end = sc.elements(i, elements);
      if (end < 0) return null;
      members.push({ key: name, start: i, end, elements });
    } else {
      end = sc.valueEnd(i);
      if (end < 0) return null;
      members.push({ key: name, start: i, end });
    }
    i = end;
    afterValue = true;
  }
}

/** Length of the longest common start of `a` and `b`. */
export function commonPrefixLength(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  const STEP = 4096;
  let i = 0;
  while (i + STEP <= n && a.compare(b, i, i + STEP, i, i + STEP) === 0) i += STEP;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** Length of the longest common end of `a` and `b`, at most `max`. */
export function commonSuffixLength(a: Buffer, b: Buffer, max: number): number {
  const n = Math.min(a.length, b.length, max);
  const STEP = 4096;
  let i = 0;
  while (i + STEP <= n && a.compare(b, b.length - i - STEP, b.length - i, a.length - i - STEP, a.length - i) === 0)
    i += STEP;
  while (i < n && a[a.length - 1 - i] === b[b.length - 1 - i]) i++;
  return i;
}

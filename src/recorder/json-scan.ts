/**
 * Finds the top-level members of a JSON object, and the elements of its `messages` array, as exact slices of the
 * text — without building the parsed value. The recorder stores and masks a request piece by piece, and a piece it has
 * seen before (Claude Code resends the whole conversation every turn) costs a hash instead of a parse, a scan for
 * secrets and a serialisation.
 *
 * Only structure is checked (strings, nesting); a text this accepts that is not valid JSON is caught by the caller,
 * which parses what it needs.
 */

export interface Member {
  readonly key: string;
  /** Offsets in the text of the member's value. */
  readonly start: number;
  readonly end: number;
  /** For `messages`: the [start, end) of each element. */
  readonly elements?: ReadonlyArray<readonly [number, number]>;
}

const WS = new Set([0x20, 0x0a, 0x0d, 0x09]);

function skipWs(s: string, i: number): number {
  while (i < s.length && WS.has(s.charCodeAt(i))) i++;
  return i;
}

/** End (exclusive) of the string starting at the quote at `i`. */
function stringEnd(s: string, i: number): number {
  for (let j = i + 1; j < s.length;) {
    const q = s.indexOf('"', j);
    if (q < 0) return -1;
    let backslashes = 0;
    for (let k = q - 1; s.charCodeAt(k) === 0x5c; k--) backslashes++;
    if (backslashes % 2 === 0) return q + 1;
    j = q + 1;
  }
  return -1;
}

/** End (exclusive) of the value starting at `i`, or -1. */
function valueEnd(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c === 0x22) return stringEnd(s, i);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    for (let j = i; j < s.length; j++) {
      const d = s.charCodeAt(j);
      if (d === 0x22) {
        j = stringEnd(s, j) - 1;
        if (j < 0) return -1;
      } else if (d === 0x7b || d === 0x5b) depth++;
      else if (d === 0x7d || d === 0x5d) {
        depth--;
        if (depth === 0) return j + 1;
      }
    }
    return -1;
  }
  let j = i;
  while (j < s.length) {
    const d = s.charCodeAt(j);
    if (d === 0x2c || d === 0x7d || d === 0x5d || WS.has(d)) break;
    j++;
  }
  return j > i ? j : -1;
}

function arrayElements(s: string, start: number, end: number): Array<[number, number]> | null {
  const out: Array<[number, number]> = [];
  let i = skipWs(s, start + 1);
  if (s.charCodeAt(i) === 0x5d) return i === end - 1 ? out : null;
  for (;;) {
    const e = valueEnd(s, i);
    if (e < 0) return null;
    out.push([i, e]);
    i = skipWs(s, e);
    const c = s.charCodeAt(i);
    if (c === 0x5d) return i === end - 1 ? out : null;
    if (c !== 0x2c) return null;
    i = skipWs(s, i + 1);
  }
}

/** The members of the object `text` is, in order; null if it is not an object of that shape. */
export function scanObject(text: string): Member[] | null {
  let i = skipWs(text, 0);
  if (text.charCodeAt(i) !== 0x7b) return null;
  i = skipWs(text, i + 1);
  const members: Member[] = [];
  if (text.charCodeAt(i) === 0x7d) return skipWs(text, i + 1) === text.length ? members : null;
  for (;;) {
    if (text.charCodeAt(i) !== 0x22) return null;
    const keyEnd = stringEnd(text, i);
    if (keyEnd < 0) return null;
    const rawKey = text.slice(i + 1, keyEnd - 1);
    const key = rawKey.includes('\\') ? (JSON.parse(text.slice(i, keyEnd)) as string) : rawKey;
    i = skipWs(text, keyEnd);
    if (text.charCodeAt(i) !== 0x3a) return null;
    i = skipWs(text, i + 1);
    const end = valueEnd(text, i);
    if (end < 0) return null;
    if (key === 'messages' && text.charCodeAt(i) === 0x5b) {
      const elements = arrayElements(text, i, end);
      if (!elements) return null;
      members.push({ key, start: i, end, elements });
    } else {
      members.push({ key, start: i, end });
    }
    i = skipWs(text, end);
    const c = text.charCodeAt(i);
    if (c === 0x7d) return skipWs(text, i + 1) === text.length ? members : null;
    if (c !== 0x2c) return null;
    i = skipWs(text, i + 1);
  }
}

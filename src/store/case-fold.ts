/**
 * How a caller hold matches an e-mail whatever its case: each code point folded on its own — to the small form of its
 * capital, so the variants of one letter meet (σ and final ς, s and ſ, k and the Kelvin sign K); a letter whose small
 * or capital form is more than one code point (İ, ß) folds to itself or its one-code-point partner. The same fold in
 * JavaScript (a purge's last check, ledger-index.ts), in SQLite (a function the store registers) and in PostgreSQL
 * (`translate()` with a table made here), so the candidate query, a dry run and a purge take the same exchanges.
 *
 * SQL `lower()` is not that: SQLite's folds ASCII letters only; PostgreSQL's does what the database's LC_CTYPE says
 * (ASCII letters only under `C`, each locale's own rules otherwise). And `toLowerCase()` is not one code point at a
 * time: a Σ at the end of a word becomes ς, İ two code points — which no per-character SQL function can follow.
 */

const ASCII = /^[\x00-\x7f]*$/;

/** The code point `c` folded (see above). */
function foldCodePoint(c: string): string {
  const upper = c.toUpperCase();
  const base = isOneCodePoint(upper) ? upper : c;
  const lower = base.toLowerCase();
  return isOneCodePoint(lower) ? lower : c;
}

const isOneCodePoint = (s: string): boolean => s.length === 1 || (s.length === 2 && s.codePointAt(0)! > 0xffff);

/** `text` with every code point folded: two texts match, whatever their case, when their folds are equal. */
export function foldCase(text: string): string {
  if (ASCII.test(text)) return text.toLowerCase();
  let out = '';
  for (const c of text) out += foldCodePoint(c);
  return out;
}

/**
 * A PostgreSQL `translate(text, from, to)` table that folds every text whose fold is made of the code points in the
 * folds of `texts` as {@link foldCase} does: each code point that folds to one of those, but is not one, maps to its
 * fold. So `translate(x) = translate(h)` exactly when `foldCase(x) = foldCase(h)`, for each `h` of `texts` — a code
 * point of `x` the table leaves as it is (and folds elsewhere) makes both sides differ either way. Kept to the code
 * points of `texts` (the holds' callers), the table stays a few characters long: `translate()` looks each character up
 * in it.
 */
export function foldTable(texts: Iterable<string>): { readonly from: string; readonly to: string } {
  const wanted = new Set<string>();
  for (const t of texts) for (const c of foldCase(t)) wanted.add(c);
  let from = '';
  let to = '';
  const others = foldedFrom();
  for (const f of wanted) {
    for (const c of others.get(f) ?? []) {
      from += c;
      to += f;
    }
  }
  return { from, to };
}

let folds: Map<string, string[]> | undefined;

/** Every code point that folds to another, by what it folds to (built once, on first use: some 100k code points). */
function foldedFrom(): Map<string, string[]> {
  if (folds) return folds;
  folds = new Map();
  // Beyond U+1FFFF no code point has a case (checked by test/unit/store/case-fold.test.ts).
  for (let cp = 0; cp <= 0x1ffff; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    const c = String.fromCodePoint(cp);
    if (!CASED.test(c)) continue;
    const f = foldCodePoint(c);
    if (f === c) continue;
    const list = folds.get(f);
    if (list) list.push(c);
    else folds.set(f, [c]);
  }
  return folds;
}

const CASED = /^\p{Changes_When_Casemapped}$/u;

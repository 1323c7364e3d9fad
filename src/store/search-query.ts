/**
 * The search query language both stores accept, and its safe translation into each engine's own syntax.
 *
 * A query is words and "quoted phrases"; every one must match; a word ending in `*` matches as a prefix. Nothing
 * else is syntax: `OR`, `NOT`, `-`, `:`, `^`, `NEAR` and parentheses are searched for as text (or dropped as
 * punctuation by the tokenizer), so a user's input can never be read as FTS5 or tsquery operators.
 */

/** One thing that must match: a phrase of one or more words, optionally a prefix. */
export interface SearchTerm {
  readonly text: string;
  readonly prefix: boolean;
}

// A letter or digit in any script: a term without one would be empty once tokenized, and an empty phrase matches
// nothing (FTS5) or everything (tsquery), so such terms are dropped rather than sent.
const WORDY = /[\p{L}\p{N}]/u;

/** Split a user's query into terms. Unbalanced quotes close at the end of the query. */
export function parseSearchQuery(query: string): SearchTerm[] {
  const terms: SearchTerm[] = [];
  const re = /"([^"]*)"?|(\S+)/g;
  for (const m of query.matchAll(re)) {
    const phrase = m[1];
    if (phrase !== undefined) {
      if (WORDY.test(phrase)) terms.push({ text: phrase.trim(), prefix: false });
      continue;
    }
    let word = m[2]!;
    const prefix = word.length > 1 && word.endsWith('*');
    word = word.replace(/\*+$/, '');
    if (WORDY.test(word)) terms.push({ text: word, prefix });
  }
  return terms;
}

/** The terms as an FTS5 MATCH expression: each a double-quoted string (FTS5's only escape is doubling `"`). */
export function fts5Match(terms: readonly SearchTerm[]): string {
  return terms.map((t) => `"${t.text.replaceAll('"', '""')}"${t.prefix ? '*' : ''}`).join(' ');
}

/**
 * The terms as a PostgreSQL tsquery expression over bind parameters: the text of each term is only ever a bound
 * value, turned into lexemes by `phraseto_tsquery`, or quoted with `quote_literal` before `to_tsquery` for a prefix.
 *
 * @param param - registers a bound value and returns its placeholder (`$3`).
 */
export function tsQuery(terms: readonly SearchTerm[], config: string, param: (v: unknown) => string): string {
  return terms
    .map((t) =>
      t.prefix
        ? `to_tsquery('${config}', quote_literal(${param(t.text)}::text) || ':*')`
        : `phraseto_tsquery('${config}', ${param(t.text)}::text)`,
    )
    .join(' && ');
}

/** Text as the index stores it: PostgreSQL text cannot hold NUL, and a NUL must not fail a recording. */
export function indexableText(text: string): string {
  return text.includes('\0') ? text.replaceAll('\0', ' ') : text;
}

/**
 * One pass over a string: run the detectors whose prefilter passes, collect their raw matches, keep the strongest of
 * any overlapping ones, drop allow-listed values, and build the masked text. Shared by the masker (whole strings) and
 * the stream masker (windows of a growing text), which is why matches can be collected from an offset.
 */
import type { Detector } from './detectors.js';

/** A match before overlap resolution. `start`/`end` is everything the pattern read; `maskStart`/`maskEnd` is replaced. */
export interface RawMatch {
  readonly start: number;
  readonly end: number;
  readonly maskStart: number;
  readonly maskEnd: number;
  readonly detector: Detector;
}

/** Known false positives: exact values, or `/regex/flags` entries tested against the value and the whole match. */
export interface AllowList {
  readonly exact: ReadonlySet<string>;
  readonly patterns: readonly RegExp[];
}

export class Scanner {
  private readonly gated: readonly Detector[];
  private readonly ungated: readonly Detector[];
  /** Every prefilter joined into one test (one per flag set): when none matches, no gated detector can. */
  private readonly gates: readonly RegExp[];

  constructor(
    readonly detectors: readonly Detector[],
    private readonly allow: AllowList,
  ) {
    this.gated = detectors.filter((d) => d.prefilter !== undefined);
    this.ungated = detectors.filter((d) => d.prefilter === undefined);
    const byFlags = new Map<string, Set<string>>();
    for (const d of this.gated) {
      const { source, flags } = d.prefilter!;
      const set = byFlags.get(flags) ?? new Set<string>();
      set.add(`(?:${source})`);
      byFlags.set(flags, set);
    }
    this.gates = [...byFlags].map(([flags, sources]) => new RegExp([...sources].join('|'), flags));
  }

  /** All raw matches that start at or after `from`; characters before `from` are context for lookbehinds only. */
  rawMatches(text: string, from = 0): RawMatch[] {
    const out: RawMatch[] = [];
    if (this.gates.some((g) => g.test(text))) {
      for (const det of this.gated) if (det.prefilter!.test(text)) this.run(det, text, from, out);
    }
    for (const det of this.ungated) this.run(det, text, from, out);
    return out;
  }

  private run(det: Detector, text: string, from: number, out: RawMatch[]): void {
    const re = det.regex;
    re.lastIndex = from;
    let m: RegExpExecArray | null;
    while ((m = re.exec(text)) !== null) {
      const len = m[0].length;
      if (len === 0 || (det.validate !== undefined && !det.validate(m, text))) {
        re.lastIndex = m.index + 1;
        continue;
      }
      const [ms, me] = det.range ? det.range(m) : [m.index, m.index + len];
      if (me > ms) {
        out.push({
          start: Math.min(m.index, ms),
          end: Math.max(m.index + len, me),
          maskStart: ms,
          maskEnd: me,
          detector: det,
        });
      }
    }
  }

  /**
   * Keep, among overlapping matches, the one of lowest priority number (then the earliest, then the longest), then
   * drop the allow-listed ones. An allowed match still claims its span, so a weaker detector cannot mask it instead.
   * Returns the kept matches in text order.
   */
  resolve(text: string, raw: readonly RawMatch[]): RawMatch[] {
    if (raw.length === 0) return [];
    const sorted =
      raw.length === 1
        ? raw
        : [...raw].sort(
            (a, b) =>
              a.detector.priority - b.detector.priority || a.start - b.start || b.end - b.start - (a.end - a.start),
          );
    const kept: RawMatch[] = []; // ordered by start, non-overlapping
    for (const m of sorted) {
      let lo = 0;
      let hi = kept.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (kept[mid]!.start < m.start) lo = mid + 1;
        else hi = mid;
      }
      const prev = kept[lo - 1];
      const next = kept[lo];
      if ((prev !== undefined && prev.end > m.start) || (next !== undefined && next.start < m.end)) continue;
      kept.splice(lo, 0, m);
    }
    return kept.filter((m) => !this.allowed(text, m));
  }

  /** Whether a value is on the allow-list. */
  allowedValue(value: string): boolean {
    const { exact, patterns } = this.allow;
    return exact.has(value) || patterns.some((p) => p.test(value));
  }

  private allowed(text: string, m: RawMatch): boolean {
    const { exact, patterns } = this.allow;
    if (exact.size === 0 && patterns.length === 0) return false;
    return this.allowedValue(text.slice(m.maskStart, m.maskEnd)) || this.allowedValue(text.slice(m.start, m.end));
  }
}

/** Counts of findings by type. */
export type TypeCounts = Map<string, number>;

/**
 * Replace each kept match's mask range in `text[from, to)` with `[REDACTED:<type>]`, counting by type into `counts`.
 */
export function applyMasks(
  text: string,
  kept: readonly RawMatch[],
  from: number,
  to: number,
  counts: TypeCounts,
): string {
  if (kept.length === 0) return from === 0 && to === text.length ? text : text.slice(from, to);
  let out = '';
  let pos = from;
  for (const m of kept) {
    out += text.slice(pos, m.maskStart) + `[REDACTED:${m.detector.type}]`;
    pos = m.maskEnd;
    counts.set(m.detector.type, (counts.get(m.detector.type) ?? 0) + 1);
  }
  return out + text.slice(pos, to);
}

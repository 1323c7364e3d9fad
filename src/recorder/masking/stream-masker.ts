/**
 * Masks the fragments of one streamed content block (`text_delta` texts, or `input_json_delta` partial JSON) so that a
 * secret split across fragments is masked too, and so that the stored fragments, concatenated, equal exactly
 * `maskText(whole block)`.
 *
 * How: text is held back until no detector could still change its masking. Every detector's matches (plus what its
 * lookaheads read) fit in `maxSpan` characters, so a match that starts `maxSpan` or more characters before the end of
 * what has arrived is final. A fragment is released up to a cut that is
 * - at least the short hold-back (the largest `maxSpan` of the ordinary detectors, ~620 characters) before the end;
 * - before any anchor of a long detector (`-----BEGIN`, `eyJ`, `private_key`, `pypi-AgE`) that is still within that
 *   detector's span of the end — so a PEM block or JWT is held until it is complete or provably not a match
 *   (bounded by its `maxSpan`: 17,000 characters for PEM, 12,310 for JWT);
 * - not inside any match found so far.
 * The last {@link CONTEXT_CHARS} released characters are kept for lookbehinds. Scans are batched (every
 * {@link SCAN_STEP} characters at most), so `push` often returns '' and the text appears in a later fragment; `end()`
 * returns everything still held. Only storage sees this delay: the client stream is never held back.
 *
 * Custom rules are assumed to match at most {@link CUSTOM_RULE_MAX_SPAN} characters; a longer custom match split
 * across fragments is still masked when it falls within one released piece, but exactness is only promised below that.
 */
import { CONTEXT_CHARS, type Detector } from './detectors.js';
import { scannerOf } from './internal/engine-registry.js';
import type { Masker, MaskFinding } from './masker.js';
import { applyMasks, type Scanner, type TypeCounts } from './scanner.js';

/** Rescan at most once per this many new characters. */
export const SCAN_STEP = 512;
/** Characters before an anchor where its match may begin (`\"private_key` starts before `private_key`). */
const ANCHOR_LEAD = 8;

export class StreamMasker {
  private readonly scanner: Scanner | undefined;
  private readonly holdBack: number;
  private readonly longDetectors: readonly Detector[];
  private buf = '';
  /** Index in `buf` up to which text has been released; what precedes it is lookbehind context. */
  private released = 0;
  private nextScanAt = 0;
  private ended = false;
  /** Absolute offset (in the original text) of `buf[0]`. */
  private base = 0;
  private total = 0;
  private readonly counts: TypeCounts = new Map();

  /**
   * @param masker a masker from compileMasker (a disabled one passes fragments through unchanged)
   * @param path label for the findings, e.g. `$.content[1].text` of the assembled message
   */
  constructor(
    masker: Masker,
    readonly path = 'stream',
  ) {
    this.scanner = scannerOf(masker);
    const detectors = this.scanner?.detectors ?? [];
    this.longDetectors = detectors.filter((d) => d.anchor !== undefined);
    this.holdBack = Math.max(0, ...detectors.filter((d) => d.anchor === undefined).map((d) => d.maxSpan));
  }

  /** The most characters `push` can hold back when no long-detector anchor is pending. */
  get shortHoldBack(): number {
    return this.holdBack + SCAN_STEP;
  }

  /** What to store for this fragment: possibly '' (held back), possibly text held from earlier fragments. */
  push(fragment: string): string {
    if (this.ended) throw new Error('StreamMasker: push() after end()');
    this.total += fragment.length;
    if (this.scanner === undefined) return fragment;
    this.buf += fragment;
    const pending = this.buf.length - this.released;
    if (pending < this.holdBack + SCAN_STEP || this.buf.length < this.nextScanAt) return '';
    return this.release(false);
  }

  /** What to store when the block ends: everything still held, masked. */
  end(): string {
    if (this.ended) return '';
    this.ended = true;
    if (this.scanner === undefined) return '';
    const out = this.release(true);
    this.buf = '';
    this.released = 0;
    this.base = this.total;
    return out;
  }

  /**
   * How many characters of the original text have been released so far (what `push`/`end` returned so far is the
   * masking of exactly that prefix).
   */
  get releasedUpTo(): number {
    if (this.scanner === undefined) return this.total;
    return this.ended ? this.total : this.base + this.released;
  }

  /** Findings so far (complete after `end()`). */
  get findings(): MaskFinding[] {
    return [...this.counts].map(([type, count]) => ({ type, path: this.path, count }));
  }

  private release(final: boolean): string {
    const scanner = this.scanner!;
    const buf = this.buf;
    const from = this.released;
    const n = buf.length;
    const raw = scanner.rawMatches(buf, from);
    let cut = n;
    if (!final) {
      cut = n - this.holdBack;
      let resumeAt = n + SCAN_STEP;
      for (const det of this.longDetectors) {
        if (det.prefilter !== undefined && !det.prefilter.test(buf)) continue;
        const anchor = det.anchor!;
        anchor.lastIndex = Math.max(from, n - det.maxSpan);
        const a = anchor.exec(buf);
        if (a !== null && a.index - ANCHOR_LEAD < cut) {
          cut = Math.max(from, a.index - ANCHOR_LEAD);
          // Nothing before this anchor can be released until its detector's span has fully arrived.
          resumeAt = Math.max(resumeAt, a.index + det.maxSpan + 1);
        }
      }
      this.nextScanAt = resumeAt;
      for (let moved = true; moved;) {
        moved = false;
        for (const m of raw) {
          if (m.start < cut && m.end > cut) {
            cut = m.start;
            moved = true;
          }
        }
      }
      if (cut <= from) return '';
    }
    const kept = scanner.resolve(
      buf,
      raw.filter((m) => m.start < cut),
    );
    const out = applyMasks(buf, kept, from, cut, this.counts);
    const keepFrom = Math.max(0, cut - CONTEXT_CHARS);
    this.base += keepFrom;
    this.buf = buf.slice(keepFrom);
    this.released = cut - keepFrom;
    this.nextScanAt -= keepFrom;
    return out;
  }
}

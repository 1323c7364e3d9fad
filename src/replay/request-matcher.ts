/**
 * Which recorded exchange answers an incoming request, by content.
 *
 * Rules, in order:
 * 1. Only a recorded exchange with the same method and path (the query is ignored: `?beta=true` does not change the
 *    answer) and a response can match.
 * 2. An exact match (the bodies are equal as JSON) wins over a normalised one (equal once the volatile parts listed
 *    in volatile-fields.ts are masked; `[REDACTED:…]` in the record stands for any text). Within a tier the earliest
 *    unserved exchange in recorded order wins.
 * 3. Each recorded exchange answers once: the same request is answered twice only if it was recorded twice (an SDK
 *    retry after a recorded 529 meets the recorded retry). Reads that never change a conversation — GETs (models)
 *    and `count_tokens` — may be answered again when every recorded copy has been used.
 * 4. Anything else has diverged; the message names the recorded turn it is closest to and the first JSON path
 *    where it differs.
 */
import type { ExchangeView } from '../recorder/exchange-reader.js';
import { firstDifference, type StringEquality } from './first-difference.js';
import { canonicalJson } from '../canonical-json.js';
import { normaliseBody } from './volatile-fields.js';

/** A request as the replay server received it; `body` parsed the way the recorder reads bodies back. */
export interface IncomingRequest {
  readonly method: string;
  readonly path: string;
  readonly body: unknown;
}

export type MatchResult =
  | {
      readonly kind: 'recorded';
      readonly exchange: ExchangeView;
      /** 1-based position in the session, as `vigil sessions show` numbers it. */
      readonly turn: number;
      readonly how: 'exact' | 'normalised';
    }
  | { readonly kind: 'diverged'; readonly message: string };

interface Entry {
  readonly exchange: ExchangeView;
  readonly turn: number;
  readonly route: string;
  readonly exact: string;
  readonly normalised: unknown;
  readonly normalisedJson: string;
  /** The record holds masked text, so a normalised match must compare string by string. */
  readonly masked: boolean;
  /** Canonical JSON of each normalised message, to find the recorded turn a diverged request is closest to. */
  readonly messages: readonly string[];
  readonly reusable: boolean;
  served: number;
}

const MASK = /\[REDACTED:[^\]]*\]/g;

/** Matches requests to one session's recorded exchanges; keeps which have been served. */
export class RequestMatcher {
  private readonly entries: Entry[] = [];
  private readonly total: number;
  private servedCount = 0;
  private readonly patterns = new Map<string, RegExp>();
  /** `[REDACTED:…]` in a recorded string matches any non-empty text in its place. */
  private readonly equal: StringEquality = (recorded, got) => {
    if (recorded === got) return true;
    if (!recorded.includes('[REDACTED:')) return false;
    let re = this.patterns.get(recorded);
    if (!re) {
      const parts = recorded.split(MASK).map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
      re = new RegExp(`^${parts.join('[\\s\\S]+?')}$`);
      this.patterns.set(recorded, re);
    }
    return re.test(got);
  };

  /** `exchanges` in recorded order (as `readSession` returns them). Exchanges still in progress cannot answer. */
  constructor(exchanges: readonly ExchangeView[]) {
    this.total = exchanges.length;
    exchanges.forEach((exchange, i) => {
      if (exchange.outcome === 'in_progress') return;
      const { method, path, body } = exchange.request;
      const normalised = normaliseBody(body);
      const normalisedJson = canonicalJson(normalised);
      this.entries.push({
        exchange,
        turn: i + 1,
        route: `${method.toUpperCase()} ${path}`,
        exact: canonicalJson(body),
        normalised,
        normalisedJson,
        masked: normalisedJson.includes('[REDACTED:'),
        messages: messagesOf(normalised).map(canonicalJson),
        reusable: method.toUpperCase() === 'GET' || path.endsWith('/count_tokens'),
        served: 0,
      });
    });
  }

  /** How many requests have been answered from the recording. */
  get served(): number {
    return this.servedCount;
  }

  /** Whether the session recorded any exchange on this method and path. */
  recorded(method: string, path: string): boolean {
    const route = `${method.toUpperCase()} ${path}`;
    return this.entries.some((e) => e.route === route);
  }

  /** Find the recorded exchange that answers `req` and mark it served, or explain how `req` diverged. */
  match(req: IncomingRequest): MatchResult {
    const route = `${req.method.toUpperCase()} ${req.path}`;
    const same = this.entries.filter((e) => e.route === route);
    const exact = canonicalJson(req.body);
    const normalised = normaliseBody(req.body);
    const normalisedJson = canonicalJson(normalised);
    const isNormalisedMatch = (e: Entry): boolean =>
      e.normalisedJson === normalisedJson ||
      (e.masked && firstDifference(e.normalised, normalised, this.equal) === null);

    const unserved = same.filter((e) => e.served === 0);
    const again = same.filter((e) => e.reusable);
    for (const pool of [unserved, again]) {
      const byExact = pool.find((e) => e.exact === exact);
      if (byExact) return this.serve(byExact, 'exact');
      const byNormalised = pool.find(isNormalisedMatch);
      if (byNormalised) return this.serve(byNormalised, 'normalised');
    }
    const repeated = same.find((e) => e.exact === exact) ?? same.find(isNormalisedMatch);
    if (repeated) {
      const copies = same.filter(
        (e) => e.exact === repeated.exact || e.normalisedJson === repeated.normalisedJson,
      ).length;
      return {
        kind: 'diverged',
        message:
          `replay diverged: this request repeats turn ${repeated.turn} of ${this.total} (${repeated.exchange.id}), which was ` +
          `recorded ${copies === 1 ? 'once' : `${copies} times`} and has been answered ${copies === 1 ? '' : 'as often '}already`,
      };
    }
    return { kind: 'diverged', message: this.divergence(route, same, unserved, normalised) };
  }

  private serve(entry: Entry, how: 'exact' | 'normalised'): MatchResult {
    entry.served++;
    this.servedCount++;
    return { kind: 'recorded', exchange: entry.exchange, turn: entry.turn, how };
  }

  private divergence(route: string, same: readonly Entry[], unserved: readonly Entry[], normalised: unknown): string {
    if (same.length === 0) {
      const routes = new Map<string, number>();
      for (const e of this.entries) routes.set(e.route, (routes.get(e.route) ?? 0) + 1);
      const held = [...routes].map(([r, n]) => `${r} ×${n}`).join(', ') || 'nothing';
      return `replay diverged: the recording holds no ${route} request (it holds ${held})`;
    }
    const pool = unserved.length > 0 ? unserved : same;
    const nearest = closest(pool, messagesOf(normalised).map(canonicalJson));
    const diff = firstDifference(nearest.normalised, normalised, this.equal);
    const where = diff
      ? `the request's ${diff.path || 'body'} differs from the recording: ${diff.detail}`
      : 'the request differs from the recording';
    if (unserved.length === 0) {
      return (
        `replay diverged after turn ${Math.max(...same.map((e) => e.turn))} of ${this.total}: all ${same.length} recorded ` +
        `${route} requests were already answered, and this one is new; nearest is turn ${nearest.turn} (${nearest.exchange.id}), where ${where}`
      );
    }
    return `replay diverged at turn ${nearest.turn} of ${this.total} (${nearest.exchange.id}): ${where}`;
  }
}

/**
 * The entry sharing the longest run of leading messages with the request; among equals, the one closest in length
 * (the same turn of the conversation), then the earliest.
 */
function closest(pool: readonly Entry[], messages: readonly string[]): Entry {
  let best = pool[0]!;
  let bestShared = -1;
  let bestGap = Infinity;
  for (const e of pool) {
    let shared = 0;
    while (shared < e.messages.length && shared < messages.length && e.messages[shared] === messages[shared]) shared++;
    const gap = Math.abs(e.messages.length - messages.length);
    if (shared > bestShared || (shared === bestShared && gap < bestGap)) {
      best = e;
      bestShared = shared;
      bestGap = gap;
    }
  }
  return best;
}

function messagesOf(body: unknown): unknown[] {
  const messages = (body as { messages?: unknown } | null)?.messages;
  return Array.isArray(messages) ? messages : [];
}

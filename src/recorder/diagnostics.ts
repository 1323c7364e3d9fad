/**
 * What the data path announces, on `node:diagnostics_channel`: free when nobody subscribes (undici's pattern), and
 * the only coupling between the hot path and metrics.
 */
import diagnostics from 'node:diagnostics_channel';

export interface ExchangeCompleted {
  readonly connection: string;
  /** The caller's subject (OIDC `sub`, the gateway key's name, or `anonymous`), as usage is grouped by caller. */
  readonly caller: string;
  /** The caller's OIDC groups (none for gateway keys and anonymous callers), as usage is grouped by group. */
  readonly callerGroups: readonly string[];
  readonly outcome: string;
  /** The status the client received: upstream's, or the gateway's own when it refused or failed the call; null when
   * the client received none (it left, or the gateway shut down first). */
  readonly status: number | null;
  readonly model: string | null;
  readonly durationMs: number;
  readonly firstByteMs: number | null;
  /**
   * How long recording held the request before it was forwarded: from the start of recording (the body read) until
   * its record was durable — masking, splitting, hashing and the commit. Null when nothing was written first (`record:
   * off`, or `best_effort` after the write failed).
   */
  readonly recordedMs: number | null;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly cacheReadTokens: number;
  readonly cacheCreationTokens: number;
  /** Of `cacheCreationTokens`, those written for an hour (billed higher). */
  readonly cacheCreation1hTokens: number;
  /** Why the answer stopped (`refusal`: the model declined it); null when unknown. */
  readonly stopReason: string | null;
}

export interface AccessDenied {
  readonly connection: string;
  readonly status: number;
}

export const exchangeCompletedChannel = diagnostics.channel('vigil:exchange.completed');
export const accessDeniedChannel = diagnostics.channel('vigil:access.denied');

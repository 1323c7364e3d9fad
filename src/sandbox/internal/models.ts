/**
 * The Models API: a fixed catalogue of the Claude models the API serves, newest first as the real API lists them.
 * https://docs.anthropic.com/en/api/models-list
 */
import type { Exchange } from './exchange.js';
import { sendError, sendJson } from './exchange.js';

interface ModelInfo {
  type: 'model';
  id: string;
  display_name: string;
  created_at: string;
  max_input_tokens: number;
  max_tokens: number;
}

const model = (
  id: string,
  display_name: string,
  created_at: string,
  max_input_tokens: number,
  max_tokens: number,
): ModelInfo => ({ type: 'model', id, display_name, created_at, max_input_tokens, max_tokens });

/**
 * The models the API serves on 2026-12-07, as Anthropic's model pages give them: the current lineup (Fable 5.1,
 * Opus 5.5, Sonnet 5.5, Haiku 4.5) and the legacy models still available. Retired models are not listed and not
 * found, as on the real API (Claude Sonnet 4.5 reached its end of life on 2026-11-30). The 5.5 models' release days are
 * as third-party catalogues reported them; the pages give none.
 */
const MODELS: readonly ModelInfo[] = [
  model('claude-sonnet-5-5', 'Claude Sonnet 5.5', '2026-09-29T00:00:00Z', 1_000_000, 128_000),
  model('claude-opus-5-5', 'Claude Opus 5.5', '2026-09-22T00:00:00Z', 1_000_000, 128_000),
  model('claude-fable-5-1', 'Claude Fable 5.1', '2026-09-01T00:00:00Z', 1_000_000, 128_000),
  model('claude-opus-5', 'Claude Opus 5', '2026-07-24T00:00:00Z', 1_000_000, 128_000),
  model('claude-sonnet-5', 'Claude Sonnet 5', '2026-06-30T00:00:00Z', 1_000_000, 128_000),
  model('claude-fable-5', 'Claude Fable 5', '2026-06-09T00:00:00Z', 1_000_000, 128_000),
  model('claude-sonnet-4-6', 'Claude Sonnet 4.6', '2026-02-17T00:00:00Z', 1_000_000, 128_000),
  model('claude-opus-4-6', 'Claude Opus 4.6', '2026-02-05T00:00:00Z', 1_000_000, 128_000),
  model('claude-opus-4-5-20251101', 'Claude Opus 4.5', '2025-11-24T00:00:00Z', 200_000, 64_000),
  model('claude-haiku-4-5-20251001', 'Claude Haiku 4.5', '2025-10-15T00:00:00Z', 200_000, 64_000),
];

/** The real API also resolves aliases such as `claude-haiku-4-5` to the dated id. */
function findModel(idOrAlias: string): ModelInfo | undefined {
  return MODELS.find((m) => m.id === idOrAlias || m.id.replace(/-\d{8}$/, '') === idOrAlias);
}

/** `GET /v1/models` with `limit`, `after_id` and `before_id` paging. */
export function listModels(ex: Exchange): void {
  const q = new URLSearchParams(ex.query);
  const limit = Math.min(Math.max(Number(q.get('limit') ?? 20) || 20, 1), 1000);
  const after = q.get('after_id');
  const before = q.get('before_id');
  let start = 0;
  let end = MODELS.length;
  if (after !== null) start = MODELS.findIndex((m) => m.id === after) + 1;
  if (before !== null)
    end = Math.max(
      0,
      MODELS.findIndex((m) => m.id === before),
    );
  // Paging backwards takes the page just before `before_id`.
  const page = before !== null ? MODELS.slice(Math.max(start, end - limit), end) : MODELS.slice(start, start + limit);
  const hasMore = before !== null ? end - limit > start : start + limit < end;
  sendJson(ex, 200, {
    data: page,
    has_more: hasMore,
    first_id: page[0]?.id ?? null,
    last_id: page.at(-1)?.id ?? null,
  });
}

/** `GET /v1/models/:id`. */
export function getModel(ex: Exchange, id: string): void {
  const found = findModel(id);
  if (found === undefined) sendError(ex, 404, 'not_found_error', `model: ${id}`);
  else sendJson(ex, 200, found);
}

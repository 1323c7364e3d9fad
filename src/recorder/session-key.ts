/**
 * Which session an exchange belongs to: the caller's explicit `x-vigil-session`, else Claude Code's own session id,
 * else the session part of the body's `metadata.user_id`, else a session of its own.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { ExchangeRequestData } from '../store/record-types.js';

export type SessionSource = ExchangeRequestData['session']['source'];

const MAX_ID = 200;
// Printable ASCII without spaces: ids end up in URLs, file names and log lines. Not `.` or `..`, which a URL path
// resolves away (`/sessions/..` is `/`): such a session could not be opened, exported or verified by id.
const SAFE_ID = /^(?!\.\.?$)[\x21-\x7e]{1,200}$/;

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  const s = Array.isArray(v) ? v[0] : v;
  return s !== undefined && SAFE_ID.test(s) ? s : undefined;
}

/**
 * Claude Code sends `metadata.user_id` as `user_<hash>_account_<uuid>_session_<uuid>`; newer versions send a JSON
 * string with a `session_id` member. Either way, the session id is what we want.
 */
export function sessionFromUserId(userId: unknown): string | undefined {
  if (typeof userId !== 'string' || userId.length > 4096) return undefined;
  const i = userId.lastIndexOf('_session_');
  if (i >= 0) {
    const id = userId.slice(i + '_session_'.length);
    return SAFE_ID.test(id) ? id : undefined;
  }
  if (userId.startsWith('{')) {
    try {
      const parsed = JSON.parse(userId) as { session_id?: unknown };
      if (typeof parsed.session_id === 'string' && SAFE_ID.test(parsed.session_id)) return parsed.session_id;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

export function resolveSession(
  headers: IncomingHttpHeaders,
  body: unknown,
  fallbackId: string,
): { id: string; source: SessionSource } {
  const explicit = headerValue(headers, 'x-vigil-session');
  if (explicit) return { id: explicit, source: 'header' };
  const claudeCode = headerValue(headers, 'x-claude-code-session-id');
  if (claudeCode) return { id: claudeCode, source: 'claude-code' };
  const metadata = (body as { metadata?: { user_id?: unknown } } | null)?.metadata;
  const fromMetadata = metadata && typeof metadata === 'object' ? sessionFromUserId(metadata.user_id) : undefined;
  if (fromMetadata) return { id: fromMetadata, source: 'metadata' };
  return { id: fallbackId.slice(0, MAX_ID), source: 'generated' };
}

export function resolveAgent(headers: IncomingHttpHeaders): { id?: string; parentId?: string } | undefined {
  const id = headerValue(headers, 'x-claude-code-agent-id');
  const parentId = headerValue(headers, 'x-claude-code-parent-agent-id');
  if (id === undefined && parentId === undefined) return undefined;
  return { ...(id !== undefined ? { id } : {}), ...(parentId !== undefined ? { parentId } : {}) };
}

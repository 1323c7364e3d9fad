/**
 * What one exchange added to a conversation, for transcripts: the turn's new input (the request's last message) and
 * the answer's content blocks. Shared by the CLI's plain transcript and the admin API's Markdown export.
 */
import type { ExchangeView } from './exchange-reader.js';

export interface ContentBlock {
  type?: string;
  text?: string;
  thinking?: string;
  name?: string;
  input?: unknown;
  content?: unknown;
  tool_use_id?: string;
}

/** Message content as blocks (a plain string is one text block). */
export function contentBlocks(content: unknown): ContentBlock[] {
  if (typeof content === 'string') return [{ type: 'text', text: content }];
  return Array.isArray(content) ? (content as ContentBlock[]) : [];
}

export interface ExchangeTurn {
  readonly input: { readonly role: string; readonly blocks: ContentBlock[] } | null;
  /** The answer's blocks; null when there is no message (an error, or metadata-only recording). */
  readonly output: ContentBlock[] | null;
}

export function exchangeTurn(x: ExchangeView): ExchangeTurn {
  const body = x.request.body as { messages?: Array<{ role?: string; content?: unknown }> } | null;
  const last = body?.messages?.at(-1);
  const message = (x.response.message ?? x.response.body) as { content?: unknown; type?: string } | null;
  return {
    input: last ? { role: last.role ?? 'user', blocks: contentBlocks(last.content) } : null,
    output:
      message && message.type !== 'error' && message.content !== undefined ? contentBlocks(message.content) : null,
  };
}

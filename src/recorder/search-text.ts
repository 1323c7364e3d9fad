/**
 * What of an exchange goes into the full-text index: the turn's new input (the messages after the request's last
 * assistant message: the user's prompt, with the environment Claude Code sends after it, or the tool results sent back) and the response (text, thinking, tool calls). The resent history is left
 * out: it was indexed with the turn that added it. Input is already masked.
 */

const MAX_CHARS = 64 * 1024;

function blockText(block: unknown, out: string[]): void {
  if (typeof block === 'string') {
    out.push(block);
    return;
  }
  if (block === null || typeof block !== 'object') return;
  const b = block as Record<string, unknown>;
  if (typeof b.text === 'string') out.push(b.text);
  if (typeof b.thinking === 'string') out.push(b.thinking);
  if (b.type === 'tool_use' || b.type === 'server_tool_use') {
    if (typeof b.name === 'string') out.push(b.name);
    if (b.input !== undefined) out.push(JSON.stringify(b.input));
  }
  if (b.type === 'tool_result') {
    if (Array.isArray(b.content)) for (const c of b.content) blockText(c, out);
    else blockText(b.content, out);
  }
}

function contentText(content: unknown, out: string[]): void {
  if (Array.isArray(content)) for (const c of content) blockText(c, out);
  else blockText(content, out);
}

/** `turnMessages`: the turn's new messages (`newMessages` of the request's), as stored. */
export function searchTextOf(turnMessages: readonly unknown[], responseMessage: unknown): string {
  const out: string[] = [];
  for (const m of turnMessages) {
    if (m && typeof m === 'object') contentText((m as { content?: unknown }).content, out);
  }
  const content = (responseMessage as { content?: unknown } | null | undefined)?.content;
  if (content !== undefined) contentText(content, out);
  const text = out.join('\n');
  return text.length > MAX_CHARS ? text.slice(0, MAX_CHARS) : text;
}

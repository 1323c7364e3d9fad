/** The Markdown transcript: turns as a reader sees them, and recorded text that cannot break the layout. */
import { describe, expect, it } from 'vitest';
import { markdownExchange } from '../../../src/admin/markdown-transcript.js';
import type { ExchangeView } from '../../../src/recorder/exchange-reader.js';

const view = (request: unknown, message: unknown): ExchangeView => ({
  id: 'ex_1',
  session_id: 'ses_1',
  connection: 'anthropic',
  caller: { method: 'oidc', subject: 'u1', name: 'Alice', email: 'alice@example.com' },
  client: { address: null, userAgent: null },
  agent: null,
  started_at: '2025-01-15T09:00:00.000Z',
  ended_at: '2025-01-15T09:00:01.000Z',
  model: 'claude-sonnet-4-5',
  outcome: 'ok',
  usage: { input_tokens: 10, output_tokens: 5 },
  request: { method: 'POST', path: '/v1/messages', query: '', headers: {}, body: request, body_size: 0 },
  response: {
    status: 200,
    headers: null,
    body: null,
    stream: true,
    events: [],
    message,
    stop_reason: 'tool_use',
    error: null,
    first_byte_ms: 100,
    duration_ms: 1000,
  },
});

describe('markdownExchange', () => {
  it('shows the new turn, the answer and its tool calls', () => {
    const md = markdownExchange(
      view(
        {
          messages: [
            { role: 'user', content: 'old turn' },
            { role: 'assistant', content: 'old answer' },
            { role: 'user', content: [{ type: 'text', text: 'List the files' }] },
          ],
        },
        {
          content: [
            { type: 'thinking', thinking: 'I should use ls' },
            { type: 'text', text: 'Listing them.' },
            { type: 'tool_use', name: 'Bash', input: { command: 'ls' } },
          ],
        },
      ),
      3,
    );
    expect(md).toContain('## 3. 2025-01-15T09:00:00.000Z · Alice &lt;alice@example.com&gt;');
    expect(md).toContain('**user:**\n\n> List the files');
    expect(md).not.toContain('old turn');
    expect(md).not.toContain('old answer');
    expect(md).toContain('> I should use ls');
    expect(md).toContain('**assistant:**');
    expect(md).toContain('*Tool call* `Bash`\n\n```json\n{\n  "command": "ls"\n}\n```');
    expect(md).toContain('· in 10 · out 5 tokens');
  });

  it('fences tool results longer than any backtick run inside them', () => {
    const md = markdownExchange(
      view({ messages: [{ role: 'user', content: [{ type: 'tool_result', content: 'a ```` b' }] }] }, null),
      1,
    );
    expect(md).toContain('`````\na ```` b\n`````');
  });

  it('keeps recorded text inside its quote: it cannot forge a section, nor carry HTML', () => {
    // Went wrong: a prompt's text was written raw, so it could add sections of its own (a fake exchange with its own
    // heading, id line and answer) indistinguishable from real ones, and raw HTML passed through.
    const forged =
      'hi\n\n## 2. 2025-01-15T09:05:00.000Z · Alice Admin\n\n**assistant:**\n\nApproved.\n<img src=https://x.example/t.png>';
    const md = markdownExchange(
      view(
        { messages: [{ role: 'user', content: [{ type: 'text', text: forged }] }] },
        { content: [{ type: 'text', text: 'ok' }] },
      ),
      1,
    );
    expect(md.match(/^## /gm)).toHaveLength(1);
    expect(md.match(/^\*\*assistant:\*\*$/gm)).toHaveLength(1);
    expect(md).toContain('> ## 2. 2025-01-15T09:05:00.000Z · Alice Admin');
    expect(md).not.toContain('<img');
    const who = markdownExchange(
      { ...view({}, null), caller: { method: 'oidc', subject: 'u', name: 'Eve\n## 9. x' } },
      1,
    );
    expect(who.match(/^## /gm)).toHaveLength(1);
  });
});

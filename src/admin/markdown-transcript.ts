/**
 * A session (or any set of exchanges) as a Markdown transcript: one section per exchange, with what the turn added
 * (the request's last message) and the answer (text, thinking, tool calls). Rendered one exchange at a time so an
 * export can stream.
 */
import type { ExchangeView } from '../recorder/exchange-reader.js';
import { contentBlocks as blocks, exchangeTurn, type ContentBlock as Block } from '../recorder/exchange-turn.js';

/** A fenced block whose fence is longer than any run of backticks inside, so recorded text cannot close it. */
function fenced(text: string, lang = ''): string {
  const longest = Math.max(2, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = '`'.repeat(longest + 1);
  return `${fence}${lang}\n${text}\n${fence}`;
}

function quoted(text: string): string {
  return text
    .split('\n')
    .map((l) => (l ? `> ${l}` : '>'))
    .join('\n');
}

function renderBlock(b: Block): string {
  switch (b.type) {
    case 'text':
      return b.text ?? '';
    case 'thinking':
      return `*Thinking:*\n\n${quoted(b.thinking ?? '')}`;
    case 'redacted_thinking':
      return '*(redacted thinking)*';
    case 'tool_use':
    case 'server_tool_use':
      return `*Tool call* \`${b.name ?? '?'}\`\n\n${fenced(JSON.stringify(b.input ?? {}, null, 2), 'json')}`;
    case 'tool_result': {
      const text = blocks(b.content)
        .map((c) => c.text ?? (c.type ? `(${c.type})` : ''))
        .join('\n');
      return `*Tool result*\n\n${fenced(text)}`;
    }
    default:
      return `*(${b.type ?? 'block'})*`;
  }
}

/** The transcript's title line. */
export function markdownTitle(title: string): string {
  return `# ${title}\n\n`;
}

/** One exchange as a Markdown section; `n` numbers it within the transcript, from 1. */
export function markdownExchange(x: ExchangeView, n: number): string {
  const out: string[] = [];
  const who = [x.caller.name ?? x.caller.subject, x.caller.email && `<${x.caller.email}>`].filter(Boolean).join(' ');
  out.push(`## ${n}. ${x.started_at} · ${who}`);
  const usage = x.usage ? ` · ${x.usage.input_tokens ?? 0} in / ${x.usage.output_tokens ?? 0} out tokens` : '';
  const duration = x.response.duration_ms !== null ? ` · ${x.response.duration_ms} ms` : '';
  out.push(
    `\`${x.id}\` · session \`${x.session_id}\` · ${x.connection} · ${x.request.method} ${x.request.path}` +
      `${x.model ? ` · ${x.model}` : ''} → ${x.response.status ?? '–'} ${x.outcome}${usage}${duration}`,
  );
  const turn = exchangeTurn(x);
  if (turn.input) out.push(`**${turn.input.role}:**`, turn.input.blocks.map(renderBlock).join('\n\n'));
  if (turn.output) out.push('**assistant:**', turn.output.map(renderBlock).join('\n\n'));
  if (x.response.error) out.push(`**Error** \`${x.response.error.type}\`: ${x.response.error.message}`);
  return `${out.join('\n\n')}\n\n`;
}

/**
 * A session (or any set of exchanges) as a Markdown transcript: one section per exchange, with what the turn added
 * (the messages after the request's last assistant message) and the answer (text, thinking, tool calls). Rendered one
 * exchange at a time so an export can stream.
 */
import type { ExchangeView } from '../recorder/exchange-reader.js';
import {
  contentBlocks as blocks,
  exchangeTurn,
  isRefusal,
  usageLine,
  type ContentBlock as Block,
} from '../recorder/exchange-turn.js';

/** A fenced block whose fence is longer than any run of backticks inside, so recorded text cannot close it. */
function fenced(text: string, lang = ''): string {
  const longest = Math.max(2, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = '`'.repeat(longest + 1);
  return `${fence}${lang}\n${text}\n${fence}`;
}

/** Recorded text keeps its Markdown, but no raw HTML: a transcript must not load or run what a prompt carried. */
function noHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * Recorded text as a block quote, every line of it: what a prompt or an answer says stays inside the quote, so a
 * line like `## 2. … · Alice` cannot pass for a section of the transcript.
 */
function quoted(text: string): string {
  return noHtml(text)
    .split(/\r\n|\r|\n/)
    .map((l) => (l ? `> ${l}` : '>'))
    .join('\n');
}

/** Recorded text on one line (headings, error messages): line breaks become spaces. */
function oneLine(text: string): string {
  return noHtml(text.replace(/\s*[\r\n]+\s*/g, ' '));
}

/** Inline code whose delimiter is longer than any backtick run inside, on one line. */
function code(text: string): string {
  const t = text.replace(/[\r\n]+/g, ' ');
  const tick = '`'.repeat(Math.max(0, ...[...t.matchAll(/`+/g)].map((m) => m[0].length)) + 1);
  const pad = t.startsWith('`') || t.endsWith('`') ? ' ' : '';
  return `${tick}${pad}${t}${pad}${tick}`;
}

function renderBlock(b: Block): string {
  switch (b.type) {
    case 'text':
      return quoted(b.text ?? '');
    case 'thinking':
      return `*Thinking:*\n\n${quoted(b.thinking ?? '')}`;
    case 'redacted_thinking':
      return '*(redacted thinking)*';
    case 'tool_use':
    case 'server_tool_use':
      return `*Tool call* ${code(b.name ?? '?')}\n\n${fenced(JSON.stringify(b.input ?? {}, null, 2), 'json')}`;
    case 'tool_result': {
      const text = blocks(b.content)
        .map((c) => c.text ?? (c.type ? `(${c.type})` : ''))
        .join('\n');
      return `*Tool result*\n\n${fenced(text)}`;
    }
    default:
      return `*(${oneLine(b.type ?? 'block')})*`;
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
  out.push(`## ${n}. ${x.started_at} · ${oneLine(who)}`);
  const usage = x.usage ? ` · ${usageLine(x.usage)} tokens` : '';
  const duration = x.response.duration_ms !== null ? ` · ${x.response.duration_ms} ms` : '';
  out.push(
    `\`${x.id}\` · session \`${x.session_id}\` · ${x.connection} · ${x.request.method} ${x.request.path}` +
      `${x.model ? ` · ${x.model}` : ''} → ${x.response.status ?? '–'} ${x.outcome}${isRefusal(x.response.stop_reason) ? ' · refused' : ''}${usage}${duration}`,
  );
  const turn = exchangeTurn(x);
  for (const m of turn.input) out.push(`**${oneLine(m.role)}:**`, m.blocks.map(renderBlock).join('\n\n'));
  if (turn.output) out.push('**assistant:**', turn.output.map(renderBlock).join('\n\n'));
  if (x.response.error) out.push(`**Error** ${code(x.response.error.type)}: ${oneLine(x.response.error.message)}`);
  return `${out.join('\n\n')}\n\n`;
}

/** The human form of a session: a readable transcript, one block per exchange, showing what each turn added. */
import type { ExchangeView } from '../recorder/exchange-reader.js';
import {
  contentBlocks as blocks,
  exchangeTurn,
  isRefusal,
  usageLine,
  type ContentBlock as Block,
} from '../recorder/exchange-turn.js';

function clip(s: string, max = 2000): string {
  return s.length > max ? `${s.slice(0, max)}… (${s.length - max} more characters)` : s;
}

function renderBlock(b: Block): string {
  switch (b.type) {
    case 'text':
      return clip(b.text ?? '');
    case 'thinking':
      return `(thinking) ${clip(b.thinking ?? '', 500)}`;
    case 'redacted_thinking':
      return '(redacted thinking)';
    case 'tool_use':
    case 'server_tool_use':
      return `→ tool ${b.name ?? '?'} ${clip(JSON.stringify(b.input ?? {}), 500)}`;
    case 'tool_result': {
      const text = blocks(b.content)
        .map((c) => c.text ?? '')
        .join(' ');
      return `← result ${clip(text, 500)}`;
    }
    default:
      return `(${b.type ?? 'block'})`;
  }
}

function indent(s: string): string {
  return s
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}

export function renderTranscript(exchanges: readonly ExchangeView[]): string {
  return exchanges.map((x, i) => renderExchange(x, i)).join('\n');
}

/** One exchange of a transcript, the `i`-th (from 0): blocks of a transcript are joined with a newline. */
export function renderExchange(x: ExchangeView, i: number): string {
  const out: string[] = [];
  const usage = x.usage ? ` · ${usageLine(x.usage)}` : '';
  const dur = x.response.duration_ms !== null ? ` · ${x.response.duration_ms} ms` : '';
  out.push(
    `── #${i + 1} ${x.id} · ${x.started_at} · ${x.caller.subject} · ${x.request.method} ${x.request.path}` +
      `${x.model ? ` · ${x.model}` : ''} → ${x.response.status ?? '-'} ${x.outcome}${isRefusal(x.response.stop_reason) ? ' · refused' : ''}${usage}${dur}`,
  );
  const turn = exchangeTurn(x);
  for (const m of turn.input) out.push(`  ${m.role}:`, indent(m.blocks.map(renderBlock).join('\n')));
  if (turn.output) out.push('  assistant:', indent(turn.output.map(renderBlock).join('\n')));
  if (x.response.error) out.push(`  ! ${x.response.error.type}: ${x.response.error.message}`);
  out.push('');
  return out.join('\n');
}

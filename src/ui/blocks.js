// Rendering Messages API content (user turns, assistant messages) as readable, inert DOM.

import { details, h, jsonBlock, text } from './dom.js';
// The server's own rule (src/recorder/exchange-turn.ts, served compiled): the UI and every transcript agree on it.
import { roleOf, turnStart, usageLine } from './exchange-turn.js';

function textOf(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((b) => (b && b.type === 'text' ? text(b.text) : `[${b && b.type ? text(b.type) : 'block'}]`))
      .join('\n');
  }
  return content == null ? '' : JSON.stringify(content, null, 2);
}

/** One content block of a message. */
export function contentBlock(block) {
  if (block == null || typeof block !== 'object') return h('div', { class: 'block text' }, String(block));
  switch (block.type) {
    case 'text':
      return h('div', { class: 'block text' }, block.text);
    case 'tool_use':
    case 'server_tool_use':
    case 'mcp_tool_use':
      return h(
        'div',
        { class: 'block tool-use' },
        h(
          'div',
          { class: 'block-title' },
          'Tool call: ',
          h('code', { class: 'tool-name' }, block.name),
          ` (${text(block.id)})`,
        ),
        jsonBlock(block.input ?? {}),
      );
    case 'tool_result':
      return h(
        'div',
        { class: `block tool-result${block.is_error ? ' is-error' : ''}` },
        h(
          'div',
          { class: 'block-title' },
          block.is_error ? 'Tool result (error) for ' : 'Tool result for ',
          h('code', {}, block.tool_use_id ?? ''),
        ),
        h('div', { class: 'text' }, textOf(block.content)),
      );
    case 'thinking':
      return h(
        'div',
        { class: 'block thinking' },
        details('Thinking', false, h('div', { class: 'text' }, block.thinking)),
      );
    case 'redacted_thinking':
      return h('div', { class: 'block thinking muted' }, '[redacted thinking]');
    case 'image':
    case 'document':
      return h(
        'div',
        { class: 'block muted' },
        `[${block.type}${block.source && block.source.media_type ? `: ${text(block.source.media_type)}` : ''}]`,
      );
    default:
      return h('div', { class: 'block other' }, details(`[${text(block.type) || 'block'}]`, false, jsonBlock(block)));
  }
}

/** A message's content: a string or a list of blocks. */
export function content(value) {
  if (typeof value === 'string') return h('div', { class: 'block text' }, value);
  if (Array.isArray(value)) return value.map(contentBlock);
  return value == null ? h('p', { class: 'muted' }, 'No content.') : jsonBlock(value);
}

/**
 * The turn a request added to the conversation, as the server's `newMessages` has it: every message after its last
 * assistant message (all of them when there is none), in order — a user prompt, tool results, or (Claude Code's first
 * turn) the prompt followed by a message carrying the environment; a prefill the client wrote comes last.
 */
export function lastTurn(requestBody) {
  const messages = requestBody && typeof requestBody === 'object' ? requestBody.messages : undefined;
  if (!Array.isArray(messages) || messages.length === 0) {
    return h('p', { class: 'muted' }, 'This request carries no messages (see the exchange for its body).');
  }
  const first = turnStart(messages.length, (i) => roleOf(messages[i]));
  return messages.slice(first).map((m, i) => turnMessage(m, first + i + 1));
}

/** One message of a turn; `n` is its place in the request's messages, from 1. */
function turnMessage(m, n) {
  // The body is what the client sent, recorded as is: a "message" may be null, a string, a list.
  if (m == null || typeof m !== 'object' || Array.isArray(m)) {
    return h(
      'div',
      { class: 'turn user' },
      h('div', { class: 'role' }, `message ${n}`),
      h('p', { class: 'muted' }, 'Not a message object: '),
      jsonBlock(JSON.stringify(m) ?? String(m)),
    );
  }
  const role = typeof m.role === 'string' ? m.role : 'user';
  return h(
    'div',
    { class: `turn ${role === 'assistant' ? 'assistant' : 'user'}` },
    h('div', { class: 'role' }, `${role} (message ${n})`),
    content(m.content),
  );
}

/** A recorded error (upstream's `type` and `message`, whatever their JSON) as a note. */
export function errorNote(error) {
  return h('div', { class: 'error', role: 'note' }, `${text(error.type)}: ${text(error.message)}`);
}

/** The assistant's answer of an exchange: the assembled message, or the error when there is none. */
export function answer(exchange) {
  const { response } = exchange;
  const parts = [];
  if (response.message && typeof response.message === 'object') {
    parts.push(h('div', { class: 'role' }, 'assistant'), content(response.message.content));
  } else if (exchange.outcome === 'in_progress') {
    parts.push(h('p', { class: 'muted' }, 'No answer yet: the exchange is in progress.'));
  } else if (!response.error) {
    parts.push(h('p', { class: 'muted' }, 'No assembled message was recorded.'));
  }
  if (response.error) {
    parts.push(errorNote(response.error));
  }
  return h('div', { class: 'turn assistant' }, parts);
}

/** Token usage as one line, by the server's rule (exchange-turn.ts), as every transcript says it. */
export function usageText(usage) {
  if (!usage || typeof usage !== 'object') return '—';
  return usageLine(usage);
}

/** Timing as one line: time to first byte and total duration. */
export function timingText(response) {
  const ms = (v) => (v == null ? '—' : `${Math.round(v)} ms`);
  return `first byte ${ms(response.first_byte_ms)} · total ${ms(response.duration_ms)}`;
}

/** Masking findings ({type: count}) as one line, or null when none. */
export function maskingText(masking) {
  const entries = Object.entries(masking ?? {});
  if (entries.length === 0) return null;
  return entries.map(([type, n]) => `${type} ×${n}`).join(', ');
}

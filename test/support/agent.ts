/** Runs Claude Code (via the Claude Agent SDK) against a base URL, offline, letting it use Bash. */
import { query, type SDKMessage } from '@anthropic-ai/claude-agent-sdk';
import { CLIENT_KEY } from './gateway-harness.js';

/** Run one agent prompt through `baseUrl` and collect its messages. */
export async function runAgent(
  baseUrl: string,
  prompt: string,
  cwd: string,
  token = CLIENT_KEY,
  as: 'ANTHROPIC_API_KEY' | 'ANTHROPIC_AUTH_TOKEN' = 'ANTHROPIC_API_KEY',
  /** More of Claude Code's environment (NODE_EXTRA_CA_CERTS, say). */
  env: Record<string, string> = {},
): Promise<SDKMessage[]> {
  const messages: SDKMessage[] = [];
  for await (const m of query({
    prompt,
    options: {
      cwd,
      model: 'claude-haiku-4-5',
      allowedTools: ['Bash'],
      permissionMode: 'dontAsk',
      maxTurns: 4,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: cwd,
        ANTHROPIC_BASE_URL: baseUrl,
        [as]: token,
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
        DISABLE_AUTOUPDATER: '1',
        ...env,
      },
    },
  })) {
    messages.push(m);
  }
  return messages;
}

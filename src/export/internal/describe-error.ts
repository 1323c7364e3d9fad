/**
 * A one-line reason for a failed delivery, for the operator: undici's errors carry a code (`UND_ERR_CONNECT_TIMEOUT`),
 * Node's a syscall code (`ECONNREFUSED`), an aborted attempt a TimeoutError.
 */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (err.name === 'TimeoutError') return 'timed out';
  const code = (err as { code?: unknown }).code;
  const cause = err.cause instanceof Error && err.cause.message !== err.message ? ` (${err.cause.message})` : '';
  return `${typeof code === 'string' && !err.message.includes(code) ? `${code}: ` : ''}${err.message}${cause}`;
}

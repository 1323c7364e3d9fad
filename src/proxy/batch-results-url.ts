/**
 * Message Batches answer with an absolute `results_url` on the upstream's host. A client that follows it would go
 * around the gateway — unrecorded, and with its own token, which upstream refuses. The gateway rewrites it to its own
 * address for the same connection, so the results come back through it like everything else.
 */
export function isBatchPath(path: string): boolean {
  return path.startsWith('/v1/messages/batches');
}

/**
 * Replace `upstreamBase` with `gatewayBase` at the start of every `results_url` in a batch or batch-list JSON body.
 * Returns the body unchanged when there is nothing to rewrite.
 */
export function rewriteResultsUrls(body: Buffer, upstreamBase: string, gatewayBase: string): Buffer {
  const needle = JSON.stringify(upstreamBase).slice(1, -1);
  const text = body.toString('utf8');
  if (!text.includes('"results_url"') || !text.includes(needle)) return body;
  const replacement = JSON.stringify(gatewayBase).slice(1, -1);
  return Buffer.from(
    text
      .replaceAll(`"results_url":"${needle}`, `"results_url":"${replacement}`)
      .replaceAll(`"results_url": "${needle}`, `"results_url": "${replacement}`),
  );
}

/** The gateway's base URL for a connection, as the client reached it. */
export function gatewayBaseUrl(
  publicUrl: string | undefined,
  host: string | undefined,
  connectionPrefix: string,
  scheme: 'http' | 'https' = 'http',
): string {
  const base = publicUrl ?? `${scheme}://${host ?? 'localhost'}`;
  return base.replace(/\/+$/, '') + connectionPrefix;
}

/** How every config problem names its key, whether found by the schema or when a secret is read at start-up. */

/** `connections[1].upstream`, naming the connection when it has a name: `connections[1] (prod).upstream`. */
export function formatPath(p: readonly PropertyKey[], input: unknown): string {
  let out = '';
  let node: unknown = input;
  for (const key of p) {
    if (typeof key === 'number') {
      out += `[${key}]`;
      node = Array.isArray(node) ? node[key] : undefined;
      const name = (node as { name?: unknown } | undefined)?.name;
      if (typeof name === 'string') out += ` (${name})`;
    } else {
      out += out ? `.${String(key)}` : String(key);
      node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[String(key)] : undefined;
    }
  }
  return out;
}

/**
 * How a PostgreSQL store connects: its URL read as pg reads it, plus the store's own startup options.
 *
 * pg lets every key of a connection URL replace the one it is given beside it, `options` included. A URL carrying its
 * own startup options (`?options=-c statement_timeout=5000`, a common way to set them) therefore dropped the store's
 * `-c search_path=…`: its statements ran in the login role's default schema, and `open()` failed with a misleading
 * migration error — or, in an empty database, would have created the store in `public`. Here the URL's options are
 * kept and the store's come after them, so that for a setting both name (search_path, jit) the store's wins; the
 * store's defaults (random_page_cost) come before them, so that the URL's win.
 */
import type pg from 'pg';
import { parse } from 'pg-connection-string';

/**
 * @param storeOptions - startup options the store needs, after the URL's: they win.
 * @param defaults - startup options the store prefers, before the URL's: the URL may set them otherwise.
 */
export function storeConnectionConfig(url: string, storeOptions: string, defaults = ''): pg.ClientConfig {
  // The object pg itself builds from `connectionString` (parse, then merged as is: a port stays a string, which pg
  // reads with parseInt), so every other key means what it would have meant there.
  const fromUrl = parse(url) as unknown as pg.ClientConfig & { options?: string };
  // For a setting named twice, PostgreSQL keeps the last.
  return { ...fromUrl, options: [defaults, fromUrl.options, storeOptions].filter(Boolean).join(' ') };
}

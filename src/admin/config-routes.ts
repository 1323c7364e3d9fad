/**
 * The config a gateway runs, through the admin API (admins): which one it is (its SHA-256, as `vigil config check`
 * prints it), whether the last reload was applied, the reloads on the ledger — who asked, when, what changed — and a
 * reload on request, as SIGHUP does.
 */
import type { ConfigReloadedData } from '../config/config-changes.js';
import { ConfigError, VigilError } from '../errors.js';
import type { AuditStore } from '../store/audit-store.js';
import { requireRole, sendJson, type AdminRoute } from './admin-routes.js';

/** How many reloads `GET /config` lists, newest first. */
export const CONFIG_HISTORY = 50;
/** Records read per page while looking for the newest reloads (they are rare: a few pages at most). */
const PAGE = 500;

export interface ConfigReloadEntry extends ConfigReloadedData {
  /** When it was recorded (epoch ms), just before it was applied. */
  readonly at: number;
}

/** The newest `max` `config.reloaded` records, newest first. */
export async function recentReloads(store: AuditStore, max = CONFIG_HISTORY): Promise<ConfigReloadEntry[]> {
  const kept: ConfigReloadEntry[] = [];
  for (let afterSeq = 0; ;) {
    const page = await store.recordsOfKinds(['config.reloaded'], 0, PAGE, afterSeq);
    for (const r of page) {
      try {
        kept.push({ ...(JSON.parse(r.data) as ConfigReloadedData), at: r.at });
      } catch {
        continue; // a changed record: verify reports it by its hash
      }
      if (kept.length > max) kept.shift();
    }
    if (page.length < PAGE) break;
    afterSeq = page.at(-1)!.seq;
  }
  return kept.reverse();
}

export const CONFIG_ROUTES: readonly AdminRoute[] = [
  {
    method: 'GET',
    path: '/config',
    authenticated: true,
    async handle(ctx) {
      requireRole(ctx.caller, 'admin');
      if (!ctx.configStatus) throw new VigilError('NOT_FOUND', 'this admin API runs no gateway');
      const status = ctx.configStatus();
      sendJson(ctx.res, 200, {
        sha256: status.sha256,
        lastReload: { successful: status.successful, lastSuccessAt: status.lastSuccessAt },
        reloadable: ctx.reloadConfig !== undefined,
        reloads: await recentReloads(ctx.store),
      });
    },
  },
  {
    method: 'POST',
    path: '/config/reload',
    authenticated: true,
    async handle(ctx) {
      requireRole(ctx.caller, 'admin');
      if (!ctx.reloadConfig) {
        throw new VigilError('NOT_FOUND', 'this gateway was started without a config it can read again');
      }
      try {
        sendJson(ctx.res, 200, await ctx.reloadConfig(ctx.caller.reader));
      } catch (err) {
        // Not valid, would not start, or needs a restart: what to fix, by path.
        if (err instanceof ConfigError) throw new VigilError('BAD_REQUEST', err.message, { cause: err });
        throw err;
      }
    },
  },
];

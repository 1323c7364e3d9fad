/** Opens the store the config names. The rest of Vigil sees only the AuditStore interface. */
import path from 'node:path';
import type { VigilConfig } from '../config/config-schema.js';
import type { AuditStore } from './audit-store.js';
import { SqliteAuditStore } from './sqlite/sqlite-audit-store.js';

export function sqlitePath(config: VigilConfig): string {
  return config.store.sqlite.path ?? path.join(config.data_dir, 'vigil.db');
}

export async function openStore(config: VigilConfig, options: { readonly?: boolean } = {}): Promise<AuditStore> {
  return SqliteAuditStore.open({
    file: sqlitePath(config),
    synchronous: config.store.sqlite.synchronous,
    readonly: options.readonly ?? false,
  });
}

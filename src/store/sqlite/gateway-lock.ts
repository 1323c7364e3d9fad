/**
 * One gateway per SQLite store, enforced. The SQLite store assumes it (every other chain's writer is taken for stopped,
 * so a start records their open exchanges as interrupted; every leadership — the SIEM outbox, retention — is its own),
 * and a second `vigil serve` on the same data directory broke each of those: it cut the first one's streams in its
 * record, and both sent every audit event to the SIEM.
 *
 * The lock is an open exclusive transaction on a small SQLite file beside the store (`<store>.gateway-lock`): SQLite
 * locks it with the operating system's file locks, which the system releases when the process ends, however it ends
 * (`kill -9` included). There is no stale lock to clean up, and no process id to trust.
 */
import Database from 'better-sqlite3';

/** Thrown by {@link GatewayLock.take} when another process (or another store in this one) holds the lock. */
export class StoreInUseError extends Error {
  readonly code = 'VIGIL_STORE_IN_USE';

  constructor(readonly lockFile: string) {
    super(`another vigil serve holds ${lockFile}`);
  }
}

export class GatewayLock {
  private constructor(
    private readonly db: Database.Database,
    readonly file: string,
  ) {}

  /** The lock of the store at `storeFile`, taken without waiting. @throws StoreInUseError when it is held. */
  static take(storeFile: string): GatewayLock {
    const file = `${storeFile}.gateway-lock`;
    // Asked for without waiting: a second gateway is told at once (better-sqlite3 waits 5 s by default).
    const db = new Database(file, { timeout: 0 });
    try {
      // The lock is the file's: a rollback journal (not WAL, whose readers take no file lock) kept in memory (nothing
      // is ever written, and no journal file is left beside it), held by a transaction that never ends.
      db.pragma('journal_mode = MEMORY');
      db.exec('BEGIN EXCLUSIVE');
    } catch (err) {
      db.close();
      if ((err as { code?: string }).code === 'SQLITE_BUSY') throw new StoreInUseError(file);
      throw err;
    }
    return new GatewayLock(db, file);
  }

  release(): void {
    if (!this.db.open) return;
    this.db.exec('ROLLBACK');
    this.db.close();
  }
}

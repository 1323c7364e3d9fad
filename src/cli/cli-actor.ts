import { userInfo } from 'node:os';
import type { LocalUser } from '../identity/principal.js';

/**
 * Who runs a CLI command, as `cli:<user>`: the same for every command (a key's owner is compared with its approvers),
 * from USER or LOGNAME, else the OS account (cron, containers and systemd units often set neither).
 */
export function cliActor(): string {
  let name = process.env.USER ?? process.env.LOGNAME;
  if (!name) {
    try {
      name = userInfo().username;
    } catch {
      name = `uid-${process.getuid?.() ?? 'unknown'}`;
    }
  }
  return `cli:${name}`;
}

/**
 * Who runs a CLI command as an actor, the same wherever the CLI acts: reading recordings (the access log) and deciding
 * held calls (which compare it with a key's owner, see `isSameActor`).
 */
export function cliLocalUser(): LocalUser {
  return { method: 'local_user', subject: cliActor() };
}

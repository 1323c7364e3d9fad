import { userInfo } from 'node:os';

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

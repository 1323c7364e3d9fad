/**
 * What a CLI command refuses (a usage error, a refused action): `run` prints it as `vigil: <message>` and exits with
 * `exitCode`, 2 for a usage error and 1 for a refused action (no such hold, an approval refused).
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}

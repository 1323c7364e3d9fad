/**
 * The web UI's asset list: every file in src/ui is served (a module left off the list would 404 in the browser), and
 * nothing but the list is ever looked up.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadUiAssets, UI_DIR, UI_FILES, uiFileFor } from '../../../src/admin/ui-assets.js';

describe('ui-assets', () => {
  it('lists exactly the files of src/ui', () => {
    expect([...UI_FILES].sort()).toEqual(readdirSync(UI_DIR).sort());
  });

  it('every module the UI imports is on the list', () => {
    for (const name of UI_FILES.filter((n) => n.endsWith('.js'))) {
      const source = readFileSync(path.join(UI_DIR, name), 'utf8');
      for (const [, imported] of source.matchAll(/from '\.\/([^']+)'/g)) {
        expect(UI_FILES, `${name} imports ${imported}`).toContain(imported);
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
    expect(loaded.ok && [...loaded.files.keys()]).toEqual([...UI_FILES]);
  });
});

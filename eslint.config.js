// The layering the house style asks for, held by the linter: the hot path never reaches a store implementation, and
// only the store factory picks one. Formatting is prettier's; type checking is tsc's.
import tseslint from 'typescript-eslint';

const storeImplementations = {
  group: ['**/store/sqlite/*', '**/store/postgres/*'],
  message: 'Use the AuditStore interface; only src/store/open-store.ts chooses an implementation.',
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/**', 'vigil-data/**'] },
  {
    files: ['src/**/*.ts'],
    languageOptions: { parser: tseslint.parser },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      'no-restricted-imports': ['error', { patterns: [storeImplementations] }],
      '@typescript-eslint/no-floating-promises': 'off',
      'no-debugger': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
    },
  },
  {
    // The web UI: plain browser modules. Recorded prompts and responses are attacker-controlled text, so nothing may
    // turn a string into markup: the DOM is built with createElement and textContent only.
    files: ['src/ui/**/*.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module' },
    rules: {
      'no-restricted-properties': [
        'error',
        ...['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'srcdoc'].map((property) => ({
          property,
          message: 'Build DOM nodes with textContent/createElement (src/ui/dom.js): recorded text is untrusted.',
        })),
        { object: 'document', property: 'write', message: 'No markup from strings.' },
        { object: 'localStorage', message: 'Tokens live in sessionStorage only (gone when the tab closes).' },
      ],
      'no-eval': 'error',
      'no-implied-eval': 'error',
      'no-new-func': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
    },
  },
  {
    // Served to the web UI as it compiles (ui-assets.ts, SHARED_MODULES): a browser module, so types only from
    // elsewhere, and nothing of Node's.
    files: ['src/recorder/exchange-turn.ts'],
    rules: {
      'no-restricted-imports': 'off',
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['*'],
              allowTypeImports: true,
              message: 'The web UI loads this module alone (ui-assets.ts): import types only.',
            },
          ],
        },
      ],
      'no-restricted-globals': ['error', 'process', 'Buffer', 'require', '__dirname', 'global'],
    },
  },
  {
    // The store itself, and the factory and the CLI's grants verb, may name implementations.
    files: ['src/store/**/*.ts', 'src/cli/main.ts'],
    rules: { 'no-restricted-imports': 'off' },
  },
  {
    files: ['src/proxy/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            storeImplementations,
            {
              group: ['**/admin/*', '**/cli/*', '**/export/*'],
              message: 'The hot path does not depend on the control plane.',
            },
          ],
        },
      ],
    },
  },
);

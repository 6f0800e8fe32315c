/**
 * ESLint, in three runs (issue #14: one type-aware run over every file took 43 s here, 21 s of it TypeScript checking
 * the tests, and a run with types takes 20 s or more however it is cut):
 * - `npm run lint` (this file): every file with the rules that need no types, cached per file in
 *   node_modules/.cache/eslint (a rule without types reads one file, so a cached answer stays right), then the import
 *   cycles (scripts/check-cycles.ts).
 * - `npm run lint:types` (eslint.types.config.js): src/ and scripts/ with the type-aware rules (floating and misused
 *   promises), on a program of those alone (tsconfig.lint.json). Not cached: a file's answer depends on the types of
 *   the files it imports.
 * - `npm run lint:tests` (eslint.tests.config.js): test/ with the type-aware rules. Vitest itself fails a test whose
 *   `.resolves`/`.rejects` assertion is not awaited.
 * .ci/run runs all three.
 */
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export const SOURCES = ['src/**/*.ts', 'scripts/**/*.ts'];
const TESTS = ['test/**/*.ts'];

/** Rules and ignores of every run. */
export const base = [
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'data/**', '*.config.ts', 'eslint.config.js', 'eslint.tests.config.js', 'eslint.types.config.js'] },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      // Import cycles: scripts/check-cycles.ts (part of `npm run lint`), one walk of the graph instead of one per file.
      'no-console': 'error',
    },
  },
  {
    // core/ is pure: no I/O, no adapters, no Node built-ins.
    files: ['src/core/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['node:*', '../alibaba/*', '../ledger/*', '../sinks/*', '../ops/*', '../simulator/*', 'undici', 'pino'] }],
    },
  },
  {
    files: ['src/cli.ts', 'test/**/*.ts', 'scripts/**/*.ts'],
    rules: { 'no-console': 'off' },
  },
];

/** The rules of typescript-eslint's `recommended` (`typed`: `recommendedTypeChecked`) and ours, for `files`. */
export function typescriptRules(files, typed, project) {
  const preset = typed ? tseslint.configs.recommendedTypeChecked : tseslint.configs.recommended;
  return [
    ...preset.map((config) => ({ ...config, files })),
    {
      files,
      // NOTE: without types, a directive that disables a type-aware rule has nothing to disable; the typed run checks it.
      ...(typed ? { languageOptions: { parserOptions: { project, tsconfigRootDir: import.meta.dirname } } } : { linterOptions: { reportUnusedDisableDirectives: 'off' } }),
      rules: {
        ...(typed ? { '@typescript-eslint/no-floating-promises': 'error', '@typescript-eslint/no-misused-promises': 'error' } : {}),
        '@typescript-eslint/consistent-type-imports': 'error',
        '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      },
    },
  ];
}

/** What the tests may do that the sources may not. */
export const testRules = {
  files: TESTS,
  rules: {
    '@typescript-eslint/no-unsafe-assignment': 'off',
    '@typescript-eslint/no-unsafe-member-access': 'off',
    '@typescript-eslint/no-unsafe-call': 'off',
    '@typescript-eslint/no-unsafe-argument': 'off',
    '@typescript-eslint/no-unsafe-return': 'off',
    '@typescript-eslint/no-non-null-assertion': 'off',
    '@typescript-eslint/require-await': 'off',
  },
};

export { TESTS };

export default [...base, ...typescriptRules(SOURCES, false), ...typescriptRules(TESTS, false), testRules];

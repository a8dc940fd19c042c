// `npm run lint` (with clang-format for native/): typescript-eslint's recommended rules on src/.
// Kept to rules the code already follows, so that lint findings are news, not noise.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['lib/', 'build/', 'node_modules/', 'prebuilds/', 'bench/', 'test/', 'examples/', 'scripts/', 'bin/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.ts'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module' },
    rules: {
      // `_`-prefixed arguments and variables are deliberately unused (callbacks with a fixed signature).
      // The thread's callback reads `self`, assigned once the Dispatcher exists (dispatcher.ts).
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // Output is CommonJS: require() stays for JSON and for node-gyp-build's addon lookup.
      '@typescript-eslint/no-require-imports': ['error', { allow: ['package\\.json$', '^node-gyp-build$'] }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
);

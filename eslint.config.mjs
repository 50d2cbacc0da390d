import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      '**/dist/**',
      '**/node_modules/**',
      'libs/proto/src/generated/**',
      '.demo/**',
      'coverage/**',
      'test-artifacts/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      'no-restricted-syntax': [
        'error',
        {
          selector: "CallExpression[callee.property.name='execSync']",
          message: 'Never a shell: use execFile/spawn with an argument array.',
        },
        {
          selector: "Property[key.name='shell'][value.value=true]",
          message: 'Never a shell: use execFile/spawn with an argument array.',
        },
      ],
    },
  },
  { files: ['apps/web/src/**'], languageOptions: { globals: globals.browser } },
);

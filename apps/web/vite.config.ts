import react from '@vitejs/plugin-react';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  plugins: [react()],
  // The shared permission definition, from its sources (the library's build is CommonJS for the manager).
  resolve: {
    alias: {
      '@debvisor/permissions': fileURLToPath(
        new URL('../../libs/permissions/src/index.ts', import.meta.url),
      ),
    },
  },
  // ES2022: noVNC (@novnc/novnc) uses top-level await.
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: true, target: 'es2022' },
  optimizeDeps: { esbuildOptions: { target: 'es2022' } },
  server: { proxy: { '/api': { target: 'https://127.0.0.1:8443', secure: false } } },
});

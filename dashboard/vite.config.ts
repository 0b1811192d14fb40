import { defineConfig } from 'vite';

// The dashboard is embedded in the kumo binary and served at `/`; assets
// under /assets/ carry content hashes, so they are cached for good.
export default defineConfig({
  base: '/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 1024,
  },
  server: { proxy: { '/api': 'http://127.0.0.1:8080', '/fn': 'http://127.0.0.1:8080', '/p': 'http://127.0.0.1:8080' } },
});

import { defineConfig } from "vitest/config";

// A static single-page app: `vite build` writes dist/, servable by any static file server
// next to a `config.json` (see console/README.md).
export default defineConfig({
  root: import.meta.dirname,
  base: "./",
  // viem is most of the bundle (150 KB gzipped in all)
  build: { outDir: "dist", emptyOutDir: true, target: "es2022", sourcemap: true, chunkSizeWarningLimit: 800 },
  test: { include: ["test/**/*.test.ts"], environment: "node" },
});

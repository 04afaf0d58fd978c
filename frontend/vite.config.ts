/// <reference types="vitest/config" />
import { defineConfig } from "vite";

// Preact through the automatic JSX runtime (no Babel preset needed): Vite 8's Oxc transform reads
// the JSX options below; tsconfig.json says the same for the type checker.
export default defineConfig({
  base: "/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: true,
    chunkSizeWarningLimit: 300,
  },
  server: {
    // `npm run dev` next to a running gateway: OPSDASH_GATEWAY=http://127.0.0.1:8787 npm run dev
    proxy: process.env.OPSDASH_GATEWAY
      ? {
          "/operator": { target: process.env.OPSDASH_GATEWAY, ws: true },
          "/healthz": { target: process.env.OPSDASH_GATEWAY },
        }
      : undefined,
  },
  test: {
    environment: "happy-dom",
    setupFiles: ["./src/test/setup.ts"],
    include: ["src/**/*.test.{ts,tsx}"],
  },
});

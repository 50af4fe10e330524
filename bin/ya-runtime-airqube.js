#!/usr/bin/env node
// Entry point of the `ya-runtime-airqube` command (the Golem ExeUnit runtime): runs the compiled runtime
// (dist/golem/runtime/main.js). In a checkout of the repository (src/ next to dist/), a dist/ older than the
// sources would run stale code, so the sources run through tsx (a development dependency) until `npm run build`.
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const compiled = join(root, "dist", "golem", "runtime", "main.js");
const stamp = join(root, "dist", ".build-stamp");
const sources = join(root, "src", "golem", "runtime", "main.ts");

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

const checkout = existsSync(sources);
const fresh =
  existsSync(compiled) && (!checkout || (existsSync(stamp) && statSync(stamp).mtimeMs >= newestSource(join(root, "src"))));
if (fresh) {
  await import(pathToFileURL(compiled).href);
} else if (checkout) {
  let register;
  try {
    ({ register } = await import("tsx/esm/api"));
  } catch {
    process.stderr.write("ya-runtime-airqube: dist/ is missing or older than src/: run `npm run build` (or `npm ci` for tsx)\n");
    process.exit(125);
  }
  register();
  await import(pathToFileURL(sources).href);
} else {
  process.stderr.write(`ya-runtime-airqube: the package is incomplete (${compiled} is missing): reinstall airqube\n`);
  process.exit(125);
}

// Shared by the package's commands (bin/airqube.js, bin/ya-runtime-airqube.js): runs the compiled entry point
// under dist/. An installed package has nothing else. In a checkout of the repository (src/ next to dist/), a
// dist/ older than the sources would run stale code, so the sources run through tsx (a development
// dependency) until `npm run build`.
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/**
 * Runs `dist/<entry>.js`, or `src/<entry>.ts` through tsx in a checkout whose dist/ is missing or stale.
 * `command` names the command in messages (e.g. "airqube"); `entry` is the path under src/ without extension.
 */
export async function launch(command, entry) {
  const compiled = join(root, "dist", `${entry}.js`);
  const stamp = join(root, "dist", ".build-stamp");
  const sources = join(root, "src", `${entry}.ts`);
  const checkout = existsSync(sources);
  const fresh =
    existsSync(compiled) &&
    (!checkout || (existsSync(stamp) && statSync(stamp).mtimeMs >= newestSource(join(root, "src"))));
  if (fresh) {
    await import(pathToFileURL(compiled).href);
  } else if (checkout) {
    let register;
    try {
      ({ register } = await import("tsx/esm/api"));
    } catch {
      process.stderr.write(`${command}: dist/ is missing or older than src/: run \`npm run build\` (or \`npm ci\` for tsx)\n`);
      process.exit(125);
    }
    register();
    await import(pathToFileURL(sources).href);
  } else {
    process.stderr.write(`${command}: the package is incomplete (${compiled} is missing): reinstall airqube\n`);
    process.exit(125);
  }
}

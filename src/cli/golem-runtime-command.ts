/**
 * `airqube golem-runtime install|uninstall`: registers `ya-runtime-airqube` with a Golem provider's
 * ya-provider, which loads every `ya-*.json` of its plugins directory (default `~/.local/lib/yagna/plugins`).
 *
 * install writes two files and nothing else:
 * - `DIR/ya-runtime-airqube.json`, the ExeUnit descriptor ya-provider reads: a JSON array of one object with
 *   `name`, `version` (semver), `supervisor-path` (exe-unit; relative paths are resolved against DIR),
 *   `runtime-path`, `description`, `extra-args`, `properties` and `config.counters` (the usage counters
 *   the runtime reports, which a preset prices);
 * - `DIR/ya-runtime-airqube/ya-runtime-airqube`, a launcher that runs this installation's
 *   `bin/ya-runtime-airqube.js` with this Node.js.
 * Each carries a marker, so install overwrites only its own files (a file without the marker is refused) and
 * uninstall removes exactly those, then the launcher's directory when it is left empty.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { lstat, mkdir, readFile, rename, rm, rmdir, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import type { Command } from "commander";
import { RUNTIME_NAME } from "../golem/runtime/offer.js";
import { RUNTIME_VERSION } from "../golem/runtime/state.js";
import { packageRoot } from "../package-root.js";
import { PlatformError, UserError } from "../qube/errors.js";
import { printJson, reportError } from "./output.js";

/** The descriptor's file name (ya-provider loads `ya-*.json`). */
export const DESCRIPTOR_FILE = "ya-runtime-airqube.json";
/** The launcher, relative to the plugins directory (the descriptor's `runtime-path`). */
export const LAUNCHER_PATH = "ya-runtime-airqube/ya-runtime-airqube";
/** What marks a file as written by this command. */
export const INSTALL_MARKER = "written by `airqube golem-runtime install`";
/** Largest file this command reads back (its own files are well under 4 KB). */
const MAX_OWN_FILE_BYTES = 64 * 1024;

/** ya-provider's per-user plugins directory (the Golem installer's `golemsp` uses it). */
export function defaultPluginsDir(): string {
  return join(homedir(), ".local", "lib", "yagna", "plugins");
}

/** Options of {@link installGolemRuntime}. */
export interface InstallOptions {
  /** Where ya-provider looks for `ya-*.json`. Default {@link defaultPluginsDir}. */
  pluginsDir?: string;
  /** exe-unit's path; relative paths are taken from the plugins directory, as ya-provider does. Default `exe-unit`. */
  exeUnit?: string;
  /** The runtime script the launcher runs. Default this installation's `bin/ya-runtime-airqube.js`. */
  runtimeScript?: string;
  /** The Node.js binary the launcher runs. Default this process's. */
  node?: string;
}

/** What {@link installGolemRuntime} did. */
export interface InstallResult {
  pluginsDir: string;
  descriptor: string;
  launcher: string;
  runtimeScript: string;
  node: string;
  exeUnit: { path: string; found: boolean };
  /** The files written (empty when both already held exactly this content). */
  written: string[];
}

/** The descriptor ya-provider reads: an array of one ExeUnit description. */
export function runtimeDescriptor(exeUnit: string): unknown[] {
  return [
    {
      name: RUNTIME_NAME,
      version: RUNTIME_VERSION,
      "supervisor-path": exeUnit,
      "runtime-path": LAUNCHER_PATH,
      description: `Airqube qubes in hardened, disposable sandboxes vetted by Airqube's escape suite (${INSTALL_MARKER})`,
      "extra-args": [],
      properties: {},
      config: {
        counters: {
          "golem.usage.duration_sec": { name: "duration", description: "Duration", price: true },
          "golem.usage.cpu_sec": { name: "cpu", description: "CPU", price: true },
        },
      },
    },
  ];
}

/** The launcher script: execs `node` on the runtime script with every argument. */
export function launcherScript(node: string, runtimeScript: string): string {
  for (const path of [node, runtimeScript])
    if (!isAbsolute(path) || /[\0\n\r]/.test(path))
      throw new UserError("GOLEM_RUNTIME_PATH_INVALID", "The launcher needs absolute paths on one line", {
        details: JSON.stringify(path),
      });
  return [
    "#!/bin/sh",
    `# ya-runtime-airqube launcher, ${INSTALL_MARKER}; \`airqube golem-runtime uninstall\` removes it`,
    `exec ${shellQuote(node)} ${shellQuote(runtimeScript)} "$@"`,
    "",
  ].join("\n");
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * Writes the descriptor and the launcher into the plugins directory (created when absent). Idempotent;
 * refuses, before writing anything, when either path holds something this command did not write
 * (UserError `GOLEM_RUNTIME_FOREIGN_FILE`).
 *
 * @example
 * const result = await installGolemRuntime({ pluginsDir: "/home/me/.local/lib/yagna/plugins" });
 */
export async function installGolemRuntime(options: InstallOptions = {}): Promise<InstallResult> {
  const pluginsDir = resolve(options.pluginsDir ?? defaultPluginsDir());
  const exeUnit = options.exeUnit ?? "exe-unit";
  const runtimeScript = resolve(options.runtimeScript ?? join(packageRoot(), "bin", "ya-runtime-airqube.js"));
  const node = options.node ?? process.execPath;
  const descriptor = join(pluginsDir, DESCRIPTOR_FILE);
  const launcher = join(pluginsDir, LAUNCHER_PATH);
  const contents: Array<[string, string, number]> = [
    [descriptor, `${JSON.stringify(runtimeDescriptor(exeUnit), null, 2)}\n`, 0o644],
    [launcher, launcherScript(node, runtimeScript), 0o755],
  ];
  // every check before any write: a refusal leaves the directory as it was
  const current = new Map<string, string | undefined>();
  for (const [path] of contents) current.set(path, await ownFile(path));
  if (!existsSync(runtimeScript))
    throw new UserError("GOLEM_RUNTIME_SCRIPT_MISSING", "The runtime script is missing from this installation", {
      details: `${runtimeScript}: reinstall airqube`,
    });
  const written: string[] = [];
  try {
    await mkdir(dirname(launcher), { recursive: true, mode: 0o755 });
    await refuseLink(dirname(launcher));
    for (const [path, text, mode] of contents) {
      if (current.get(path) === text) continue;
      await atomicWrite(path, text, mode);
      written.push(path);
    }
  } catch (error) {
    if (error instanceof UserError) throw error;
    throw new PlatformError("GOLEM_RUNTIME_INSTALL_FAILED", "Could not write the runtime's files", {
      details: `${pluginsDir}: ${(error as Error).message}`,
      cause: error,
    });
  }
  const exeUnitPath = resolve(pluginsDir, exeUnit);
  return {
    pluginsDir,
    descriptor,
    launcher,
    runtimeScript,
    node,
    exeUnit: { path: exeUnitPath, found: existsSync(exeUnitPath) },
    written,
  };
}

/** What {@link uninstallGolemRuntime} did. */
export interface UninstallResult {
  pluginsDir: string;
  removed: string[];
}

/**
 * Removes the descriptor and the launcher install wrote (and the launcher's directory when left empty).
 * Refuses, before removing anything, when either path holds a file this command did not write
 * (UserError `GOLEM_RUNTIME_FOREIGN_FILE`). Nothing installed is not an error: `removed` is empty.
 */
export async function uninstallGolemRuntime(options: { pluginsDir?: string } = {}): Promise<UninstallResult> {
  const pluginsDir = resolve(options.pluginsDir ?? defaultPluginsDir());
  const paths = [join(pluginsDir, DESCRIPTOR_FILE), join(pluginsDir, LAUNCHER_PATH)];
  // never through a link: the launcher's directory, when there is one, must be a plain directory
  const launcherDir = dirname(paths[1]!);
  if (await lstat(launcherDir).catch(() => undefined)) await refuseLink(launcherDir);
  const present: string[] = [];
  for (const path of paths) if ((await ownFile(path)) !== undefined) present.push(path);
  const removed: string[] = [];
  try {
    for (const path of present) {
      await rm(path);
      removed.push(path);
    }
    // only when empty: anything else in it is not ours
    await rmdir(launcherDir).then(
      () => removed.push(launcherDir),
      () => undefined,
    );
  } catch (error) {
    throw new PlatformError("GOLEM_RUNTIME_UNINSTALL_FAILED", "Could not remove the runtime's files", {
      details: `${pluginsDir}: ${(error as Error).message}`,
      cause: error,
    });
  }
  return { pluginsDir, removed };
}

/**
 * The content of a file this command wrote, or undefined when nothing is there. Throws UserError
 * `GOLEM_RUNTIME_FOREIGN_FILE` for anything else: a link, a directory, a large file, a file without the marker.
 */
async function ownFile(path: string): Promise<string | undefined> {
  const stat = await lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT" || error.code === "ENOTDIR") return undefined;
    throw new PlatformError("GOLEM_RUNTIME_INSTALL_FAILED", "Could not read the plugins directory", {
      details: `${path}: ${error.message}`,
      cause: error,
    });
  });
  if (stat === undefined) return undefined;
  const foreign = (why: string) =>
    new UserError("GOLEM_RUNTIME_FOREIGN_FILE", "A file of the same name, not written by airqube, is in the way", {
      details: `${path}: ${why}; move it away, or pass another --plugins-dir`,
    });
  if (!stat.isFile()) throw foreign(stat.isSymbolicLink() ? "a symbolic link" : "not a regular file");
  if (stat.size > MAX_OWN_FILE_BYTES) throw foreign(`${stat.size} bytes`);
  const text = await readFile(path, "utf8");
  if (!text.includes(INSTALL_MARKER)) throw foreign("it has no airqube marker");
  return text;
}

async function refuseLink(dir: string): Promise<void> {
  const stat = await lstat(dir);
  if (!stat.isDirectory())
    throw new UserError("GOLEM_RUNTIME_FOREIGN_FILE", "The launcher's directory is not a plain directory", {
      details: `${dir}: move it away, or pass another --plugins-dir`,
    });
}

/** Writes `text` beside `path` and renames it over: readers see the old file or the new one. */
async function atomicWrite(path: string, text: string, mode: number): Promise<void> {
  const temp = join(dirname(path), `.${DESCRIPTOR_FILE}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    await writeFile(temp, text, { flag: "wx", mode });
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** How to turn the runtime on in ya-provider, for people. */
export function presetHelp(result: Pick<InstallResult, "pluginsDir" | "launcher" | "exeUnit">): string {
  const custom = result.pluginsDir !== resolve(defaultPluginsDir());
  const withPath = custom ? ` --exe-unit-path '${join(result.pluginsDir, "ya-*.json")}'` : "";
  const lines = [
    "Next:",
    `  1. run the escape suite through the runtime (once; ya-provider runs it too): ${result.launcher} test`,
    "  2. tell it which task packages to accept: AIRQUBE_RUNTIME_IMAGES=sha256:... (or config.json in",
    "     ~/.local/share/airqube/golem-runtime/), then check the offer: ... offer-template",
    `  3. ya-provider${withPath} exe-unit list                 # lists "${RUNTIME_NAME}"`,
    `  4. ya-provider${withPath} preset create --no-interactive --preset-name ${RUNTIME_NAME} --exe-unit ${RUNTIME_NAME} \\`,
    "       --pricing linear --price duration=0.0001 --price cpu=0.001 --price initial=0",
    `  5. ya-provider${withPath} preset activate ${RUNTIME_NAME}, then restart the provider (golemsp run)`,
  ];
  if (custom)
    lines.push(
      `  (a plugins directory of your own: start ya-provider with the same --exe-unit-path, or EXE_UNIT_PATH)`,
    );
  if (!result.exeUnit.found)
    lines.push(`  note: exe-unit is not at ${result.exeUnit.path}: install yagna's provider, or pass --exe-unit PATH`);
  return `${lines.join("\n")}\n`;
}

interface InstallFlags {
  pluginsDir?: string;
  exeUnit?: string;
  json?: boolean;
}

export function registerGolemRuntimeCommand(program: Command): void {
  const group = program
    .command("golem-runtime")
    .description("install Airqube as an ExeUnit runtime of a Golem provider (ya-provider), so it sells qubes");
  group
    .command("install")
    .description(`write ${DESCRIPTOR_FILE} and the ya-runtime-airqube launcher where ya-provider looks for plugins`)
    .option("--plugins-dir <dir>", "ya-provider's plugins directory", defaultPluginsDir())
    .option("--exe-unit <path>", "exe-unit's path (relative: in the plugins directory)", "exe-unit")
    .option("--json", "print what was written as JSON")
    .addHelpText(
      "after",
      "\nThen enable it in ya-provider with a preset (printed after install), e.g.\n" +
        `  ya-provider preset create --no-interactive --preset-name ${RUNTIME_NAME} --exe-unit ${RUNTIME_NAME} --pricing linear \\\n` +
        "    --price duration=0.0001 --price cpu=0.001 --price initial=0\n" +
        `  ya-provider preset activate ${RUNTIME_NAME}\n` +
        "Files that airqube did not write are never overwritten.",
    )
    .action(async (flags: InstallFlags) => {
      try {
        const result = await installGolemRuntime({
          ...(flags.pluginsDir ? { pluginsDir: flags.pluginsDir } : {}),
          ...(flags.exeUnit ? { exeUnit: flags.exeUnit } : {}),
        });
        if (flags.json) printJson(result);
        else {
          process.stdout.write(
            `${result.written.length ? "Installed" : "Already installed"}: the ${RUNTIME_NAME} runtime for ya-provider\n` +
              `  descriptor  ${result.descriptor}\n` +
              `  launcher    ${result.launcher} (${result.node} ${result.runtimeScript})\n`,
          );
          process.stdout.write(presetHelp(result));
        }
        process.exitCode = 0;
      } catch (error) {
        process.exitCode = reportError(error, Boolean(flags.json));
      }
    });
  group
    .command("uninstall")
    .description("remove exactly what install wrote (a file airqube did not write is refused)")
    .option("--plugins-dir <dir>", "ya-provider's plugins directory", defaultPluginsDir())
    .option("--json", "print what was removed as JSON")
    .addHelpText("after", `\nDeactivate the preset first: ya-provider preset deactivate ${RUNTIME_NAME}`)
    .action(async (flags: { pluginsDir?: string; json?: boolean }) => {
      try {
        const result = await uninstallGolemRuntime(flags.pluginsDir ? { pluginsDir: flags.pluginsDir } : {});
        if (flags.json) printJson(result);
        else if (result.removed.length === 0) process.stdout.write(`Nothing to remove in ${result.pluginsDir}\n`);
        else process.stdout.write(`Removed:\n${result.removed.map((p) => `  ${p}\n`).join("")}`);
        process.exitCode = 0;
      } catch (error) {
        process.exitCode = reportError(error, Boolean(flags.json));
      }
    });
}

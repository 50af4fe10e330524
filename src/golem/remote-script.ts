/**
 * The two small POSIX shell programs the Golem backend runs inside the provider's VM, as data, and the parser
 * of what the second one prints. The VM image needs `/bin/sh`, `tar`, `head`, `wc` (busybox has them all);
 * `sha256sum` is used when present.
 *
 * 1. `run`: exports the spec's environment, runs the qube's argv in the output directory with stdin closed,
 *    stdout and stderr into files of a per-run staging directory, and records the exit status.
 * 2. `pack`: trims stdout/stderr to the log cap, tars the staging files and the declared outputs that exist
 *    (relative to `/`, so every entry starts with the output directory's name), and prints the tar's size
 *    and SHA-256 so that the requestor can detect a truncated or altered download.
 *
 * On Airqube's own runtime (`ya-runtime-airqube`), whose every process starts in a fresh sandbox with an empty
 * `/output`, both run as one program (`runAndPackCommand`).
 *
 * Arguments always travel as argv elements, never spliced into the script text.
 */
import { z } from "zod";
import { PeerError } from "../qube/index.js";

const RUN_SCRIPT = [
  "s=$1; o=$2; shift 2",
  'mkdir -p "$s" || exit 121',
  'while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do export "$1" || exit 122; shift; done',
  "shift",
  'cd "$o" || exit 123',
  '"$@" </dev/null >"$s/stdout" 2>"$s/stderr"',
  'echo "$?" >"$s/exit"',
].join("\n");

const PACK_SCRIPT = [
  "s=$1; o=$2; l=$3; t=$4; shift 4",
  "cd / || exit 124",
  'head -c "$l" "$s/stdout" >"$s/out" 2>/dev/null || : >"$s/out"',
  'head -c "$l" "$s/stderr" >"$s/err" 2>/dev/null || : >"$s/err"',
  '[ -f "$s/exit" ] || echo -1 >"$s/exit"',
  "n=$#",
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a JS template
  'for p in "$@"; do if [ -e "${o#/}/$p" ] || [ -h "${o#/}/$p" ]; then set -- "$@" "${o#/}/$p"; fi; done',
  'shift "$n"',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a JS template
  'tar -cf "$t" "${s#/}/exit" "${s#/}/out" "${s#/}/err" "$@" || exit 125',
  'echo "airqube-pack-size $(wc -c <"$t")"',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a JS template
  'h=$(sha256sum "$t" 2>/dev/null) && echo "airqube-pack-sha256 ${h%% *}"',
  "exit 0",
].join("\n");

/** Where one run keeps its files inside the VM (next to the outputs, in the same volume). */
export interface RemoteLayout {
  /** Output directory of the qube (a VOLUME of the image), e.g. `/output`. */
  output: string;
  /** Staging directory for stdout, stderr and exit status: `<output>/.airqube-<nonce>`. */
  stage: string;
  /** The tar the pack step writes: `<output>/.airqube-<nonce>.tar`. */
  tar: string;
}

/** The layout for one run; `nonce` is random hex chosen by the requestor. */
export function remoteLayout(output: string, nonce: string): RemoteLayout {
  if (!/^[0-9a-f]{16,64}$/.test(nonce)) throw new PeerError("GOLEM_NONCE_INVALID", "Bad nonce", { details: nonce });
  const base = output.replace(/\/+$/, "");
  return { output: base, stage: `${base}/.airqube-${nonce}`, tar: `${base}/.airqube-${nonce}.tar` };
}

/** argv (entry point and args) of the step that runs the qube. */
export function runCommand(
  layout: RemoteLayout,
  command: readonly string[],
  env: Record<string, string>,
): { entryPoint: string; args: string[] } {
  const exports = Object.entries(env)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`);
  return {
    entryPoint: "/bin/sh",
    args: ["-c", RUN_SCRIPT, "airqube-run", layout.stage, layout.output, ...exports, "--", ...command],
  };
}

/** argv of the step that packs the declared outputs and the run's stdout, stderr and exit status. */
export function packCommand(
  layout: RemoteLayout,
  outputs: readonly string[],
  logBytes: number,
): { entryPoint: string; args: string[] } {
  return {
    entryPoint: "/bin/sh",
    args: ["-c", PACK_SCRIPT, "airqube-pack", layout.stage, layout.output, String(logBytes), layout.tar, ...outputs],
  };
}

/**
 * The two steps in one program, for runtimes that give each process a fresh `/output` (Airqube's
 * `ya-runtime-airqube`: a fresh sandbox per process, its `/output` merged into the volume afterwards), where a
 * separate pack step would not see the run's files. Arguments: the run script, the pack script, the number n of
 * the pack step's arguments, then those n, then the run step's. A run step that cannot start fails the whole
 * program with its own status (121-123); otherwise the pack step's status and report are the program's.
 */
const RUN_AND_PACK_SCRIPT = [
  "r=$1; p=$2; n=$3; shift 3",
  '( shift "$n"; exec /bin/sh -c "$r" airqube-run "$@" ) || exit "$?"',
  "a=$#; i=0",
  'for x in "$@"; do i=$((i + 1)); if [ "$i" -le "$n" ]; then set -- "$@" "$x"; fi; done',
  'shift "$a"',
  'exec /bin/sh -c "$p" airqube-pack "$@"',
].join("\n");

/** argv of the single step that runs the qube and packs its outputs in one process (see RUN_AND_PACK_SCRIPT). */
export function runAndPackCommand(
  layout: RemoteLayout,
  command: readonly string[],
  env: Record<string, string>,
  outputs: readonly string[],
  logBytes: number,
): { entryPoint: string; args: string[] } {
  const run = runCommand(layout, command, env).args.slice(3);
  const pack = packCommand(layout, outputs, logBytes).args.slice(3);
  return {
    entryPoint: "/bin/sh",
    args: [
      "-c",
      RUN_AND_PACK_SCRIPT,
      "airqube-run-pack",
      RUN_SCRIPT,
      PACK_SCRIPT,
      String(pack.length),
      ...pack,
      ...run,
    ],
  };
}

const packReportSchema = z.object({
  size: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
});
export type PackReport = z.infer<typeof packReportSchema>;

/** Parses the pack step's stdout (untrusted, bounded). Throws PeerError `GOLEM_PACK_INVALID`. */
export function parsePackReport(stdout: unknown): PackReport {
  const text = typeof stdout === "string" ? stdout.slice(0, 4096) : "";
  const size = /^airqube-pack-size\s+(\d{1,16})\s*$/m.exec(text)?.[1];
  const sha256 = /^airqube-pack-sha256 ([0-9a-f]{64})\s*$/m.exec(text)?.[1];
  const parsed = packReportSchema.safeParse({ size, ...(sha256 ? { sha256 } : {}) });
  if (!parsed.success)
    throw new PeerError("GOLEM_PACK_INVALID", "The provider did not report the packed outputs", {
      details: JSON.stringify(text.slice(0, 200)),
    });
  return parsed.data;
}

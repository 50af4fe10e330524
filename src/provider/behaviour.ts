/**
 * Provider behaviours. `honest` is the product; the others are adversaries for the verification tests
 * (refused outside devnet or test configurations by the config schema):
 *  - `lie`: runs the qube, then changes an output (a wrong but self-consistent answer)
 *  - `lie:every=N`: lies on every N-th qube it runs (the N-th, 2N-th, ...), is honest otherwise
 *  - `lie:p=P[,seed=S]`: lies on each qube with probability P, drawn from a sequence seeded with S (default
 *    0): the same seed gives the same honest/lying sequence, so a test is deterministic
 *  - `lazy`: answers without running anything (empty outputs)
 *  - `copy`: commits with a seal computed for another provider, as if it had copied a peer's commitment
 *  - `collude:GROUP`: returns the same wrong answer as every other member of GROUP
 *  - `slow`: waits past the commit deadline before running
 *  - `crash`: dies (SIGKILL) in the middle of the qube
 */
import { createHash, randomBytes } from "node:crypto";
import { appendFile, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { AdmittedJob } from "../net/exchange/handler.js";
import { Identity, InternalError } from "../qube/index.js";
import type { SandboxOutput, SandboxResult } from "../sandbox/api.js";

export interface Behaviour {
  readonly name: string;
  /** Wraps the sandbox run of a qube whose image digest is `imageDigest`. */
  run(execute: () => Promise<SandboxResult>, imageDigest: string): Promise<SandboxResult>;
  /** Changes outputs on disk after the run (adversaries only). */
  tamper(outputsDir: string, declared: string[]): Promise<void>;
  /** The output files to commit to, relative to the outputs directory. */
  listOutputs(outputsDir: string, reported: SandboxOutput[]): Promise<SandboxOutput[]>;
  /** The provider id the commitment seal is computed for (`copy` uses someone else's). */
  sealProvider(self: string): string;
  afterCommit(job: AdmittedJob): Promise<void>;
}

const OUTPUT_PREFIX = "output/";

/** Lists and hashes the regular files under `dir`, relative and sorted. */
export async function hashTree(dir: string, prefix = ""): Promise<SandboxOutput[]> {
  const out: SandboxOutput[] = [];
  const entries = await readdir(join(dir, prefix), { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await hashTree(dir, path)));
    else if (entry.isFile()) {
      const content = await readFile(join(dir, path));
      out.push({ path, size: content.length, sha256: createHash("sha256").update(content).digest("hex") });
    }
  }
  return out;
}

/** What a lazy provider pretends: a successful run of the right image, with nothing produced. */
const fakeRun = (imageDigest: string): SandboxResult => {
  const now = new Date().toISOString();
  return {
    tier: "container",
    imageDigest,
    exitCode: 0,
    durationMs: 1,
    stdout: "",
    stderr: "",
    stdoutTruncated: false,
    stderrTruncated: false,
    oomKilled: false,
    timedOut: false,
    outputs: [],
    startedAt: now,
    endedAt: now,
  };
};

/** Writes `text` into the first declared output (as a file), creating it if needed. */
async function overwriteFirst(outputsDir: string, declared: string[], text: string, append: boolean): Promise<void> {
  const files = await hashTree(outputsDir);
  const target = files[0] ? join(outputsDir, files[0].path) : join(outputsDir, declared[0] ?? "result");
  if (!files[0] && (await stat(target).catch(() => undefined))?.isDirectory()) {
    await writeFile(join(target, "result"), text);
    return;
  }
  await mkdir(dirname(target), { recursive: true });
  if (append) await appendFile(target, text);
  else await writeFile(target, text);
}

/** The provider whose commitment a `copy` provider pretends to have copied (any other valid identity). */
const copiedFrom = Identity.fromSeed(randomBytes(32));

/** `lie:every=N` and `lie:p=P[,seed=S]` as the syntax of the config schema (see INTERMITTENT_LIE). */
export const INTERMITTENT_LIE = /^lie:(every=([1-9]\d{0,3})|p=(0(\.\d{1,6})?|1(\.0{1,6})?)(,seed=(\d{1,9}))?)$/;

/** A number in [0, 1) drawn from `seed` for the `n`-th draw: the same seed and n give the same number. */
export function seededDraw(seed: number, n: number): number {
  const digest = createHash("sha256").update(`airqube-behaviour:${seed}:${n}`).digest();
  return digest.readUIntBE(0, 6) / 2 ** 48;
}

/**
 * For an intermittent liar, whether it lies on its `n`-th qube (1-based); undefined for any other behaviour.
 *
 * @example
 * parseIntermittentLie("lie:every=3")!(3) // true; (1) and (2) are false
 */
export function parseIntermittentLie(name: string): ((n: number) => boolean) | undefined {
  const match = INTERMITTENT_LIE.exec(name);
  if (!match) return undefined;
  if (match[2]) {
    const every = Number(match[2]);
    return (n) => n % every === 0;
  }
  const p = Number(match[3]);
  const seed = Number(match[7] ?? 0);
  return (n) => seededDraw(seed, n) < p;
}

export function parseBehaviour(name: string): Behaviour {
  const honest: Behaviour = {
    name: "honest",
    run: (execute) => execute(),
    tamper: async () => undefined,
    listOutputs: async (_dir, reported) =>
      reported
        .filter((f) => f.path.startsWith(OUTPUT_PREFIX))
        .map((f) => ({ ...f, path: f.path.slice(OUTPUT_PREFIX.length) })),
    sealProvider: (self) => self,
    afterCommit: async () => undefined,
  };
  const fromDisk = (dir: string) => hashTree(dir);
  if (name === "honest") return honest;
  if (name === "lie")
    return {
      ...honest,
      name,
      tamper: (dir, declared) => overwriteFirst(dir, declared, "\nlie", true),
      listOutputs: fromDisk,
    };
  const intermittent = parseIntermittentLie(name);
  if (intermittent) {
    // real cheaters do not lie every time: honest answers build a reputation the lies then spend
    let count = 0;
    const lying = new Set<string>();
    return {
      ...honest,
      name,
      tamper: async (dir, declared) => {
        count++;
        if (!intermittent(count)) return;
        lying.add(dir);
        await overwriteFirst(dir, declared, "\nlie", true);
      },
      listOutputs: (dir, reported) => (lying.delete(dir) ? fromDisk(dir) : honest.listOutputs(dir, reported)),
    };
  }
  if (name === "lazy")
    return { ...honest, name, run: async (_execute, imageDigest) => fakeRun(imageDigest), listOutputs: fromDisk };
  if (name === "copy") return { ...honest, name, sealProvider: () => copiedFrom.peerId };
  if (name.startsWith("collude:")) {
    const group = name.slice("collude:".length);
    return {
      ...honest,
      name,
      tamper: (dir, declared) => overwriteFirst(dir, declared, `colluding group ${group}\n`, false),
      listOutputs: fromDisk,
    };
  }
  if (name === "slow") {
    const delay = Number(process.env.AIRQUBE_SLOW_MS ?? 120_000);
    return {
      ...honest,
      name,
      run: async (execute) => {
        await new Promise((r) => setTimeout(r, delay));
        return execute();
      },
    };
  }
  if (name === "crash") {
    return {
      ...honest,
      name,
      run: async (execute) => {
        const running = execute();
        setTimeout(() => process.kill(process.pid, "SIGKILL"), 20); // mid-qube: the container is running
        return running;
      },
    };
  }
  throw new InternalError("BEHAVIOUR_UNKNOWN", "Unknown provider behaviour", { details: name });
}

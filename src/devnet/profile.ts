/**
 * The devnet profile: `airqube devnet up` writes what a requestor needs to use the devnet it started
 * (bootstrap address, the chain's RPC URL, the escrow, the path of the funded payment key file, a requestor
 * data directory) to `AIRQUBE_HOME/devnet/profile.json`, and removes it when it stops. `run`, `offers`,
 * `probe --provider` and `journal` fill in what the user did not give from it. Precedence: flags, then the
 * environment (`AIRQUBE_BOOTSTRAP`, `AIRQUBE_RPC_URL`, `AIRQUBE_ESCROW`, `AIRQUBE_PAYMENT_KEY_FILE`), then
 * the profile. A profile whose devnet process is gone is ignored. The key itself is never in the profile.
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { z } from "zod";
import { UserError } from "../qube/errors.js";

/** Largest profile accepted, bytes. */
const MAX_PROFILE_BYTES = 64 * 1024;

const evmAddress = z.string().regex(/^0x[0-9a-fA-F]{40}$/);
const path = z.string().min(1).max(4096);

/** Validates a devnet profile (version 1). */
export const devnetProfileSchema = z.strictObject({
  version: z.literal(1),
  /** The `airqube devnet up` process; the profile counts only while it lives. */
  pid: z.int().positive(),
  /** The devnet's directory. */
  dir: path,
  /** The bootstrap peer's multiaddr. */
  bootstrap: z.string().min(1).max(1024),
  /** The requestor data directory (identity, journal) to use with this devnet. */
  dataDir: path,
  /** Absent for a devnet without a chain (`devnet up --no-chain`): runs are unpaid. */
  chain: z
    .strictObject({
      rpcUrl: z.url({ protocol: /^https?$/ }).max(2048),
      chainId: z.int().positive(),
      escrow: evmAddress,
      token: evmAddress,
      /** The file holding the funded requestor's key (mode 0600); the key itself is never written here. */
      paymentKeyFile: path,
      /** `v2`: `escrow` is the escrow v2 the providers are paid through (`devnet up --escrow-version v2`). */
      escrowVersion: z.enum(["v1", "v2"]).optional(),
    })
    .optional(),
});
/** What `airqube devnet up` tells requestors about the devnet it runs (see {@link readDevnetProfile}). */
export type DevnetProfile = z.infer<typeof devnetProfileSchema>;

/** Where the profile lives under an Airqube home directory. */
export function devnetProfilePath(home: string): string {
  return join(home, "devnet", "profile.json");
}

/** Writes the profile atomically (mode 0600). */
export async function writeDevnetProfile(home: string, profile: DevnetProfile): Promise<string> {
  const file = devnetProfilePath(home);
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.${process.pid}.tmp`;
  await writeFile(temp, `${JSON.stringify(devnetProfileSchema.parse(profile), null, 2)}\n`, { mode: 0o600 });
  await rename(temp, file);
  return file;
}

/** Removes the profile if it is still the one process `pid` wrote (another devnet may have replaced it). */
export async function removeDevnetProfile(home: string, pid: number): Promise<void> {
  const file = devnetProfilePath(home);
  try {
    const current = JSON.parse(await readFile(file, "utf8")) as { pid?: unknown };
    if (current.pid === pid) await rm(file, { force: true });
  } catch {
    // no profile, or not ours to judge: leave it
  }
}

/**
 * Reads the profile of a running devnet: undefined when there is none or its devnet process is gone.
 *
 * @throws UserError `DEVNET_PROFILE_INVALID` when the file exists but is not a valid profile.
 */
export function readDevnetProfile(home: string): DevnetProfile | undefined {
  const file = devnetProfilePath(home);
  if (!existsSync(file)) return undefined;
  let profile: DevnetProfile;
  try {
    const text = readFileSync(file);
    if (text.byteLength > MAX_PROFILE_BYTES) throw new Error(`over ${MAX_PROFILE_BYTES} bytes`);
    profile = devnetProfileSchema.parse(JSON.parse(text.toString("utf8")));
  } catch (error) {
    const issue = error instanceof z.ZodError ? error.issues[0] : undefined;
    throw new UserError("DEVNET_PROFILE_INVALID", "The devnet profile is not valid", {
      details: `${file}: ${issue ? `${issue.path.join(".")}: ${issue.message}` : (error as Error).message}; delete it or run \`airqube devnet up\` again`,
      cause: error,
    });
  }
  return isAlive(profile.pid) ? profile : undefined;
}

/** The option values a command may take from the profile. */
export interface ProfileFill {
  bootstrap?: string[];
  rpcUrl?: string;
  escrow?: string;
  paymentKeyFile?: string;
  escrowVersion?: string;
  dataDir?: string;
}

/**
 * What the profile fills in, pure. `given` says which options the user set on the command line; `has` which
 * options the command has. The bootstrap comes from the profile only without `--bootstrap` and
 * `AIRQUBE_BOOTSTRAP`; the payment settings only when none of the three is given by flag or environment (the
 * profile never completes a half-given set); the data directory only without `--data-dir`.
 *
 * @example
 * profileFill(profile, { given: new Set(["image"]), has: new Set(["bootstrap", "dataDir"]), env: process.env });
 */
export function profileFill(
  profile: DevnetProfile,
  context: { given: ReadonlySet<string>; has: ReadonlySet<string>; env: Record<string, string | undefined> },
): ProfileFill {
  const { given, has, env } = context;
  const fill: ProfileFill = {};
  if (has.has("bootstrap") && !given.has("bootstrap") && !env.AIRQUBE_BOOTSTRAP) fill.bootstrap = [profile.bootstrap];
  const paymentKeys = ["rpcUrl", "escrow", "paymentKeyFile"] as const;
  const paymentEnv = ["AIRQUBE_RPC_URL", "AIRQUBE_ESCROW", "AIRQUBE_PAYMENT_KEY_FILE"] as const;
  if (
    profile.chain &&
    paymentKeys.every((k) => has.has(k) && !given.has(k)) &&
    paymentEnv.every((name) => !env[name])
  ) {
    fill.rpcUrl = profile.chain.rpcUrl;
    fill.escrow = profile.chain.escrow;
    fill.paymentKeyFile = profile.chain.paymentKeyFile;
    if (profile.chain.escrowVersion && has.has("escrowVersion") && !given.has("escrowVersion"))
      fill.escrowVersion = profile.chain.escrowVersion;
  }
  if (has.has("dataDir") && !given.has("dataDir")) fill.dataDir = profile.dataDir;
  return fill;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

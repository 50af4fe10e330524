/**
 * The `--config FILE` of the requestor commands (`run`, `probe`, `offers`): a JSON object whose `golem` section
 * configures the Golem backend, with the embedded network's settings beside it (each the default of its flag). A file that is missing, unreadable, not JSON or holds unknown keys is an error
 * whatever the backend, never ignored. (`provider start` reads its own config through `loadProviderConfig`.)
 */
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { UserError } from "../qube/errors.js";

/** Largest config file read, in bytes. */
const MAX_CONFIG_BYTES = 1024 * 1024;

/** A list of multiaddrs (checked as addresses by the network when used; bounded here). */
const multiaddrs = z.array(z.string().min(1).max(512)).min(1).max(16);

const requestorConfigSchema = z.strictObject({
  /** Golem backend settings (checked in full by `loadGolemConfig` when the Golem backend is used). */
  golem: z.record(z.string(), z.unknown()).optional(),
  /** Public mode (`--public`): bootstrap and provider addresses off this machine. */
  public: z.boolean().optional(),
  /** Public mode: also dial private-range addresses (`--allow-private-addrs`). */
  allowPrivateAddrs: z.boolean().optional(),
  /** The escrow a paid run pays through (`--escrow-version`): `v1` (default) or `v2` (AirqubeEscrowV2). */
  escrowVersion: z.enum(["v1", "v2"]).optional(),
  /** Bootstrap peers (`--bootstrap`; the flag wins, and this wins over AIRQUBE_BOOTSTRAP). */
  bootstrap: multiaddrs.optional(),
  /** Public mode: the requestor's own listen addresses (`--listen`), so that a provider behind NAT can dial back. */
  listen: multiaddrs.optional(),
  /** Public mode: addresses announced instead of the listen addresses (`--announce`). */
  announce: multiaddrs.optional(),
  /** Public mode: addresses announced besides the listen addresses (`--append-announce`). */
  appendAnnounce: multiaddrs.optional(),
});

export type RequestorConfig = z.infer<typeof requestorConfigSchema>;

/**
 * Reads and checks a requestor config file; `{}` without a file.
 *
 * @throws UserError `CONFIG_UNREADABLE` (missing, unreadable, too large) or `CONFIG_INVALID` (not JSON, not
 *   an object, unknown keys).
 * @example
 * const config = await readConfigFile(flags.config); // { golem?: {...} }
 */
export async function readConfigFile(file: string | undefined): Promise<RequestorConfig> {
  if (file === undefined) return {};
  let text: string;
  try {
    const bytes = await readFile(file);
    if (bytes.length > MAX_CONFIG_BYTES) throw new RangeError(`larger than ${MAX_CONFIG_BYTES} bytes`);
    text = bytes.toString("utf8");
  } catch (error) {
    throw new UserError("CONFIG_UNREADABLE", "Could not read the config file", {
      details: `${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      cause: error,
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UserError("CONFIG_INVALID", "The config file is not valid JSON", {
      details: `${file}: ${(error as Error).message}`,
      cause: error,
    });
  }
  const parsed = requestorConfigSchema.safeParse(value);
  if (!parsed.success) {
    throw new UserError("CONFIG_INVALID", "The config file is invalid", {
      details: `${file}: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}`,
    });
  }
  return parsed.data;
}

/**
 * The payment settings of `airqube run`: the chain's RPC URL, the escrow and the file holding the paying
 * key, from flags or the environment, validated with zod. The key is read from its file and never printed:
 * errors name the file, never its content.
 */
import { readFile, stat } from "node:fs/promises";
import type { Command } from "commander";
import { z } from "zod";
import { isLoopbackHost } from "../golem/config.js";
import { UserError } from "../qube/errors.js";

/** Largest key file accepted, in bytes (a hex key and a newline take 67). */
const MAX_KEY_FILE_BYTES = 1024;

/** The payment flags as commander hands them over. */
export interface PaymentFlags {
  rpcUrl?: string;
  escrow?: string;
  paymentKeyFile?: string;
  allowPublic?: boolean;
}

/** Validated payment settings. `privateKey` must never be logged or printed. */
export interface PaymentSettings {
  rpcUrl: string;
  escrow: string;
  keyFile: string;
  privateKey: string;
}

const targetSchema = z.strictObject({
  rpcUrl: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).max(2048),
  escrow: z.string().regex(/^0x[0-9a-fA-F]{40}$/, "must be a 0x-prefixed 20-byte address"),
});

const keySchema = z.string().regex(/^(0x)?[0-9a-fA-F]{64}$/);

/** The environment variables that stand in for the flags. */
export const PAYMENT_ENV = {
  rpcUrl: "AIRQUBE_RPC_URL",
  escrow: "AIRQUBE_ESCROW",
  keyFile: "AIRQUBE_PAYMENT_KEY_FILE",
} as const;

/**
 * Reads the payment settings (flags first, then `AIRQUBE_RPC_URL`, `AIRQUBE_ESCROW`,
 * `AIRQUBE_PAYMENT_KEY_FILE`). Returns `undefined` when none is set (the run is unpaid); all three or none.
 *
 * @throws UserError `PAYMENT_CONFIG_INVALID`, `RPC_URL_NOT_LOOPBACK` or `PAYMENT_KEY_INVALID`.
 * @example
 * const settings = await paymentSettingsFrom(flags, process.env);
 * if (settings) payments = await EscrowPayments.connect({ ...settings });
 */
export async function paymentSettingsFrom(
  flags: PaymentFlags,
  env: Record<string, string | undefined>,
): Promise<PaymentSettings | undefined> {
  const raw = {
    rpcUrl: flags.rpcUrl ?? (env[PAYMENT_ENV.rpcUrl] || undefined),
    escrow: flags.escrow ?? (env[PAYMENT_ENV.escrow] || undefined),
    keyFile: flags.paymentKeyFile ?? (env[PAYMENT_ENV.keyFile] || undefined),
  };
  const given = Object.values(raw).filter((v) => v !== undefined);
  if (given.length === 0) return undefined;
  if (given.length < 3) {
    const flagNames = { rpcUrl: "--rpc-url", escrow: "--escrow", keyFile: "--payment-key-file" } as const;
    const missing = (Object.keys(raw) as (keyof typeof raw)[])
      .filter((k) => raw[k] === undefined)
      .map((k) => `${flagNames[k]} (or ${PAYMENT_ENV[k]})`);
    throw new UserError("PAYMENT_CONFIG_INVALID", "A paid run needs the RPC URL, the escrow and the key file", {
      details: `missing ${missing.join(", ")}; \`airqube devnet up\` prints all three`,
    });
  }
  const { rpcUrl, escrow } = checkPaymentTarget(raw, Boolean(flags.allowPublic));
  const keyFile = raw.keyFile as string;
  if (keyFile.length > 4096)
    throw new UserError("PAYMENT_CONFIG_INVALID", "The payment settings are invalid", {
      details: "keyFile: longer than 4096 characters",
    });
  return { rpcUrl, escrow, keyFile, privateKey: await readKeyFile(keyFile) };
}

/**
 * Checks the chain's RPC URL and the escrow address (an RPC URL off this machine only with `allowPublic`).
 *
 * @throws UserError `PAYMENT_CONFIG_INVALID` or `RPC_URL_NOT_LOOPBACK`.
 */
export function checkPaymentTarget(
  raw: { rpcUrl?: string | undefined; escrow?: string | undefined },
  allowPublic: boolean,
): { rpcUrl: string; escrow: string } {
  const parsed = targetSchema.safeParse({ rpcUrl: raw.rpcUrl, escrow: raw.escrow });
  if (!parsed.success) {
    throw new UserError("PAYMENT_CONFIG_INVALID", "The payment settings are invalid", {
      details: parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "),
    });
  }
  const { rpcUrl, escrow } = parsed.data;
  if (!allowPublic && !isLoopbackHost(new URL(rpcUrl).hostname)) {
    throw new UserError("RPC_URL_NOT_LOOPBACK", "The RPC URL is not a loopback address", {
      details: `${rpcUrl}: use a node on this machine, or pass --allow-public on a real deployment`,
    });
  }
  return { rpcUrl, escrow };
}

/**
 * A hex private key (0x-prefixed or not) as ethers wants it; errors name `where`, never the key.
 *
 * @throws UserError `PAYMENT_KEY_INVALID`.
 */
export function parsePrivateKey(text: string, where: string): string {
  const key = text.trim();
  if (!keySchema.safeParse(key).success) {
    throw new UserError("PAYMENT_KEY_INVALID", "That is not a private key", {
      details: `${where}: expected 64 hex digits (0x-prefixed or not)`,
    });
  }
  return key.startsWith("0x") ? key : `0x${key}`;
}

/** Reads a hex private key from a file, checking its size first; errors never include the content. */
async function readKeyFile(path: string): Promise<string> {
  let text: string;
  try {
    const info = await stat(path);
    if (!info.isFile() || info.size > MAX_KEY_FILE_BYTES) {
      throw new UserError("PAYMENT_KEY_INVALID", "The payment key file is not a key file", {
        details: `${path}: expected a small file holding one hex private key`,
      });
    }
    text = (await readFile(path, "utf8")).trim();
  } catch (error) {
    if (error instanceof UserError) throw error;
    throw new UserError("PAYMENT_KEY_INVALID", "Could not read the payment key file", {
      details: `${path}: ${(error as NodeJS.ErrnoException).code ?? "unreadable"}`,
      cause: error,
    });
  }
  return parsePrivateKey(text, path);
}

/**
 * Adds the pay-on-agreement flags every paying command takes (`run`, `convert-pdf`): `--rpc-url`, `--escrow`,
 * `--payment-key-file` and `--allow-public-rpc`.
 */
export function addPaymentOptions(command: Command): Command {
  return command
    .option("--rpc-url <url>", "pay on agreement: JSON-RPC URL of the chain (default $AIRQUBE_RPC_URL)")
    .option("--escrow <address>", "pay on agreement: the AirqubeEscrow contract (default $AIRQUBE_ESCROW)")
    .option(
      "--payment-key-file <file>",
      "pay on agreement: file holding the paying account's hex private key (default $AIRQUBE_PAYMENT_KEY_FILE)",
    )
    .option("--allow-public-rpc", "pay on agreement: allow a chain RPC URL off this machine");
}

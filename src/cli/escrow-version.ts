/** The `--escrow-version` flag (`v1` or `v2`) of `run`, `provider start` and `devnet up`/`demo`. */
import { UserError } from "../qube/errors.js";
import { EscrowPayments } from "../requestor/payments.js";
import { EscrowV2Payments } from "../requestor/payments-v2.js";

/**
 * Parses `v1`, `v2`, `1` or `2`.
 *
 * @throws UserError `ESCROW_VERSION_INVALID` for anything else.
 * @example
 * parseEscrowVersion("v2"); // 2
 */
export function parseEscrowVersion(value: string): 1 | 2 {
  if (value === "v1" || value === "1") return 1;
  if (value === "v2" || value === "2") return 2;
  throw new UserError("ESCROW_VERSION_INVALID", "The escrow version must be v1 or v2", { details: value });
}

/**
 * Connects the paying account to the escrow of `version` (`settings.escrow` is an AirqubeEscrow for 1, an
 * AirqubeEscrowV2 for 2).
 *
 * @throws ChainError `CHAIN_UNREACHABLE` or `CHAIN_INVALID_RESPONSE`.
 */
export async function connectPayments(
  settings: { rpcUrl: string; escrow: string; privateKey: string },
  version: 1 | 2,
  options: { signal?: AbortSignal } = {},
): Promise<EscrowPayments | EscrowV2Payments> {
  const config = { rpcUrl: settings.rpcUrl, escrow: settings.escrow, privateKey: settings.privateKey };
  return version === 2 ? EscrowV2Payments.connect(config, options) : EscrowPayments.connect(config, options);
}

/**
 * The escrow version of a command: `--escrow-version` (or the running devnet's profile), else
 * `AIRQUBE_ESCROW_VERSION`, else the config file's `escrowVersion`, else v1.
 *
 * @throws UserError `ESCROW_VERSION_INVALID` for a value other than v1 or v2.
 */
export function escrowVersionOf(
  flag: string | undefined,
  config: { escrowVersion?: string },
  env: Record<string, string | undefined> = process.env,
): 1 | 2 {
  const value = flag ?? (env.AIRQUBE_ESCROW_VERSION || undefined) ?? config.escrowVersion;
  return value === undefined ? 1 : parseEscrowVersion(value);
}

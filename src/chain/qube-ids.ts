/**
 * Conversions between Airqube's off-chain identifiers and the escrow's bytes32 words: a qube id
 * `aq1<64 hex>` and an outputs root `sha256:<64 hex>` both carry 32 bytes, written `0x<64 hex>` on chain.
 */
import { UserError } from "../qube/errors.js";

const QUBE_ID = /^aq1([0-9a-f]{64})$/;
const ROOT = /^sha256:([0-9a-f]{64})$/;
const SALT = /^(?:0x)?([0-9a-fA-F]{64})$/;

/**
 * The qube id as the escrow's `qubeId` word.
 *
 * @example
 * qubeIdToBytes32("aq1" + "ab".repeat(32)); // "0xabab…"
 */
export function qubeIdToBytes32(qubeId: string): string {
  const m = QUBE_ID.exec(qubeId);
  if (!m) throw new UserError("ESCROW_JOB_INVALID", "Not a qube id", { details: qubeId.slice(0, 80) });
  return `0x${m[1]}`;
}

/**
 * An outputs root (`sha256:<hex>`) as the escrow's `outputsRoot` word.
 *
 * @example
 * rootToBytes32("sha256:" + "00".repeat(32)); // "0x0000…"
 */
export function rootToBytes32(root: string): string {
  const m = ROOT.exec(root);
  if (!m) throw new UserError("ESCROW_JOB_INVALID", "Not an outputs root", { details: root.slice(0, 80) });
  return `0x${m[1]}`;
}

/** The escrow's `outputsRoot` word back as an outputs root (`sha256:<hex>`). */
export function bytes32ToRoot(word: string): string {
  return `sha256:${word.replace(/^0x/, "").toLowerCase()}`;
}

/** A 32-byte salt (hex, with or without `0x`) as a bytes32 word. */
export function saltToBytes32(salt: string): string {
  const m = SALT.exec(salt);
  if (!m) throw new UserError("ESCROW_JOB_INVALID", "Not a 32-byte salt");
  return `0x${m[1]!.toLowerCase()}`;
}

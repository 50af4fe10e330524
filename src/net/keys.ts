/** Key files in a data directory: the libp2p/signing identity and the payout wallet, created on first use (mode 0600). */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Wallet } from "ethers";
import { Identity, UserError } from "../qube/index.js";

/** Loads `identity.key` (libp2p protobuf private key) from `dir`, creating it when absent. */
export function loadOrCreateIdentity(dir: string): Identity {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return loadOrCreateKeyFile(join(dir, "identity.key"));
}

/**
 * Loads a libp2p protobuf private key from `path`, creating it (mode 0600, its folder 0700) when absent: the
 * persistent identity of a bootnode, whose peer id everyone's bootstrap address names.
 *
 * @throws UserError `KEY_INVALID` (unreadable or corrupt), `KEY_FILE_UNWRITABLE`.
 * @example
 * const identity = loadOrCreateKeyFile("/var/lib/airqube/bootnode.key");
 */
export function loadOrCreateKeyFile(path: string): Identity {
  if (!existsSync(path)) {
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    } catch (error) {
      throw new UserError("KEY_FILE_UNWRITABLE", "Could not create the key file's folder", {
        details: path,
        cause: error,
      });
    }
    const identity = Identity.fromSeed(randomBytes(32));
    try {
      writeFileSync(path, identity.toLibp2pPrivateKey(), { mode: 0o600, flag: "wx" });
    } catch (error) {
      throw new UserError("KEY_FILE_UNWRITABLE", "Could not write the key file", { details: path, cause: error });
    }
    return identity;
  }
  try {
    return Identity.fromLibp2pPrivateKey(readFileSync(path));
  } catch (error) {
    throw new UserError("KEY_INVALID", "The identity key file is unreadable or corrupt", {
      details: path,
      cause: error,
    });
  }
}

/** Loads `payout.key` (an EVM private key, hex) from `dir`, creating it when absent; returns the wallet. */
export function loadOrCreatePayoutWallet(dir: string): Wallet {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, "payout.key");
  if (!existsSync(path)) {
    const wallet = new Wallet(`0x${randomBytes(32).toString("hex")}`);
    writeFileSync(path, `${wallet.privateKey}\n`, { mode: 0o600, flag: "wx" });
    return wallet;
  }
  try {
    return new Wallet(readFileSync(path, "utf8").trim());
  } catch (error) {
    throw new UserError("KEY_INVALID", "The payout key file is unreadable or corrupt", { details: path, cause: error });
  }
}

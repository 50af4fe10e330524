/**
 * Airqube identities: one Ed25519 key is a party's libp2p peer identity and its signing key, so a
 * provider's peer id IS its public signing key. The same seed also derives the X25519 key that inputs are
 * sealed to (HKDF-SHA256, info "airqube/sealing-key/v1"), so one key file serves libp2p, signatures and
 * sealing. All crypto is node:crypto; `@libp2p/crypto` and `@libp2p/peer-id` are used only for the key file
 * and peer id encodings. Pure: seeds are passed in, never generated here.
 */
import {
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  type KeyObject,
  sign as nodeSign,
  verify as nodeVerify,
} from "node:crypto";
import { privateKeyFromProtobuf, privateKeyFromRaw, privateKeyToProtobuf, publicKeyFromRaw } from "@libp2p/crypto/keys";
import { peerIdFromPublicKey, peerIdFromString } from "@libp2p/peer-id";
import { bytesEqual, concatBytes } from "./bytes.js";
import { signingMessage } from "./domains.js";
import { UserError } from "./errors.js";
import { type Source, sourceError } from "./fault.js";

const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519 = Buffer.from("302a300506032b6570032100", "hex");
const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");
const SPKI_X25519 = Buffer.from("302a300506032b656e032100", "hex");

/** Length of Ed25519 and X25519 seeds, public keys and shared secrets. */
export const KEY_BYTES = 32;
/** Length of an Ed25519 signature. */
export const SIGNATURE_BYTES = 64;

/** Someone inputs can be sealed to: the X25519 public key and the agreement with it. */
export interface SealingKey {
  /** Raw X25519 public key (32 bytes). */
  readonly publicKey: Uint8Array;
  /** X25519 shared secret with `peerPublicKey`; throws a PeerError on a low-order point. */
  agree(peerPublicKey: Uint8Array): Uint8Array;
}

/**
 * A party's key pair. Never serialises its secret: `toJSON()` gives the public parts only;
 * `toLibp2pPrivateKey()` is the one explicit way to export the seed (as a libp2p key file).
 */
export class Identity {
  readonly peerId: string;
  /** Raw Ed25519 public key (32 bytes). */
  readonly publicKey: Uint8Array;
  /** The X25519 key inputs are sealed to, derived from the same seed. */
  readonly sealing: SealingKey;
  readonly #seed: Uint8Array;
  readonly #signingKey: KeyObject;

  private constructor(seed: Uint8Array) {
    this.#seed = Uint8Array.from(seed);
    this.#signingKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, seed]), format: "der", type: "pkcs8" });
    this.publicKey = rawPublic(createPublicKey(this.#signingKey));
    this.peerId = peerIdFromEd25519PublicKey(this.publicKey);
    const sealingSeed = new Uint8Array(
      hkdfSync("sha256", seed, new Uint8Array(0), "airqube/sealing-key/v1", KEY_BYTES),
    );
    this.sealing = sealingKeyFromSeed(sealingSeed);
  }

  /**
   * The identity of a 32-byte Ed25519 seed (RFC 8032 private key).
   *
   * @example
   * const me = Identity.fromSeed(randomBytes(32)); // the caller supplies randomness
   */
  static fromSeed(seed: Uint8Array): Identity {
    if (!(seed instanceof Uint8Array) || seed.byteLength !== KEY_BYTES) {
      throw new UserError("KEY_INVALID", "An Ed25519 seed must be 32 bytes");
    }
    return new Identity(seed);
  }

  /**
   * The identity of a libp2p private key file (protobuf `PrivateKey`, as written by
   * `privateKeyToProtobuf`); only Ed25519 keys are accepted.
   */
  static fromLibp2pPrivateKey(protobuf: Uint8Array): Identity {
    let key: ReturnType<typeof privateKeyFromProtobuf>;
    try {
      key = privateKeyFromProtobuf(protobuf);
    } catch (error) {
      throw new UserError("KEY_INVALID", "Not a libp2p private key", { cause: error });
    }
    if (key.type !== "Ed25519") {
      throw new UserError("KEY_INVALID", "Airqube identities must be Ed25519 keys", { details: `got ${key.type}` });
    }
    const identity = new Identity(key.raw.subarray(0, KEY_BYTES));
    if (!bytesEqual(identity.publicKey, key.raw.subarray(KEY_BYTES))) {
      throw new UserError("KEY_INVALID", "The libp2p key's public half does not match its seed");
    }
    return identity;
  }

  /** The libp2p protobuf private key file for this identity (secret: handle like the key itself). */
  toLibp2pPrivateKey(): Uint8Array {
    return privateKeyToProtobuf(privateKeyFromRaw(concatBytes(this.#seed, this.publicKey)));
  }

  /**
   * Signs canonical bytes under a domain-separated kind (see `signingMessage`).
   *
   * @example
   * const sig = me.sign("offer", canonicalBytes(offer));
   */
  sign(kind: string, canonical: Uint8Array): Uint8Array {
    return new Uint8Array(nodeSign(null, signingMessage(kind, canonical), this.#signingKey));
  }

  /** The public parts only (`JSON.stringify` never writes a secret). */
  toJSON(): { peerId: string } {
    return { peerId: this.peerId };
  }
}

/**
 * Checks an Ed25519 signature of `kind` over canonical bytes, by a raw public key or a peer id.
 * Returns false on any mismatch or malformed key/signature (never throws for bad input).
 */
export function verifySignature(
  kind: string,
  canonical: Uint8Array,
  signature: Uint8Array,
  signer: Uint8Array | string,
): boolean {
  try {
    const raw = typeof signer === "string" ? ed25519PublicKeyFromPeerId(signer) : signer;
    if (raw.byteLength !== KEY_BYTES || signature.byteLength !== SIGNATURE_BYTES) return false;
    return nodeVerify(null, signingMessage(kind, canonical), ed25519KeyObject(raw), signature);
  } catch {
    return false;
  }
}

/**
 * The libp2p peer id string (base58btc identity multihash, "12D3KooW...") of a raw Ed25519 public key.
 *
 * @example
 * peerIdFromEd25519PublicKey(me.publicKey) === me.peerId; // true
 */
export function peerIdFromEd25519PublicKey(publicKey: Uint8Array): string {
  if (!(publicKey instanceof Uint8Array) || publicKey.byteLength !== KEY_BYTES) {
    throw new UserError("KEY_INVALID", "An Ed25519 public key must be 32 bytes");
  }
  return peerIdFromPublicKey(publicKeyFromRaw(publicKey)).toString();
}

/**
 * The raw Ed25519 public key inside a libp2p peer id string. Only the canonical base58btc form of an
 * Ed25519 peer id is accepted; throws `PEER_ID_INVALID` (PeerError by default) otherwise.
 */
export function ed25519PublicKeyFromPeerId(peerId: string, source: Source = "peer"): Uint8Array {
  const cached = typeof peerId === "string" ? peerIdCache.get(peerId) : undefined;
  if (cached !== undefined) return Uint8Array.from(cached);
  const fail = (details: string, cause?: unknown) =>
    sourceError(source, "PEER_ID_INVALID", "Invalid peer id", { details, cause });
  if (typeof peerId !== "string" || peerId.length === 0 || peerId.length > 128) throw fail("not a short string");
  let parsed: ReturnType<typeof peerIdFromString>;
  try {
    parsed = peerIdFromString(peerId);
  } catch (error) {
    throw fail("not a libp2p peer id", error);
  }
  if (parsed.type !== "Ed25519" || parsed.publicKey === undefined)
    throw fail(`a ${parsed.type} peer id, expected Ed25519`);
  if (parsed.toString() !== peerId) throw fail("not in canonical base58btc form");
  const raw = new Uint8Array(parsed.publicKey.raw);
  if (peerIdCache.size >= PEER_ID_CACHE_SIZE) peerIdCache.delete(peerIdCache.keys().next().value!);
  peerIdCache.set(peerId, raw);
  return Uint8Array.from(raw);
}

/** Memo of valid peer ids (pure function, parsed often: every envelope and statement names one). */
const PEER_ID_CACHE_SIZE = 1024;
const peerIdCache = new Map<string, Uint8Array>();

/** True when `peerId` is a canonical Ed25519 libp2p peer id. */
export function isEd25519PeerId(peerId: string): boolean {
  try {
    ed25519PublicKeyFromPeerId(peerId);
    return true;
  } catch {
    return false;
  }
}

/** An X25519 sealing key from a raw 32-byte X25519 private key (e.g. for test vectors). */
export function sealingKeyFromSeed(seed: Uint8Array): SealingKey {
  if (!(seed instanceof Uint8Array) || seed.byteLength !== KEY_BYTES) {
    throw new UserError("KEY_INVALID", "An X25519 private key must be 32 bytes");
  }
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, seed]), format: "der", type: "pkcs8" });
  const publicKey = rawPublic(createPublicKey(privateKey));
  return {
    publicKey,
    agree(peerPublicKey: Uint8Array): Uint8Array {
      return x25519(privateKey, peerPublicKey);
    },
  };
}

/** X25519 with a raw peer public key; throws PeerError `KEY_INVALID` on a bad or low-order key. */
export function x25519(privateKey: KeyObject, peerPublicKey: Uint8Array): Uint8Array {
  if (!(peerPublicKey instanceof Uint8Array) || peerPublicKey.byteLength !== KEY_BYTES) {
    throw sourceError("peer", "KEY_INVALID", "An X25519 public key must be 32 bytes");
  }
  let shared: Uint8Array;
  try {
    const publicKey = createPublicKey({
      key: Buffer.concat([SPKI_X25519, peerPublicKey]),
      format: "der",
      type: "spki",
    });
    shared = new Uint8Array(diffieHellman({ privateKey, publicKey }));
  } catch (error) {
    throw sourceError("peer", "KEY_INVALID", "X25519 key agreement failed", { cause: error });
  }
  if (shared.every((b) => b === 0)) throw sourceError("peer", "KEY_INVALID", "X25519 public key has low order");
  return shared;
}

const keyObjectCache = new Map<string, KeyObject>();

/** The node:crypto KeyObject of a raw Ed25519 public key (memoised: verifiers see the same keys again and again). */
function ed25519KeyObject(raw: Uint8Array): KeyObject {
  const hex = Buffer.from(raw).toString("hex");
  let key = keyObjectCache.get(hex);
  if (key === undefined) {
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw]), format: "der", type: "spki" });
    if (keyObjectCache.size >= PEER_ID_CACHE_SIZE) keyObjectCache.delete(keyObjectCache.keys().next().value!);
    keyObjectCache.set(hex, key);
  }
  return key;
}

function rawPublic(key: KeyObject): Uint8Array {
  return new Uint8Array(key.export({ format: "der", type: "spki" }).subarray(12));
}

/**
 * The sealed-stream format (v1): how inputs are encrypted to one provider for one qube.
 *
 *   header  = "aqsl" (4) || version 0x01 (1) || chunkSize u32 BE (4) || ephemeral X25519 public key (32)
 *   shared  = X25519(ephemeral private, recipient public)            (all-zero result rejected)
 *   okm     = HKDF-SHA256(ikm = shared, salt = "airqube/seal/v1",
 *                         info = header || qube id digest (32) || recipient public key (32), L = 39)
 *   key     = okm[0..32], prefix = okm[32..39]
 *   nonce_i = prefix (7) || i as u32 BE (4) || last flag (0x01 on the final chunk, else 0x00)
 *   chunk_i = ChaCha20-Poly1305(key, nonce_i, no AAD, plaintext_i) = ciphertext || 16-byte tag
 *   stream  = header || chunk_0 || ... || chunk_n
 *
 * Every plaintext chunk but the last holds exactly chunkSize bytes; the last holds 0..chunkSize bytes and
 * always exists (an empty input is one empty final chunk). This is the STREAM construction (Hoang,
 * Reyhanitabar, Rogaway, Vizár 2015): the counter detects reordering and dropped chunks, the last flag
 * detects truncation at a chunk boundary, and the key binds the header, the qube id and the recipient, so a
 * stream replayed under another qube id or to another recipient fails on its first chunk.
 */
import { createCipheriv, createDecipheriv, hkdfSync } from "node:crypto";
import { concatBytes, utf8 } from "./bytes.js";
import { PeerError, UserError } from "./errors.js";
import { KEY_BYTES } from "./identity.js";

/** The first 4 bytes of every sealed stream: `"aqsl"`. */
export const SEAL_MAGIC = utf8("aqsl");
/** The format version this code writes and reads. */
export const SEAL_VERSION = 1;
/** Header length in bytes: magic (4), version (1), chunk size (4), ephemeral X25519 public key (32). */
export const SEAL_HEADER_BYTES = 4 + 1 + 4 + KEY_BYTES;
/** Poly1305 tag length in bytes, appended to every chunk. */
export const SEAL_TAG_BYTES = 16;
/**
 * Default plaintext bytes per chunk: 256 KiB. Each chunk needs a fresh node:crypto cipher context, and with
 * OpenSSL 3 setting one up costs about 17 us, some 40% of encrypting 64 KiB; at 256 KiB the per-chunk cost
 * drops below 10% while an opener still holds only 256 KiB per stream.
 */
export const DEFAULT_CHUNK_SIZE = 256 * 1024;
/** Smallest chunk size the format allows, in bytes. */
export const MIN_CHUNK_SIZE = 64;
/** Largest chunk size the format allows, in bytes (16 MiB). */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
/** Largest chunk size an opener accepts unless told otherwise (bounds its memory). */
export const DEFAULT_MAX_OPEN_CHUNK_SIZE = 1024 * 1024;
/** Most chunks in one stream (the counter is 32 bits). */
export const MAX_CHUNKS = 2 ** 32;

const HKDF_SALT = utf8("airqube/seal/v1");

/** A parsed sealed-stream header. */
export interface SealHeader {
  version: number;
  chunkSize: number;
  ephemeralPublicKey: Uint8Array;
}

/** Encodes a header. */
export function encodeSealHeader(chunkSize: number, ephemeralPublicKey: Uint8Array): Uint8Array {
  checkChunkSize(chunkSize, MAX_CHUNK_SIZE);
  const out = new Uint8Array(SEAL_HEADER_BYTES);
  out.set(SEAL_MAGIC, 0);
  out[4] = SEAL_VERSION;
  new DataView(out.buffer).setUint32(5, chunkSize);
  out.set(ephemeralPublicKey, 9);
  return out;
}

/**
 * Decodes the first `SEAL_HEADER_BYTES` of a sealed stream. Throws PeerError `SEAL_HEADER_INVALID`
 * (wrong magic or version, chunk size out of range or above `maxChunkSize`) or `SEAL_TRUNCATED`.
 *
 * @example
 * const header = decodeSealHeader(firstBytes, { maxChunkSize: 1 << 20 });
 */
export function decodeSealHeader(bytes: Uint8Array, options: { maxChunkSize?: number } = {}): SealHeader {
  if (!(bytes instanceof Uint8Array)) throw new PeerError("SEAL_HEADER_INVALID", "Sealed data is not bytes");
  if (bytes.byteLength < SEAL_HEADER_BYTES) {
    throw new PeerError("SEAL_TRUNCATED", "Sealed data ends inside its header", {
      details: `${bytes.byteLength} bytes`,
    });
  }
  for (let i = 0; i < SEAL_MAGIC.length; i++) {
    if (bytes[i] !== SEAL_MAGIC[i]) throw new PeerError("SEAL_HEADER_INVALID", "Not Airqube sealed data (bad magic)");
  }
  if (bytes[4] !== SEAL_VERSION) {
    throw new PeerError("SEAL_HEADER_INVALID", "Unsupported sealed data version", { details: `version ${bytes[4]}` });
  }
  const chunkSize = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(5);
  const max = Math.min(options.maxChunkSize ?? DEFAULT_MAX_OPEN_CHUNK_SIZE, MAX_CHUNK_SIZE);
  if (chunkSize < MIN_CHUNK_SIZE || chunkSize > max) {
    throw new PeerError("SEAL_HEADER_INVALID", "Sealed data chunk size out of range", {
      details: `${chunkSize}, accepted ${MIN_CHUNK_SIZE}..${max}`,
    });
  }
  return { version: SEAL_VERSION, chunkSize, ephemeralPublicKey: bytes.slice(9, SEAL_HEADER_BYTES) };
}

/** The key and nonce prefix of one stream. */
export interface SealKeys {
  key: Uint8Array;
  prefix: Uint8Array;
}

/** HKDF step of the key schedule (see the file comment). */
export function deriveSealKeys(
  shared: Uint8Array,
  header: Uint8Array,
  qubeIdDigest: Uint8Array,
  recipientPublicKey: Uint8Array,
): SealKeys {
  const info = concatBytes(header, qubeIdDigest, recipientPublicKey);
  const okm = new Uint8Array(hkdfSync("sha256", shared, HKDF_SALT, info, 39));
  return { key: okm.subarray(0, 32), prefix: okm.subarray(32, 39) };
}

/** The 12-byte nonce of chunk `counter`. */
export function chunkNonce(prefix: Uint8Array, counter: number, last: boolean): Uint8Array {
  const nonce = new Uint8Array(12);
  nonce.set(prefix, 0);
  new DataView(nonce.buffer).setUint32(7, counter);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

/** Encrypts one chunk; returns [ciphertext, tag] (kept apart to avoid a copy). */
export function sealChunk(keys: SealKeys, counter: number, last: boolean, plain: Uint8Array): [Uint8Array, Uint8Array] {
  const cipher = createCipheriv("chacha20-poly1305", keys.key, chunkNonce(keys.prefix, counter, last), {
    authTagLength: SEAL_TAG_BYTES,
  });
  const ciphertext = cipher.update(plain);
  cipher.final();
  return [ciphertext, cipher.getAuthTag()];
}

/** Decrypts one chunk (ciphertext || tag); returns undefined when it does not authenticate. */
export function openChunk(keys: SealKeys, counter: number, last: boolean, sealed: Uint8Array): Uint8Array | undefined {
  if (sealed.byteLength < SEAL_TAG_BYTES) return undefined;
  const split = sealed.byteLength - SEAL_TAG_BYTES;
  const decipher = createDecipheriv("chacha20-poly1305", keys.key, chunkNonce(keys.prefix, counter, last), {
    authTagLength: SEAL_TAG_BYTES,
  });
  decipher.setAuthTag(sealed.subarray(split));
  const plain = decipher.update(sealed.subarray(0, split));
  try {
    decipher.final();
  } catch {
    return undefined;
  }
  return plain;
}

/** Throws UserError `SEAL_PARAMS_INVALID` for a chunk size outside MIN..max. */
export function checkChunkSize(chunkSize: number, max: number): void {
  if (!Number.isSafeInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > max) {
    throw new UserError("SEAL_PARAMS_INVALID", "Chunk size out of range", {
      details: `${chunkSize}, allowed ${MIN_CHUNK_SIZE}..${max}`,
    });
  }
}

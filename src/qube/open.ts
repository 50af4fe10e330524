/**
 * Opening sealed inputs (format in seal-format.ts). `StreamOpener` is the synchronous core: it holds at
 * most one sealed chunk (plus the one byte of lookahead that tells whether a chunk is the last), yields only
 * authenticated plaintext, and throws typed PeerErrors:
 * `SEAL_HEADER_INVALID`, `SEAL_AUTH_FAILED` (tampered or reordered chunk; on chunk 0 also a wrong qube id
 * or recipient), `SEAL_TRUNCATED`, `SEAL_TRAILING_DATA`, `SEAL_TOO_LARGE`, `SEAL_SIZE_MISMATCH`,
 * `SEAL_DIGEST_MISMATCH`.
 */
import { createHash, type Hash } from "node:crypto";
import { PeerError, UserError } from "./errors.js";
import type { SealingKey } from "./identity.js";
import { qubeIdBytes } from "./qube-id.js";
import { checkAborted } from "./seal.js";
import {
  DEFAULT_MAX_OPEN_CHUNK_SIZE,
  decodeSealHeader,
  deriveSealKeys,
  MAX_CHUNKS,
  openChunk,
  SEAL_HEADER_BYTES,
  SEAL_TAG_BYTES,
  type SealKeys,
} from "./seal-format.js";

/** What an opener needs and checks. */
export interface OpenParams {
  /** The qube the data must belong to. */
  qubeId: string;
  /** The recipient's sealing key (`identity.sealing`). */
  recipient: SealingKey;
  /** Largest chunk size accepted from the header (bounds memory). Default 1 MiB. */
  maxChunkSize?: number;
  /** Most plaintext bytes accepted. Default unlimited. */
  maxBytes?: number;
  /** If given, the plaintext must have exactly this many bytes (checked as it arrives and at the end). */
  expectedSize?: number;
  /** If given, the plaintext's SHA-256 (hex), checked at the end. */
  expectedSha256?: string;
}

/**
 * Synchronous STREAM opener. Feed sealed bytes to `update` and call `final` once; each yields verified
 * plaintext. Plaintext yielded before `final` returns is authenticated chunk by chunk, but the stream as a
 * whole (completeness, size, digest) is only proven once `final` has returned.
 *
 * @example
 * const o = new StreamOpener({ qubeId, recipient: me.sealing });
 * const plain = [...o.update(sealed), ...o.final()];
 */
export class StreamOpener {
  readonly #params: OpenParams;
  readonly #limit: number;
  #header = new Uint8Array(SEAL_HEADER_BYTES);
  #headerFill = 0;
  #keys: SealKeys | undefined;
  #buffer: Uint8Array | undefined;
  #fill = 0;
  #counter = 0;
  #total = 0;
  #hash: Hash | undefined;
  #done = false;

  constructor(params: OpenParams) {
    this.#params = params;
    qubeIdBytes(params.qubeId);
    if (params.expectedSha256 !== undefined && !/^[0-9a-f]{64}$/.test(params.expectedSha256)) {
      throw new UserError("SEAL_PARAMS_INVALID", "expectedSha256 must be 64 lower-case hex");
    }
    this.#limit = Math.min(params.maxBytes ?? Number.MAX_SAFE_INTEGER, params.expectedSize ?? Number.MAX_SAFE_INTEGER);
    this.#hash = params.expectedSha256 === undefined ? undefined : createHash("sha256");
  }

  /** Consumes sealed bytes; yields plaintext of every chunk known not to be the last. */
  *update(piece: Uint8Array): Generator<Uint8Array> {
    if (this.#done) throw new UserError("SEAL_FINISHED", "The opener was already finished");
    let offset = 0;
    if (this.#keys === undefined) {
      const take = Math.min(SEAL_HEADER_BYTES - this.#headerFill, piece.byteLength);
      this.#header.set(piece.subarray(0, take), this.#headerFill);
      this.#headerFill += take;
      offset = take;
      if (this.#headerFill < SEAL_HEADER_BYTES) return;
      this.#start();
    }
    const buffer = this.#buffer!;
    while (offset < piece.byteLength) {
      if (this.#fill === buffer.byteLength) {
        yield this.#open(buffer, false);
        this.#fill = 0;
      }
      const take = Math.min(buffer.byteLength - this.#fill, piece.byteLength - offset);
      buffer.set(piece.subarray(offset, offset + take), this.#fill);
      this.#fill += take;
      offset += take;
    }
  }

  /** Ends the stream: opens the final chunk and checks size and digest. */
  *final(): Generator<Uint8Array> {
    if (this.#done) throw new UserError("SEAL_FINISHED", "The opener was already finished");
    this.#done = true;
    if (this.#keys === undefined) {
      throw new PeerError("SEAL_TRUNCATED", "Sealed data ends inside its header", {
        details: `${this.#headerFill} bytes`,
      });
    }
    const last = this.#open(this.#buffer!.subarray(0, this.#fill), true);
    const { expectedSize, expectedSha256 } = this.#params;
    if (expectedSize !== undefined && this.#total !== expectedSize) {
      throw new PeerError("SEAL_SIZE_MISMATCH", "Sealed data has the wrong size", {
        details: `expected ${expectedSize} bytes, got ${this.#total}`,
      });
    }
    if (this.#hash !== undefined) {
      const digest = this.#hash.digest("hex");
      if (digest !== expectedSha256) {
        throw new PeerError("SEAL_DIGEST_MISMATCH", "Sealed data does not match its SHA-256", {
          details: `expected ${expectedSha256}, got ${digest}`,
        });
      }
    }
    if (last.byteLength > 0) yield last;
  }

  #start(): void {
    const header = decodeSealHeader(this.#header, {
      maxChunkSize: this.#params.maxChunkSize ?? DEFAULT_MAX_OPEN_CHUNK_SIZE,
    });
    const shared = this.#params.recipient.agree(header.ephemeralPublicKey);
    this.#keys = deriveSealKeys(
      shared,
      this.#header,
      qubeIdBytes(this.#params.qubeId),
      this.#params.recipient.publicKey,
    );
    this.#buffer = new Uint8Array(header.chunkSize + SEAL_TAG_BYTES);
  }

  #open(sealed: Uint8Array, last: boolean): Uint8Array {
    const keys = this.#keys!;
    const counter = this.#counter;
    if (counter >= MAX_CHUNKS) throw new PeerError("SEAL_TOO_LARGE", "Too many chunks in sealed data");
    const plain = openChunk(keys, counter, last, sealed);
    if (plain === undefined) throw this.#diagnose(sealed, last);
    this.#counter++;
    this.#total += plain.byteLength;
    if (this.#total > this.#limit) {
      const code =
        this.#params.expectedSize !== undefined && this.#total > this.#params.expectedSize
          ? "SEAL_SIZE_MISMATCH"
          : "SEAL_TOO_LARGE";
      throw new PeerError(code, "Sealed data is larger than allowed", { details: `more than ${this.#limit} bytes` });
    }
    this.#hash?.update(plain);
    return plain;
  }

  /** Names why chunk `counter` failed; only runs on the failure path. */
  #diagnose(sealed: Uint8Array, last: boolean): PeerError {
    const counter = this.#counter;
    if (last && sealed.byteLength < SEAL_TAG_BYTES) {
      return new PeerError("SEAL_TRUNCATED", "Sealed data ends inside a chunk", { details: `chunk ${counter}` });
    }
    if (last && openChunk(this.#keys!, counter, false, sealed) !== undefined) {
      return new PeerError("SEAL_TRUNCATED", "Sealed data is missing its final chunk", {
        details: `after chunk ${counter}`,
      });
    }
    if (!last && openChunk(this.#keys!, counter, true, sealed) !== undefined) {
      return new PeerError("SEAL_TRAILING_DATA", "Sealed data continues after its final chunk", {
        details: `final chunk ${counter}`,
      });
    }
    const hint = counter === 0 ? " (or sealed for another qube id or recipient)" : "";
    return new PeerError("SEAL_AUTH_FAILED", `Sealed data failed authentication${hint}`, {
      details: `chunk ${counter}: tampered, reordered, truncated or not for this qube and recipient`,
    });
  }
}

/**
 * Opens an async (or sync) iterable of sealed bytes into plaintext pieces, holding one chunk at a time.
 * Consumers must treat the data as unproven until the iteration completes without error.
 *
 * @example
 * for await (const plain of openStream(sealedPieces, { qubeId, recipient: me.sealing, expectedSha256 })) ...
 */
export async function* openStream(
  sealed: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  params: OpenParams,
  options: { signal?: AbortSignal } = {},
): AsyncGenerator<Uint8Array> {
  const opener = new StreamOpener(params);
  for await (const piece of sealed) {
    checkAborted(options.signal);
    if (!(piece instanceof Uint8Array)) throw new PeerError("SEAL_HEADER_INVALID", "Sealed data is not bytes");
    yield* opener.update(piece);
  }
  checkAborted(options.signal);
  yield* opener.final();
}

/**
 * Opens a whole sealed buffer.
 *
 * @example
 * const plain = openBytes(sealed, { qubeId, recipient: me.sealing, maxBytes: 1 << 20 });
 */
export function openBytes(sealed: Uint8Array, params: OpenParams): Uint8Array {
  if (!(sealed instanceof Uint8Array)) throw new PeerError("SEAL_HEADER_INVALID", "Sealed data is not bytes");
  const opener = new StreamOpener(params);
  const parts = [...opener.update(sealed), ...opener.final()];
  return new Uint8Array(Buffer.concat(parts));
}

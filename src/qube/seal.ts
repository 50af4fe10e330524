/**
 * Sealing inputs to a provider (format in seal-format.ts). `StreamSealer` is the synchronous core that
 * holds at most one chunk; `sealStream` wraps it for async iterables; `sealBytes` for whole buffers.
 */
import { TimeoutError, UserError } from "./errors.js";
import { sealingKeyFromSeed } from "./identity.js";
import { qubeIdBytes } from "./qube-id.js";
import {
  checkChunkSize,
  DEFAULT_CHUNK_SIZE,
  deriveSealKeys,
  encodeSealHeader,
  MAX_CHUNK_SIZE,
  MAX_CHUNKS,
  type SealKeys,
  sealChunk,
} from "./seal-format.js";

/** What a sealer needs. */
export interface SealParams {
  /** The qube the data belongs to; opening under another id fails. */
  qubeId: string;
  /** The recipient's raw X25519 sealing public key (`identity.sealing.publicKey`, published in its offer). */
  recipientPublicKey: Uint8Array;
  /**
   * 32 fresh random bytes, used once as the ephemeral X25519 private key. Reusing them for a second
   * stream to the same recipient and qube reuses the key stream: always pass new random bytes.
   */
  ephemeralSeed: Uint8Array;
  /** Plaintext bytes per chunk. Default 256 KiB (`DEFAULT_CHUNK_SIZE`). */
  chunkSize?: number;
}

/**
 * Synchronous STREAM sealer. Call `header` first, then `update` with each piece of plaintext and `final`
 * once; each yields sealed bytes to send in order. It buffers at most one chunk.
 *
 * @example
 * const s = new StreamSealer(params);
 * const out = [s.header, ...s.update(data), ...s.final()];
 */
export class StreamSealer {
  /** The stream header (send first). */
  readonly header: Uint8Array;
  readonly chunkSize: number;
  readonly #keys: SealKeys;
  readonly #buffer: Uint8Array;
  #fill = 0;
  #counter = 0;
  #done = false;

  constructor(params: SealParams) {
    const chunkSize = params.chunkSize ?? DEFAULT_CHUNK_SIZE;
    checkChunkSize(chunkSize, MAX_CHUNK_SIZE);
    if (!(params.ephemeralSeed instanceof Uint8Array) || params.ephemeralSeed.byteLength !== 32) {
      throw new UserError("SEAL_PARAMS_INVALID", "The ephemeral seed must be 32 random bytes");
    }
    const ephemeral = sealingKeyFromSeed(params.ephemeralSeed);
    const shared = ephemeral.agree(params.recipientPublicKey);
    this.chunkSize = chunkSize;
    this.header = encodeSealHeader(chunkSize, ephemeral.publicKey);
    this.#keys = deriveSealKeys(shared, this.header, qubeIdBytes(params.qubeId), params.recipientPublicKey);
    this.#buffer = new Uint8Array(chunkSize);
  }

  /** Seals what it can of `piece`; yields sealed bytes. A full chunk is held back until more data follows. */
  *update(piece: Uint8Array): Generator<Uint8Array> {
    if (this.#done) throw new UserError("SEAL_FINISHED", "The sealer was already finished");
    const size = this.chunkSize;
    let offset = 0;
    while (offset < piece.byteLength) {
      if (this.#fill === size) {
        // More data follows the buffered full chunk, so it is not the last one.
        yield* this.#emit(this.#buffer, false);
        this.#fill = 0;
      }
      const remaining = piece.byteLength - offset;
      if (this.#fill === 0 && remaining > size) {
        // Zero-copy: a whole chunk inside `piece` with data after it.
        yield* this.#emit(piece.subarray(offset, offset + size), false);
        offset += size;
        continue;
      }
      const take = Math.min(size - this.#fill, remaining);
      this.#buffer.set(piece.subarray(offset, offset + take), this.#fill);
      this.#fill += take;
      offset += take;
    }
  }

  /** Seals the buffered rest as the final chunk. */
  *final(): Generator<Uint8Array> {
    if (this.#done) throw new UserError("SEAL_FINISHED", "The sealer was already finished");
    this.#done = true;
    yield* this.#emit(this.#buffer.subarray(0, this.#fill), true);
    this.#fill = 0;
  }

  *#emit(plain: Uint8Array, last: boolean): Generator<Uint8Array> {
    if (this.#counter >= MAX_CHUNKS) throw new UserError("SEAL_TOO_LARGE", "Too many chunks for one sealed stream");
    const [ciphertext, tag] = sealChunk(this.#keys, this.#counter, last, plain);
    this.#counter++;
    if (ciphertext.byteLength > 0) yield ciphertext;
    yield tag;
  }
}

/**
 * Seals an async (or sync) iterable of plaintext pieces into sealed bytes, holding one chunk at a time.
 *
 * @example
 * for await (const bytes of sealStream(fileChunks, { qubeId, recipientPublicKey, ephemeralSeed: randomBytes(32) }))
 *   await write(bytes);
 */
export async function* sealStream(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  params: SealParams,
  options: { signal?: AbortSignal } = {},
): AsyncGenerator<Uint8Array> {
  const sealer = new StreamSealer(params);
  yield sealer.header;
  for await (const piece of source) {
    checkAborted(options.signal);
    yield* sealer.update(piece);
  }
  checkAborted(options.signal);
  yield* sealer.final();
}

/**
 * Seals a whole buffer (header and all chunks, concatenated).
 *
 * @example
 * const sealed = sealBytes(plain, { qubeId, recipientPublicKey, ephemeralSeed: randomBytes(32) });
 */
export function sealBytes(plain: Uint8Array, params: SealParams): Uint8Array {
  const sealer = new StreamSealer(params);
  const parts = [sealer.header, ...sealer.update(plain), ...sealer.final()];
  return new Uint8Array(Buffer.concat(parts));
}

/** Throws TimeoutError `ABORTED` if the signal fired. */
export function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new TimeoutError("ABORTED", "Aborted", { cause: signal.reason });
}

/**
 * Streaming sealed data over a Wire: files are sealed chunk by chunk (STREAM construction of src/qube) and
 * sent as byte frames, so memory stays bounded whatever the size; the receiver opens each piece as it arrives.
 */
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { PeerError, type SealingKey, StreamOpener, StreamSealer } from "../../qube/index.js";
import type { Wire } from "../wire.js";
import { withDeadline } from "../wire.js";
import { SEAL_CHUNK_BYTES, TRANSFER_FRAME_TIMEOUT_MS } from "./constants.js";
import { QubeCancelledError } from "./errors.js";
import { cancelSchema } from "./messages.js";

/** Seals an async source of plaintext to `recipientPublicKey` and sends it as byte frames. */
export async function sendSealed(
  wire: Wire,
  source: AsyncIterable<Uint8Array>,
  params: { qubeId: string; recipientPublicKey: Uint8Array },
  options: { signal?: AbortSignal } = {},
): Promise<number> {
  const sealer = new StreamSealer({ ...params, ephemeralSeed: randomBytes(32), chunkSize: SEAL_CHUNK_BYTES });
  const send = (bytes: Uint8Array) =>
    wire.sendBytes(bytes, { signal: withDeadline(TRANSFER_FRAME_TIMEOUT_MS, options.signal) });
  let plainBytes = 0;
  await send(sealer.header);
  for await (const piece of source) {
    plainBytes += piece.byteLength;
    for (const sealed of sealer.update(piece)) await send(sealed);
  }
  for (const sealed of sealer.final()) await send(sealed);
  return plainBytes;
}

/** Reads a file as an async source (for `sendSealed`). */
export function fileSource(path: string): AsyncIterable<Uint8Array> {
  return createReadStream(path, { highWaterMark: SEAL_CHUNK_BYTES }) as AsyncIterable<Uint8Array>;
}

/**
 * Receives byte frames up to (excluding) the next JSON message, opening them as a sealed stream addressed to
 * `recipient`, and yields verified plaintext. The caller must consume the whole iterator; the stream as a
 * whole is proven only when the iterator completes. Returns the JSON message that ended the stream; a
 * `cancel` message throws {@link QubeCancelledError}.
 */
export async function* receiveSealed(
  wire: Wire,
  params: { qubeId: string; recipient: SealingKey; maxBytes: number; expectedSize?: number; expectedSha256?: string },
  options: { signal?: AbortSignal } = {},
): AsyncGenerator<Uint8Array, unknown> {
  const opener = new StreamOpener({
    qubeId: params.qubeId,
    recipient: params.recipient,
    maxBytes: params.maxBytes,
    maxChunkSize: SEAL_CHUNK_BYTES,
    ...(params.expectedSize !== undefined ? { expectedSize: params.expectedSize } : {}),
    ...(params.expectedSha256 !== undefined ? { expectedSha256: params.expectedSha256 } : {}),
  });
  for (;;) {
    const frame = await wire.receiveFrame({ signal: withDeadline(TRANSFER_FRAME_TIMEOUT_MS, options.signal) });
    if (frame.kind === "json") {
      // a cancel in the middle of a transfer ends it as a cancel, not as a truncated stream
      const cancel = cancelSchema.safeParse(frame.value);
      if (cancel.success) throw new QubeCancelledError(cancel.data.reason);
      yield* opener.final();
      return frame.value;
    }
    yield* opener.update(frame.data);
  }
}

/** Writes an async source of bytes to a new file (never overwriting), returning the byte count. */
export async function writeNewFile(path: string, source: AsyncIterable<Uint8Array>): Promise<number> {
  let handle: FileHandle | undefined;
  let total = 0;
  try {
    handle = await open(path, "wx", 0o644);
    for await (const piece of source) {
      await handle.write(piece);
      total += piece.byteLength;
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST")
      throw new PeerError("INPUT_DUPLICATE", "Input delivered twice", { details: path });
    throw error;
  } finally {
    await handle?.close();
  }
  return total;
}

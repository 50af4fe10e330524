/**
 * gsb-api/v1 of the loopback yagna (specs/gsb-api.yaml, gsb-api-messages.yaml): a requestor binds services
 * under a GSB address (`POST /services`), then opens the WebSocket `/services/{servicesId}?authToken=` on
 * which the bus delivers requests to those services as flexbuffers `{id, component, payload}` and takes the
 * answers `{id, payload}` or `{id, error}`. Here the requests come from the simulated providers' exe-units,
 * which use the gftp components: `GetMetadata`/`GetChunk` to fetch a file the requestor published, and
 * `UploadChunk`/`UploadFinished` to send one to the requestor.
 */
import { createHash, randomUUID } from "node:crypto";
import { open } from "node:fs/promises";
import { encode, toObject } from "flatbuffers/js/flexbuffers.js";
import { z } from "zod";
import { HttpError } from "./util.js";
import type { ServerWebSocket } from "./websocket.js";

/** Size of the chunks the exe-unit asks for and sends (yagna's gftp uses 40 KiB; any size works). */
export const GFTP_CHUNK = 64 * 1024;
/** How long the exe-unit waits for the requestor to answer one GSB request. */
const GSB_REQUEST_MS = 10_000;

export const bindSchema = z.object({
  listen: z.object({
    on: z.string().regex(/^\/public\/gftp\/[A-Za-z0-9_-]{1,128}$/),
    components: z
      .array(z.enum(["GetMetadata", "GetChunk", "UploadChunk", "UploadFinished"]))
      .min(1)
      .max(4),
  }),
});

interface Bound {
  id: string;
  on: string;
  components: string[];
  socket?: ServerWebSocket;
  pending: Map<string, { resolve: (payload: unknown) => void; reject: (error: Error) => void }>;
  /** Resolves when the requestor's WebSocket is open. */
  connected: Promise<void>;
  onConnected: () => void;
}

const answerSchema = z.union([
  z.object({ id: z.string(), payload: z.unknown(), error: z.undefined().optional() }),
  z.object({ id: z.string(), error: z.record(z.string(), z.unknown()) }),
]);

/** The bound services and the requests in flight. */
export class GsbBus {
  private readonly services = new Map<string, Bound>();
  /** `UploadChunk` requests the exe-units sent (a refused transfer stops early). */
  chunksSent = 0;
  /** Every bind and unbind, for the leak check. */
  readonly ledger = { bound: [] as string[], unbound: [] as string[] };

  bind(body: unknown): { listen: { on: string; components: string[] }; servicesId: string } {
    const parsed = bindSchema.safeParse(body);
    if (!parsed.success) throw new HttpError(400, `invalid services request: ${parsed.error.message}`);
    const { on, components } = parsed.data.listen;
    const id = Buffer.from(`${on}#${randomUUID()}`).toString("base64url");
    let onConnected = () => {};
    const connected = new Promise<void>((resolve) => {
      onConnected = resolve;
    });
    this.services.set(id, { id, on, components, pending: new Map(), connected, onConnected });
    this.ledger.bound.push(id);
    return { listen: { on, components }, servicesId: id };
  }

  unbind(id: string): void {
    const service = this.services.get(id);
    if (!service) throw new HttpError(404, `no services ${id}`);
    this.services.delete(id);
    this.ledger.unbound.push(id);
    for (const p of service.pending.values()) p.reject(new HttpError(500, "Cancelled: the services were unbound"));
    service.pending.clear();
    service.socket?.close();
  }

  has(id: string): boolean {
    return this.services.has(id);
  }

  /** Attaches the requestor's WebSocket to its bound services. */
  attach(id: string, socket: ServerWebSocket): void {
    const service = this.services.get(id);
    if (!service) {
      socket.close(1008);
      return;
    }
    service.socket?.close();
    service.socket = socket;
    socket.on("message", (data) => {
      let answer: z.infer<typeof answerSchema>;
      try {
        const copy = new Uint8Array(data.byteLength);
        copy.set(data);
        answer = answerSchema.parse(toObject(copy.buffer));
      } catch {
        return socket.close(1007);
      }
      const waiting = service.pending.get(answer.id);
      if (!waiting) return;
      service.pending.delete(answer.id);
      if (answer.error) waiting.reject(new HttpError(500, `GSB error: ${JSON.stringify(answer.error)}`));
      else waiting.resolve(answer.payload);
    });
    socket.on("close", () => {
      for (const p of service.pending.values()) p.reject(new HttpError(500, "the requestor's GSB socket closed"));
      service.pending.clear();
    });
    service.onConnected();
  }

  /** Open services ids (leak check). */
  open(): string[] {
    return [...this.services.keys()];
  }

  /** Sends one request to the service bound at `address` + `/component` and waits for its answer. */
  async call(address: string, component: string, payload: unknown, signal?: AbortSignal): Promise<unknown> {
    const service = [...this.services.values()].find((s) => s.on === address && s.components.includes(component));
    if (!service) throw new HttpError(404, `no service at ${address}/${component}`);
    await Promise.race([service.connected, sleepReject(GSB_REQUEST_MS, "the requestor never opened its socket")]);
    const socket = service.socket;
    if (!socket?.isOpen) throw new HttpError(500, `the requestor's socket for ${address} is closed`);
    const id = randomUUID();
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => fail(new HttpError(500, `GSB ${component} timed out`)), GSB_REQUEST_MS);
      const onAbort = () => fail(new HttpError(500, `GSB ${component} aborted`));
      function fail(error: Error) {
        service!.pending.delete(id);
        done();
        reject(error);
      }
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      }
      service.pending.set(id, {
        resolve: (value) => {
          done();
          resolve(value);
        },
        reject: (error) => {
          done();
          reject(error);
        },
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      socket.send(encode({ id, component, payload }));
    });
  }

  /**
   * Fetches the file published at `url` (`gftp://<node>/<file id>`) into `path`, refusing more than
   * `maxBytes`. Returns its size.
   */
  async fetchFile(url: string, path: string, maxBytes: number, signal?: AbortSignal): Promise<number> {
    const address = gftpAddress(url);
    const meta = z
      .object({ fileSize: z.number().int().min(0) })
      .parse(await this.call(address, "GetMetadata", {}, signal));
    if (meta.fileSize > maxBytes) throw new HttpError(500, `file of ${meta.fileSize} bytes is over ${maxBytes}`);
    const file = await open(path, "w", 0o644);
    try {
      for (let offset = 0; offset < meta.fileSize; ) {
        const size = Math.min(GFTP_CHUNK, meta.fileSize - offset);
        const chunk = z
          .object({ offset: z.number(), content: z.instanceof(Uint8Array) })
          .parse(await this.call(address, "GetChunk", { offset, size }, signal));
        if (chunk.offset !== offset || chunk.content.byteLength === 0 || chunk.content.byteLength > size)
          throw new HttpError(500, `bad chunk at ${offset}`);
        await file.write(chunk.content, 0, chunk.content.byteLength, offset);
        offset += chunk.content.byteLength;
      }
    } finally {
      await file.close();
    }
    return meta.fileSize;
  }

  /**
   * Sends `data` to the receiver bound at `url`: `UploadChunk` for each chunk, then `UploadFinished` with the
   * SHA3-256 of what was sent (or `hashOverride`, to play a provider whose hash does not match; `offsetShift`
   * misplaces every chunk).
   */
  async sendData(
    url: string,
    data: Uint8Array,
    options: { hashOverride?: string; offsetShift?: number; signal?: AbortSignal } = {},
  ) {
    const address = gftpAddress(url);
    for (let offset = 0; offset < data.byteLength; offset += GFTP_CHUNK) {
      // a standalone copy: flexbuffers encodes a typed array's whole backing buffer
      const content = data.slice(offset, offset + GFTP_CHUNK);
      this.chunksSent++;
      const at = offset + (options.offsetShift ?? 0);
      await this.call(address, "UploadChunk", { chunk: { offset: at, content } }, options.signal);
    }
    const hash = options.hashOverride ?? createHash("sha3-256").update(data).digest("hex");
    await this.call(address, "UploadFinished", { hash }, options.signal);
  }

  close(): void {
    for (const id of [...this.services.keys()]) this.unbind(id);
  }
}

/** `gftp://<node id>/<file id>` → the GSB address `/public/gftp/<file id>`. */
export function gftpAddress(url: string): string {
  const match = /^gftp:\/\/(0x[0-9a-fA-F]{40})\/([A-Za-z0-9_-]{1,128})$/.exec(url);
  if (!match) throw new HttpError(400, `not a gftp URL: ${url}`);
  return `/public/gftp/${match[2]}`;
}

function sleepReject(ms: number, message: string): Promise<never> {
  return new Promise((_, reject) => setTimeout(() => reject(new HttpError(500, message)), ms).unref());
}

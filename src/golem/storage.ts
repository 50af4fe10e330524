/**
 * Airqube's own golem-js storage provider: files move between the requestor and a provider's exe-unit over
 * yagna's service bus, as golem-js's WebSocket provider does (bind a GSB service with `POST
 * /gsb-api/v1/services`, then serve the gftp requests that arrive as flexbuffers on the WebSocket
 * `/gsb-api/v1/services/{id}`), with three differences that matter for untrusted providers:
 *
 * - downloads stream: each `UploadChunk` goes to the callback (or the file) as it arrives, in order, so a cap
 *   checked there bounds memory; nothing is buffered whole;
 * - the SHA3-256 the provider announces in `UploadFinished` is checked with `node:crypto`, incrementally
 *   (golem-js's check throws `jsSha3.sha3_256 is not a function` under ESM, from a socket listener, which
 *   crashes the process);
 * - nothing a provider sends can throw out of a listener: a bad message is answered with a GSB error and
 *   recorded as the outcome of the transfer (`outcome(url)`), which the caller awaits.
 *
 * @example
 * const storage = new YagnaStorageProvider({ apiUrl: config.apiUrl, appKey: config.appKey });
 * const glm = new GolemNetwork({ api: { url, key }, override: { storageProvider: storage } });
 */
import { createHash, type Hash, randomUUID } from "node:crypto";
import { type FileHandle, open, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import type { StorageProvider } from "@golem-sdk/golem-js";
import type { Logger as PinoLogger } from "pino";
import { z } from "zod";
import { PeerError, PlatformError, TimeoutError } from "../qube/index.js";

/** flexbuffers as golem-js itself loads it (its own dependency, resolved from its package). */
const flex = createRequire(import.meta.resolve("@golem-sdk/golem-js"))("flatbuffers/js/flexbuffers.js") as {
  encode(value: unknown): Uint8Array;
  toObject(buffer: ArrayBuffer): unknown;
};

/** Largest chunk a provider may ask for in one `GetChunk`. */
export const MAX_CHUNK_BYTES = 4 * 1024 * 1024;
/** How long yagna may take to bind a service and open its socket. */
const BIND_TIMEOUT_MS = 10_000;

const requestSchema = z.object({ id: z.string().min(1).max(256), component: z.string().max(64), payload: z.unknown() });
const getChunkSchema = z.object({
  offset: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  size: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
});
const uploadChunkSchema = z.object({
  chunk: z.object({ offset: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER), content: z.instanceof(Uint8Array) }),
});
const uploadFinishedSchema = z.object({ hash: z.string().regex(/^[0-9a-fA-F]{64}$/) });
const identitySchema = z.object({ identity: z.string().regex(/^0x[0-9a-fA-F]{40}$/) });
const servicesSchema = z.object({ servicesId: z.string().min(1).max(1024) });

/** Options of {@link YagnaStorageProvider}. */
export interface YagnaStorageOptions {
  /** yagna's REST base URL, e.g. `http://127.0.0.1:7465`. */
  apiUrl: string;
  appKey: string;
  logger?: PinoLogger;
}

interface Entry {
  servicesId: string;
  socket: WebSocket;
  file?: FileHandle;
  /** Settles when a download ends: resolves on a matching hash, rejects on any failure. */
  outcome?: Deferred;
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(error: Error): void;
  settled: boolean;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // awaited through outcome(); never an unhandled rejection
  const d: Deferred = {
    promise,
    settled: false,
    resolve: () => {
      if (d.settled) return;
      d.settled = true;
      resolve();
    },
    reject: (error) => {
      if (d.settled) return;
      d.settled = true;
      reject(error);
    },
  };
  return d;
}

/** What a download does with each chunk: in order, never the whole file at once. */
type Sink = (chunk: Uint8Array) => void | Promise<void>;

/**
 * A golem-js `StorageProvider` over yagna's GSB WebSocket API that streams downloads, checks their SHA3-256
 * with `node:crypto`, and never lets a provider's message throw out of a listener. See the module comment.
 */
export class YagnaStorageProvider implements StorageProvider {
  private readonly entries = new Map<string, Entry>();
  private ready = false;
  private me: Promise<string> | undefined;

  constructor(private readonly options: YagnaStorageOptions) {}

  async init(): Promise<void> {
    this.ready = true;
  }

  isReady(): boolean {
    return this.ready;
  }

  async close(): Promise<void> {
    this.ready = false;
    await this.release([...this.entries.keys()]);
  }

  async publishFile(srcPath: string): Promise<string> {
    const { size } = await stat(srcPath);
    const file = await open(srcPath, "r");
    try {
      return await this.serve(["GetMetadata", "GetChunk"], { file }, (component, payload) =>
        this.readChunk(component, payload, size, async (buffer, offset) => {
          const { bytesRead } = await file.read(buffer, 0, buffer.byteLength, offset);
          return buffer.subarray(0, bytesRead);
        }),
      );
    } catch (error) {
      await file.close().catch(() => undefined);
      throw error;
    }
  }

  async publishData(data: Uint8Array): Promise<string> {
    return this.serve(["GetMetadata", "GetChunk"], {}, (component, payload) =>
      this.readChunk(component, payload, data.byteLength, async (buffer, offset) => {
        const part = data.subarray(offset, offset + buffer.byteLength);
        buffer.set(part);
        return buffer.subarray(0, part.byteLength);
      }),
    );
  }

  /** Streams a download to `callback`, chunk by chunk in order; see {@link outcome} for how it ended. */
  async receiveData(callback: (data: Uint8Array) => void): Promise<string> {
    return this.receive(callback);
  }

  /** Streams a download into `destPath` (created 0600); see {@link outcome} for how it ended. */
  async receiveFile(destPath: string): Promise<string> {
    const file = await open(destPath, "w", 0o600);
    try {
      return await this.receive(async (chunk) => {
        await file.write(chunk);
      }, file);
    } catch (error) {
      await file.close().catch(() => undefined);
      throw error;
    }
  }

  /**
   * How the download bound at `url` ended: resolves once the provider finished with a matching SHA3-256;
   * rejects with PeerError `GOLEM_DOWNLOAD_CORRUPT` (hash), `GOLEM_DOWNLOAD_INVALID` (bad or out-of-order
   * chunk), the sink's error (e.g. a cap), or `GOLEM_DOWNLOAD_UNFINISHED` when released before the end.
   */
  outcome(url: string): Promise<void> {
    const entry = this.entries.get(url);
    if (!entry?.outcome)
      return Promise.reject(new PeerError("GOLEM_DOWNLOAD_UNKNOWN", "No download at this URL", { details: url }));
    return entry.outcome.promise;
  }

  async release(urls: string[]): Promise<void> {
    await Promise.all(
      urls.map(async (url) => {
        const entry = this.entries.get(url);
        if (!entry) return;
        this.entries.delete(url);
        entry.outcome?.reject(
          new PeerError("GOLEM_DOWNLOAD_UNFINISHED", "The provider did not finish the transfer", { details: url }),
        );
        entry.socket.close();
        await entry.file?.close().catch(() => undefined);
        await this.request("DELETE", `/gsb-api/v1/services/${encodeURIComponent(entry.servicesId)}`).catch((error) =>
          this.options.logger?.debug({ error, url }, "could not unbind a GSB service"),
        );
      }),
    );
  }

  private async receive(sink: Sink, file?: FileHandle): Promise<string> {
    const outcome = deferred();
    const hash: Hash = createHash("sha3-256");
    let expected = 0;
    return this.serve(
      ["UploadChunk", "UploadFinished"],
      { outcome, ...(file ? { file } : {}) },
      async (component, payload) => {
        if (outcome.settled)
          throw new PeerError("GOLEM_DOWNLOAD_INVALID", "The transfer has ended", { details: component });
        try {
          if (component === "UploadChunk") {
            const { chunk } = uploadChunkSchema.parse(payload);
            if (chunk.offset !== expected)
              throw new PeerError("GOLEM_DOWNLOAD_INVALID", "The provider sent a chunk out of order", {
                details: `offset ${chunk.offset}, expected ${expected}`,
              });
            expected += chunk.content.byteLength;
            hash.update(chunk.content);
            await sink(chunk.content);
            return null;
          }
          if (component === "UploadFinished") {
            const announced = uploadFinishedSchema.parse(payload).hash.toLowerCase();
            const actual = hash.digest("hex");
            if (announced !== actual)
              throw new PeerError("GOLEM_DOWNLOAD_CORRUPT", "The download does not match the provider's SHA3-256", {
                details: `${actual} != ${announced}`,
              });
            outcome.resolve();
            return null;
          }
          throw new PeerError("GOLEM_DOWNLOAD_INVALID", "Unexpected GSB request", { details: component });
        } catch (error) {
          const wrapped =
            error instanceof z.ZodError
              ? new PeerError("GOLEM_DOWNLOAD_INVALID", "The provider sent a malformed transfer message", {
                  details: `${component}: ${error.message.slice(0, 300)}`,
                })
              : error;
          outcome.reject(wrapped as Error);
          throw wrapped;
        }
      },
    );
  }

  private async readChunk(
    component: string,
    payload: unknown,
    size: number,
    read: (buffer: Uint8Array, offset: number) => Promise<Uint8Array>,
  ): Promise<unknown> {
    if (component === "GetMetadata") return { fileSize: size };
    if (component !== "GetChunk")
      throw new PeerError("GOLEM_UPLOAD_INVALID", "Unexpected GSB request", { details: component });
    const request = getChunkSchema.parse(payload);
    if (request.offset > size)
      throw new PeerError("GOLEM_UPLOAD_INVALID", "Chunk past the end of the file", {
        details: String(request.offset),
      });
    // a standalone buffer: flexbuffers encodes a typed array's whole backing buffer
    const buffer = new Uint8Array(Math.min(request.size, MAX_CHUNK_BYTES, size - request.offset));
    return { content: await read(buffer, request.offset), offset: request.offset };
  }

  /** Binds a GSB service for `components` and answers its requests one at a time with `handle`. */
  private async serve(
    components: string[],
    extra: Pick<Entry, "file" | "outcome">,
    handle: (component: string, payload: unknown) => Promise<unknown>,
  ): Promise<string> {
    if (!this.ready) throw new PlatformError("GOLEM_STORAGE_NOT_READY", "The storage provider is not initialised");
    const fileId = randomUUID();
    const me = await this.identity();
    const bound = servicesSchema.parse(
      await this.request("POST", "/gsb-api/v1/services", { listen: { on: `/public/gftp/${fileId}`, components } }),
    );
    const wsUrl = new URL(`/gsb-api/v1/services/${encodeURIComponent(bound.servicesId)}`, this.options.apiUrl);
    wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";
    wsUrl.searchParams.set("authToken", this.options.appKey);
    const socket = new WebSocket(wsUrl, ["gsb+flexbuffers"]);
    socket.binaryType = "arraybuffer";
    const url = `gftp://${me}/${fileId}`;
    this.entries.set(url, { servicesId: bound.servicesId, socket, ...extra });
    let queue = Promise.resolve();
    socket.addEventListener("message", (event) => {
      queue = queue.then(() => this.answer(socket, event.data, handle));
    });
    socket.addEventListener("close", () =>
      this.entries
        .get(url)
        ?.outcome?.reject(new PeerError("GOLEM_DOWNLOAD_UNFINISHED", "The GSB socket closed", { details: url })),
    );
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new TimeoutError("GOLEM_STORAGE_TIMEOUT", "yagna did not open the GSB socket in time")),
          BIND_TIMEOUT_MS,
        );
        socket.addEventListener(
          "open",
          () => {
            clearTimeout(timer);
            resolve();
          },
          { once: true },
        );
        socket.addEventListener(
          "error",
          () => {
            clearTimeout(timer);
            reject(new PlatformError("GOLEM_STORAGE_FAILED", "Could not open the GSB socket"));
          },
          { once: true },
        );
      });
    } catch (error) {
      await this.release([url]);
      throw error;
    }
    return url;
  }

  /** Decodes one request, runs the handler, answers `{id, payload}` or `{id, error}`; never throws. */
  private async answer(
    socket: WebSocket,
    data: unknown,
    handle: (component: string, payload: unknown) => Promise<unknown>,
  ): Promise<void> {
    let id = "";
    try {
      if (!(data instanceof ArrayBuffer)) throw new PeerError("GSB_MESSAGE_INVALID", "Not a binary GSB message");
      const request = requestSchema.parse(flex.toObject(data));
      id = request.id;
      const payload = await handle(request.component, request.payload);
      if (socket.readyState === WebSocket.OPEN) socket.send(flex.encode({ id, payload }));
    } catch (error) {
      this.options.logger?.warn({ error: (error as Error)?.message }, "refused a GSB transfer request");
      if (id && socket.readyState === WebSocket.OPEN)
        socket.send(
          flex.encode({ id, error: { InternalError: String((error as Error)?.message ?? error).slice(0, 500) } }),
        );
    }
  }

  private identity(): Promise<string> {
    this.me ??= this.request("GET", "/me").then((body) => identitySchema.parse(body).identity.toLowerCase());
    this.me.catch(() => {
      this.me = undefined;
    });
    return this.me;
  }

  private async request(method: string, path: string, body?: unknown): Promise<unknown> {
    let response: Response;
    try {
      response = await fetch(new URL(path, this.options.apiUrl), {
        method,
        headers: {
          authorization: `Bearer ${this.options.appKey}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(BIND_TIMEOUT_MS),
      });
    } catch (error) {
      throw new PlatformError("GOLEM_STORAGE_FAILED", "yagna did not answer", {
        details: `${method} ${path}`,
        cause: error,
      });
    }
    const text = await response.text().catch(() => "");
    if (!response.ok)
      throw new PlatformError("GOLEM_STORAGE_FAILED", "yagna refused a storage request", {
        details: `${method} ${path}: ${response.status} ${text.slice(0, 200)}`,
      });
    try {
      return text ? JSON.parse(text) : undefined;
    } catch (error) {
      throw new PlatformError("GOLEM_STORAGE_FAILED", "yagna answered with invalid JSON", {
        details: `${method} ${path}`,
        cause: error,
      });
    }
  }
}

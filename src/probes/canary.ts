/**
 * The egress canary: a TCP listener on 127.0.0.1 (random port) that answers every connection with a random
 * token and closes. A sandbox without network cannot reach the host's loopback; one weakened with the host's
 * network can, and the probe then reads the token. The canary counts connections so the harness can confirm
 * a `fail` independently of what the probe prints.
 */
import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { PlatformError } from "../qube/errors.js";

export interface Canary {
  port: number;
  token: string;
  /** Connections accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

/**
 * Opens the canary on 127.0.0.1 (never any other address).
 *
 * @example
 * const canary = await openCanary();
 * try { ... } finally { await canary.close(); }
 */
export async function openCanary(options: { signal?: AbortSignal } = {}): Promise<Canary> {
  options.signal?.throwIfAborted();
  const token = randomBytes(16).toString("hex");
  let connections = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    socket.setTimeout(2000, () => socket.destroy());
    socket.end(token);
  });
  server.maxConnections = 64;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error) =>
      reject(new PlatformError("CANARY_FAILED", "Could not open the egress canary on 127.0.0.1", { cause: error })),
    );
    server.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => resolve());
  });
  const address = server.address();
  if (!address || typeof address === "string") {
    server.close();
    throw new PlatformError("CANARY_FAILED", "The egress canary has no TCP port");
  }
  return {
    port: address.port,
    token,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

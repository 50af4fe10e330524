/**
 * The server side of RFC 6455, as much as yagna's GSB endpoint needs: the opening handshake on an HTTP
 * `upgrade`, binary and text messages (fragmented or not, masked as clients must), ping/pong and close.
 * Messages are capped; a protocol violation closes the connection.
 */
import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** Largest message accepted from a client (a GftpChunk answer is at most a chunk plus a few bytes). */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/**
 * One accepted WebSocket connection. Events: `message` (Buffer), `close`.
 */
export class ServerWebSocket extends EventEmitter<{ message: [Buffer]; close: [] }> {
  private buffer = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  private closed = false;

  constructor(private readonly socket: Duplex) {
    super();
    socket.on("data", (data: Buffer) => this.receive(data));
    socket.on("close", () => this.finish());
    socket.on("error", () => this.finish());
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Sends one binary message (unmasked, as a server must). */
  send(data: Uint8Array): void {
    if (this.closed) return;
    this.socket.write(frame(0x2, Buffer.from(data.buffer, data.byteOffset, data.byteLength)));
  }

  /** Sends a close frame and ends the connection. */
  close(code = 1000): void {
    if (this.closed) return;
    const body = Buffer.alloc(2);
    body.writeUInt16BE(code);
    this.socket.write(frame(0x8, body));
    this.socket.end();
    this.finish();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    this.emit("close");
  }

  private receive(data: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, data]);
    for (;;) {
      const parsed = parseFrame(this.buffer);
      if (parsed === "incomplete") return;
      if (parsed === "invalid") {
        this.close(1002);
        return;
      }
      this.buffer = this.buffer.subarray(parsed.length);
      const { fin, opcode, payload } = parsed;
      if (opcode === 0x8) {
        this.close();
        return;
      }
      if (opcode === 0x9) {
        this.socket.write(frame(0xa, payload));
        continue;
      }
      if (opcode === 0xa) continue;
      this.fragments.push(payload);
      if (this.fragments.reduce((n, f) => n + f.length, 0) > MAX_MESSAGE_BYTES) {
        this.close(1009);
        return;
      }
      if (fin) {
        const message = Buffer.concat(this.fragments);
        this.fragments = [];
        this.emit("message", message);
      }
    }
  }
}

function frame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.alloc(2) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  head[0] = 0x80 | opcode;
  if (n < 126) head[1] = n;
  else if (n < 65536) {
    head[1] = 126;
    head.writeUInt16BE(n, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload]);
}

function parseFrame(
  buffer: Buffer,
): "incomplete" | "invalid" | { fin: boolean; opcode: number; payload: Buffer; length: number } {
  if (buffer.length < 2) return "incomplete";
  const b0 = buffer[0]!;
  const b1 = buffer[1]!;
  if ((b1 & 0x80) === 0) return "invalid"; // clients must mask
  let length = b1 & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (buffer.length < 4) return "incomplete";
    length = buffer.readUInt16BE(2);
    offset = 4;
  } else if (length === 127) {
    if (buffer.length < 10) return "incomplete";
    const big = buffer.readBigUInt64BE(2);
    if (big > BigInt(MAX_MESSAGE_BYTES)) return "invalid";
    length = Number(big);
    offset = 10;
  }
  if (length > MAX_MESSAGE_BYTES) return "invalid";
  if (buffer.length < offset + 4 + length) return "incomplete";
  const mask = buffer.subarray(offset, offset + 4);
  const payload = Buffer.from(buffer.subarray(offset + 4, offset + 4 + length));
  for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ mask[i % 4]!;
  return { fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload, length: offset + 4 + length };
}

/**
 * Completes the opening handshake of an `upgrade` request (answering with `protocol` when the client offered
 * it) and returns the connection, or answers 400 and returns undefined.
 */
export function acceptWebSocket(req: IncomingMessage, socket: Duplex, protocol?: string): ServerWebSocket | undefined {
  const key = req.headers["sec-websocket-key"];
  if (typeof key !== "string" || req.headers.upgrade?.toLowerCase() !== "websocket") {
    socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    return undefined;
  }
  const accept = createHash("sha1")
    .update(key + GUID)
    .digest("base64");
  const offered = String(req.headers["sec-websocket-protocol"] ?? "")
    .split(",")
    .map((p) => p.trim());
  const lines = [
    "HTTP/1.1 101 Switching Protocols",
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Accept: ${accept}`,
    ...(protocol && offered.includes(protocol) ? [`Sec-WebSocket-Protocol: ${protocol}`] : []),
  ];
  socket.write(`${lines.join("\r\n")}\r\n\r\n`);
  return new ServerWebSocket(socket);
}

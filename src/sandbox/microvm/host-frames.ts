/**
 * The host-to-VM half of the micro-VM channel: after the VM's init says hello, the host sends the one qube it
 * will run as frames in the init channel's framing (1 byte type, u32 BE length, payload):
 *   'L' limits (10 x u64 BE; the last is the CPU share in thousandths of a CPU, for the qube's cpu.max)
 *   'A' argv element   'V' "KEY=VALUE"   'P' declared output path
 *   'F' input file start (path relative to /input)   'D' input file data   'G' go
 * `encodeQubeHead` (pure) encodes everything before the inputs; `qubeFrames` streams the whole qube, reading
 * each input file in frame-sized chunks as the VM takes them, so host memory does not grow with the inputs.
 * The VM side is src/sandbox/microvm/native/vm-init.c.
 */
import { createReadStream } from "node:fs";
import { UserError } from "../../qube/errors.js";
import type { SandboxLimits } from "../api.js";
import { FRAME_MAX } from "../channel.js";

/** One input file on the host (its size taken when the qube was checked), with its path relative to /input. */
export interface VmInput {
  path: string;
  /** The file to read. */
  source: string;
  /** Its size in bytes: exactly this much is sent, and a file that changed size fails the run. */
  size: number;
}

export interface VmQube {
  command: string[];
  env: Record<string, string>;
  outputs: string[];
  inputs: VmInput[];
  limits: SandboxLimits;
}

/** Encodes one frame. Payloads above the frame cap are the caller's bug, except 'D' which `encodeQube` splits. */
export function frame(type: string, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload;
  if (body.length > FRAME_MAX)
    throw new UserError("QUBE_FIELD_TOO_LONG", "A qube field is over 64 KiB", { details: type });
  const header = Buffer.alloc(5);
  header.write(type, 0, "latin1");
  header.writeUInt32BE(body.length, 1);
  return Buffer.concat([header, body]);
}

function text(type: string, value: string, what: string): Buffer {
  if (value.includes("\0")) throw new UserError("QUBE_FIELD_INVALID", `A qube ${what} contains a NUL byte`);
  return frame(type, value);
}

/** Encodes the qube's frames before its inputs (L, A, V, P); the inputs' sizes set the guest's input budget. */
export function encodeQubeHead(qube: VmQube): Buffer {
  const { limits } = qube;
  const inputBytes = qube.inputs.reduce((sum, input) => sum + input.size + 4096, 0);
  const values = [
    limits.wallTimeMs,
    limits.memoryBytes,
    limits.pids,
    limits.scratchBytes,
    limits.logBytes,
    limits.output.maxFileBytes,
    limits.output.maxTotalBytes,
    limits.output.maxFiles,
    inputBytes,
    // the qube's cgroup gets cpu.max from this: a fractional share is enforced even on a whole vCPU
    limits.cpus * 1000,
  ];
  const limitsPayload = Buffer.alloc(8 * values.length);
  values.forEach((value, index) => {
    limitsPayload.writeBigUInt64BE(BigInt(Math.ceil(value)), index * 8);
  });
  const parts = [frame("L", limitsPayload)];
  for (const arg of qube.command) parts.push(text("A", arg, "command argument"));
  for (const [key, value] of Object.entries(qube.env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key))
      throw new UserError("ENV_INVALID", "Invalid environment name", { details: key });
    parts.push(text("V", `${key}=${value}`, "environment entry"));
  }
  for (const path of qube.outputs) parts.push(text("P", path, "output path"));
  for (const input of qube.inputs) text("F", input.path, "input path"); // checked before anything is sent
  return Buffer.concat(parts);
}

/**
 * The whole qube as frames, ending with 'G': the head, then each input as 'F' and 'D' frames read from its file
 * in chunks of at most FRAME_MAX bytes (one chunk in memory at a time).
 *
 * @throws UserError `INPUT_CHANGED` when a file no longer has the size it had when the qube was checked.
 */
export async function* qubeFrames(qube: VmQube): AsyncGenerator<Buffer> {
  yield encodeQubeHead(qube);
  for (const input of qube.inputs) {
    yield text("F", input.path, "input path");
    let sent = 0;
    if (input.size > 0) {
      const stream = createReadStream(input.source, { start: 0, end: input.size - 1, highWaterMark: FRAME_MAX });
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        sent += chunk.length;
        yield frame("D", chunk);
      }
    }
    if (sent !== input.size)
      throw new UserError("INPUT_CHANGED", "An input file changed while it was sent", {
        details: `${input.path}: ${sent} of ${input.size} bytes`,
      });
  }
  yield frame("G");
}

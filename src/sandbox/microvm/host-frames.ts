/**
 * The host-to-VM half of the micro-VM channel: after the VM's init says hello, the host sends the one qube it
 * will run as frames in the init channel's framing (1 byte type, u32 BE length, payload):
 *   'L' limits (10 x u64 BE; the last is the CPU share in thousandths of a CPU, for the qube's cpu.max)
 *   'A' argv element   'V' "KEY=VALUE"   'P' declared output path
 *   'F' input file start (path relative to /input)   'D' input file data   'G' go
 * Pure: `encodeQube` turns a checked qube into bytes. The VM side is src/sandbox/microvm/native/vm-init.c.
 */
import { UserError } from "../../qube/errors.js";
import type { SandboxLimits } from "../api.js";
import { FRAME_MAX } from "../channel.js";

/** One input file, already read, with its path relative to /input. */
export interface VmInput {
  path: string;
  data: Buffer;
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

/** Encodes the whole qube, ending with 'G'. */
export function encodeQube(qube: VmQube): Buffer {
  const { limits } = qube;
  const inputBytes = qube.inputs.reduce((sum, input) => sum + input.data.length + 4096, 0);
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
  for (const input of qube.inputs) {
    parts.push(text("F", input.path, "input path"));
    for (let offset = 0; offset < input.data.length; offset += FRAME_MAX) {
      parts.push(frame("D", input.data.subarray(offset, offset + FRAME_MAX)));
    }
  }
  parts.push(frame("G"));
  return Buffer.concat(parts);
}

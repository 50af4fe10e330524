/**
 * A writer of the `newc` cpio format, the only format the Linux kernel unpacks as an initramfs. Pure apart
 * from the sink it writes to: entries are appended in order, and `finish` writes the `TRAILER!!!` record.
 */
import type { Writable } from "node:stream";
import { InternalError } from "../../qube/errors.js";

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

/** One entry of an initramfs. Paths are relative (`bin/sh`), without a leading `/`. */
export type CpioEntry =
  | { type: "file"; path: string; mode: number; data: Buffer; uid?: number; gid?: number }
  | { type: "directory"; path: string; mode: number; uid?: number; gid?: number }
  | { type: "symlink"; path: string; target: string; uid?: number; gid?: number };

const hex8 = (value: number): string => (value >>> 0).toString(16).padStart(8, "0");
const pad4 = (length: number): Buffer => Buffer.alloc((4 - (length % 4)) % 4);

/** Encodes one cpio record (header, name, data), each padded to 4 bytes. */
export function encodeCpioRecord(ino: number, path: string, mode: number, data: Buffer, uid = 0, gid = 0): Buffer {
  const name = Buffer.from(`${path}\0`, "utf8");
  if (name.length > 4096) throw new InternalError("CPIO_NAME_TOO_LONG", "cpio entry name too long", { details: path });
  const fields = [ino, mode, uid, gid, 1, 0, data.length, 0, 0, 0, 0, name.length, 0];
  const header = Buffer.from(`070701${fields.map(hex8).join("")}`, "latin1");
  const headerAndName = Buffer.concat([header, name]);
  return Buffer.concat([headerAndName, pad4(headerAndName.length), data, pad4(data.length)]);
}

/** Encodes an entry (see {@link CpioEntry}). */
export function encodeCpioEntry(ino: number, entry: CpioEntry): Buffer {
  const uid = entry.uid ?? 0;
  const gid = entry.gid ?? 0;
  if (entry.type === "file")
    return encodeCpioRecord(ino, entry.path, S_IFREG | (entry.mode & 0o7777), entry.data, uid, gid);
  if (entry.type === "directory")
    return encodeCpioRecord(ino, entry.path, S_IFDIR | (entry.mode & 0o7777), Buffer.alloc(0), uid, gid);
  return encodeCpioRecord(ino, entry.path, S_IFLNK | 0o777, Buffer.from(entry.target, "utf8"), uid, gid);
}

/** The closing record of every cpio archive. */
export function cpioTrailer(): Buffer {
  return encodeCpioRecord(0, "TRAILER!!!", 0, Buffer.alloc(0));
}

/** Streams cpio entries into a sink, honouring back-pressure. */
export class CpioWriter {
  private ino = 1;
  constructor(private readonly sink: Writable) {}

  async add(entry: CpioEntry): Promise<void> {
    const record = encodeCpioEntry(this.ino++, entry);
    if (!this.sink.write(record)) await new Promise((resolve) => this.sink.once("drain", resolve));
  }

  /** Writes the trailer and ends the sink. */
  async finish(): Promise<void> {
    this.sink.write(cpioTrailer());
    await new Promise<void>((resolve, reject) => {
      this.sink.once("error", reject);
      this.sink.end(resolve);
    });
  }
}

/** Builds a whole archive in memory (small archives: the self-test initramfs, the benchmark's raw one). */
export function buildCpio(entries: CpioEntry[]): Buffer {
  return Buffer.concat([...entries.map((entry, index) => encodeCpioEntry(index + 1, entry)), cpioTrailer()]);
}

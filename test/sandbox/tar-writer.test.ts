import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import tar from "tar-stream";
import { packageRoot } from "../../src/package-root.js";

const run = promisify(execFile);

/**
 * The init's archive headers (src/sandbox/native/channel.c), compiled into a small host program that writes the
 * headers of three entries as 'T' frames: a 300-byte name with no '/' to split at (pax path), a 201-byte name
 * that splits into ustar's prefix and name fields, and a 9 GiB file (pax size: ustar's 11 octal digits end
 * below 8 GiB). Only headers are written, so nothing of the 9 GiB is streamed; tar-stream (the host's unpacker)
 * must read back every name and size exactly.
 */
const HARNESS = `
#include "channel.c"
int main(void) {
  static char nosplit[301], split[202];
  memset(nosplit, 'n', 300);
  memset(split, 'a', 150); split[150] = '/'; memset(split + 151, 'b', 50);
  tar_header(nosplit, '0', 0, 0644);
  tar_header(split, '0', 0, 0644);
  tar_header("output/huge", '0', 9ULL << 30, 0644);
  tar_flush();
  return 0;
}
`;

describe("sandbox: the init's tar headers (pax names and sizes)", function () {
  this.timeout(30_000);

  it("carries names past ustar's fields and sizes of 8 GiB and more, as the host's unpacker reads them", async () => {
    const dir = await mkdtemp(join(tmpdir(), "aq-tar-"));
    try {
      await writeFile(join(dir, "harness.c"), HARNESS);
      const native = join(packageRoot(), "src/sandbox/native");
      await run("gcc", ["-O1", "-I", native, "-o", join(dir, "harness"), join(dir, "harness.c")], {
        cwd: native,
      });
      const { stdout } = await run(join(dir, "harness"), [], { encoding: "buffer" });
      // strip the channel's frames: 1 byte type ('T'), 4 bytes big-endian length, payload
      const parts: Buffer[] = [];
      for (let at = 0; at < stdout.length; ) {
        expect(String.fromCharCode(stdout[at]!)).to.equal("T");
        const len = stdout.readUInt32BE(at + 1);
        parts.push(stdout.subarray(at + 5, at + 5 + len));
        at += 5 + len;
      }
      const entries: { name: string; size: number }[] = [];
      const extract = tar.extract();
      const done = new Promise<void>((resolve, reject) => {
        extract.on("entry", (header, stream, next) => {
          entries.push({ name: header.name, size: header.size ?? -1 });
          if (entries.length === 3) return resolve(); // the huge file's bytes were never written
          stream.resume();
          stream.on("end", next);
        });
        extract.on("error", reject);
      });
      extract.end(Buffer.concat(parts));
      await done;
      extract.destroy();
      expect(entries).to.deep.equal([
        { name: "n".repeat(300), size: 0 },
        { name: `${"a".repeat(150)}/${"b".repeat(50)}`, size: 0 },
        { name: "output/huge", size: 9 * 1024 ** 3 },
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

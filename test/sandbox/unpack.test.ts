import { mkdir, readdir, readFile, symlink } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "chai";
import tar from "tar-stream";
import { ChannelParser, HELLO } from "../../src/sandbox/channel.js";
import { unpackTar } from "../../src/sandbox/unpack.js";
import { tmp } from "../helpers/network.js";

type Entry = Parameters<ReturnType<typeof tar.pack>["entry"]>[0] & { body?: string };

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const { body, ...header } of entries) pack.entry(header, body ?? "");
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

const limits = { maxFileBytes: 1000, maxTotalBytes: 1500, maxFiles: 3 };
const one = async function* (b: Buffer) {
  yield b;
};

describe("sandbox: safe unpacker (qfile-unpacker rules)", () => {
  it("unpacks regular files and directories and hashes them", async () => {
    const dest = tmp("aq-unpack-");
    const files = await unpackTar(
      one(
        await tarOf([
          { name: "d/", type: "directory" },
          { name: "d/a.txt", body: "abc" },
        ]),
      ),
      dest,
      limits,
    );
    expect(files).to.deep.equal([
      { path: "d/a.txt", size: 3, sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
    ]);
    expect(await readFile(join(dest, "d/a.txt"), "utf8")).to.equal("abc");
  });

  const cases: [string, Entry[], string][] = [
    ["an absolute path", [{ name: "/etc/evil", body: "x" }], "ARCHIVE_BAD_PATH"],
    ["a path climbing out with ..", [{ name: "a/../../evil", body: "x" }], "ARCHIVE_BAD_PATH"],
    ["a symlink", [{ name: "link", type: "symlink", linkname: "/etc/passwd" }], "ARCHIVE_BAD_TYPE"],
    [
      "a hard link",
      [
        { name: "a", body: "x" },
        { name: "b", type: "link", linkname: "a" },
      ],
      "ARCHIVE_BAD_TYPE",
    ],
    ["a character device", [{ name: "tty", type: "character-device", devmajor: 5, devminor: 0 }], "ARCHIVE_BAD_TYPE"],
    ["a block device", [{ name: "sda", type: "block-device", devmajor: 8, devminor: 0 }], "ARCHIVE_BAD_TYPE"],
    ["a FIFO", [{ name: "pipe", type: "fifo" }], "ARCHIVE_BAD_TYPE"],
    ["a file over the per-file cap", [{ name: "big", body: "x".repeat(1001) }], "ARCHIVE_FILE_TOO_LARGE"],
    [
      "files over the total cap",
      [
        { name: "a", body: "x".repeat(800) },
        { name: "b", body: "x".repeat(800) },
      ],
      "ARCHIVE_TOO_LARGE",
    ],
    ["too many files", [1, 2, 3, 4].map((i) => ({ name: `f${i}`, body: "x" })), "ARCHIVE_TOO_MANY_FILES"],
    [
      "a duplicate path",
      [
        { name: "a", body: "1" },
        { name: "a", body: "2" },
      ],
      "ARCHIVE_DUPLICATE",
    ],
    ["a control character in a name", [{ name: "a\nb", body: "x" }], "ARCHIVE_BAD_PATH"],
  ];
  for (const [what, entries, code] of cases) {
    it(`rejects ${what} with ${code} and writes nothing`, async () => {
      const parent = tmp("aq-unpack-");
      const dest = join(parent, "out");
      const error = await unpackTar(one(await tarOf(entries)), dest, limits).catch((e) => e);
      expect(error.code).to.equal(code);
      expect(error.shortMessage).to.be.a("string").and.not.equal("");
      expect(await readdir(dest)).to.deep.equal([]);
      expect(await readdir(parent)).to.deep.equal(["out"]);
    });
  }

  it("rejects a truncated or garbage archive", async () => {
    const whole = await tarOf([{ name: "a", body: "x".repeat(600) }]);
    const dest = tmp("aq-unpack-");
    expect((await unpackTar(one(whole.subarray(0, 700)), dest, limits).catch((e) => e)).code).to.match(
      /ARCHIVE_MALFORMED/,
    );
    expect((await unpackTar(one(Buffer.alloc(1024, 0x41)), dest, limits).catch((e) => e)).code).to.equal(
      "ARCHIVE_MALFORMED",
    );
    expect(await readdir(dest)).to.deep.equal([]);
  });

  it("never follows a symlink that already exists in the destination", async () => {
    const dest = tmp("aq-unpack-");
    const outside = tmp("aq-outside-");
    await symlink(outside, join(dest, "d"));
    const error = await unpackTar(one(await tarOf([{ name: "d/a", body: "x" }])), dest, limits).catch((e) => e);
    expect(error.code).to.be.oneOf(["ARCHIVE_CONFLICT", "ARCHIVE_DUPLICATE"]);
    expect(await readdir(outside)).to.deep.equal([]);
  });

  it("refuses to overwrite what the destination already holds", async () => {
    const dest = tmp("aq-unpack-");
    await mkdir(join(dest, "a"));
    const error = await unpackTar(one(await tarOf([{ name: "a", body: "x" }])), dest, limits).catch((e) => e);
    expect(error.code).to.equal("ARCHIVE_CONFLICT");
  });
});

describe("sandbox: init channel parser (hostile sandbox output)", () => {
  const frame = (type: string, payload: Buffer | string) => {
    const body = Buffer.from(payload);
    const head = Buffer.alloc(5);
    head.write(type, 0, "latin1");
    head.writeUInt32BE(body.length, 1);
    return Buffer.concat([head, body]);
  };
  const hello = frame("H", HELLO);
  const exit0 = frame("X", Buffer.from([0, 0, 0, 0, 0]));
  const parse = (...chunks: Buffer[]) => {
    const parser = new ChannelParser({ logBytes: 10, maxArchiveBytes: 100 });
    parser.archive.resume();
    parser.archive.on("error", () => undefined);
    for (const c of chunks) parser.push(c);
    return { parser, result: parser.end() };
  };

  it("parses a well-formed stream and caps stdout with truncation reported", () => {
    const { parser, result } = parse(hello, frame("O", "0123456789abc"), frame("E", "err"), exit0, frame("Z", ""));
    expect(parser.error).to.equal(undefined);
    expect(result).to.deep.include({
      stdout: "0123456789",
      stdoutTruncated: true,
      stderr: "err",
      complete: true,
      exit: { kind: "exited", code: 0 },
    });
  });

  const bad: [string, Buffer[]][] = [
    ["no hello", [frame("O", "x")]],
    ["an unknown frame type", [hello, frame("Q", "x")]],
    ["an oversized frame", [hello, Buffer.from([0x4f, 0x00, 0x01, 0x00, 0x01])]],
    ["a truncated frame", [hello, frame("O", "hello").subarray(0, 7)]],
    ["outputs before the exit status", [hello, frame("T", "x")]],
    ["an exit reported twice", [hello, exit0, exit0]],
    ["data after the end", [hello, exit0, frame("Z", ""), frame("O", "x")]],
    ["outputs over the cap", [hello, exit0, frame("T", Buffer.alloc(101))]],
  ];
  for (const [what, chunks] of bad) {
    it(`rejects ${what} with CHANNEL_INVALID`, () => {
      const { parser } = parse(...chunks);
      expect(parser.error?.code).to.equal("CHANNEL_INVALID");
    });
  }
});

/**
 * Deterministic tar of a directory: sorted paths, regular files and directories only, fixed owner, mode and
 * time. Two hosts with the same files produce the same bytes. The counterpart of `unpackTar`.
 */
import { createReadStream } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import tar from "tar-stream";
import { UserError } from "../qube/errors.js";

const EPOCH = new Date(0);

async function listTree(root: string, prefix = ""): Promise<{ path: string; dir: boolean; size: number }[]> {
  const entries = (await readdir(join(root, prefix), { withFileTypes: true })).sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
  );
  const out: { path: string; dir: boolean; size: number }[] = [];
  for (const entry of entries) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    const info = await lstat(join(root, path));
    if (info.isDirectory()) {
      out.push({ path, dir: true, size: 0 });
      out.push(...(await listTree(root, path)));
    } else if (info.isFile()) out.push({ path, dir: false, size: info.size });
    else throw new UserError("PACK_UNSUPPORTED", "Only regular files and directories can be packed", { details: path });
  }
  return out;
}

/**
 * Streams a deterministic tar of `root`'s contents.
 *
 * @example
 * for await (const chunk of packDirectory("/jobs/1/outputs")) socket.write(chunk);
 */
export async function* packDirectory(root: string): AsyncGenerator<Uint8Array> {
  const entries = await listTree(root);
  const pack = tar.pack();
  const feeding = (async () => {
    try {
      for (const entry of entries) {
        const header = { name: entry.path, mtime: EPOCH, uid: 0, gid: 0, uname: "", gname: "" };
        if (entry.dir) {
          pack.entry({ ...header, type: "directory", mode: 0o755 });
          continue;
        }
        await new Promise<void>((resolve, reject) => {
          const sink = pack.entry({ ...header, type: "file", mode: 0o644, size: entry.size }, (error) =>
            error ? reject(error) : resolve(),
          );
          createReadStream(join(root, entry.path))
            .on("error", reject)
            .pipe(sink as unknown as NodeJS.WritableStream);
        });
      }
      pack.finalize();
    } catch (error) {
      pack.destroy(error as Error);
    }
  })();
  for await (const chunk of pack) yield chunk as Uint8Array;
  await feeding;
}

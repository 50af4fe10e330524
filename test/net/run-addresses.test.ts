/**
 * `airqube run --listen/--announce` refused before anything else happens (no chain, no image, no network, no
 * data directory): an address this host does not have (EADDRNOTAVAIL, 192.0.2.1 is TEST-NET-1 and on no
 * interface: binding it fails at once, nothing is sent), a non-loopback address outside public mode, and the
 * flags with the Golem backend; the same from the `--config` file's keys. The addresses at work across network namespaces: hostile-offer-netns.test.ts.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";

const BIN = join(process.cwd(), "bin", "airqube.js");
const BOOT = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWE87fYpjjsHDYYkH9WNWhVgCa7i642ZCUnFfrnYuxo6Xo";

describe("cli: run --listen and --announce (flags or config keys) are checked first", function () {
  this.timeout(120_000);
  const dir = mkdtempSync(join(tmpdir(), "aq-run-addresses-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** One `airqube run --json` with `extra` flags: its exit code and JSON error line. */
  const run = async (name: string, extra: string[]) => {
    const args = [
      BIN,
      "run",
      ...extra,
      "--bootstrap",
      BOOT,
      "--image",
      "airqube/busybox:latest",
      "--output",
      join(dir, `${name}-out`),
      "--data-dir",
      join(dir, name),
      "--json",
      "--",
      "true",
    ];
    const result = await promisify(execFile)(process.execPath, args, { timeout: 110_000 }).then(
      () => ({ code: 0, stdout: "" }),
      (error: { code: number; stdout: string }) => error,
    );
    const line = JSON.parse(result.stdout.trim().split("\n").at(-1) ?? "{}") as { error?: { code: string } };
    return { code: result.code, error: line.error?.code, touched: existsSync(join(dir, name)) };
  };

  it("refuses an address this host lacks, a non-loopback one outside public mode, and the flags with --backend golem", async () => {
    const [unavailable, notLoopback, golem] = await Promise.all([
      run("unavailable", ["--public", "--listen", "/ip4/192.0.2.1/tcp/4001"]),
      run("not-loopback", ["--listen", "/ip4/0.0.0.0/tcp/0", "--announce", "/dns4/requestor.example.org/tcp/4001"]),
      run("golem", ["--backend", "golem", "--listen", "/ip4/127.0.0.1/tcp/0"]),
    ]);
    expect(unavailable).to.deep.equal({ code: 125, error: "ADDRESS_UNAVAILABLE", touched: false });
    expect(notLoopback).to.deep.equal({ code: 125, error: "ADDRESS_NOT_LOOPBACK", touched: false });
    expect(golem).to.deep.equal({ code: 125, error: "ADDRESS_FLAG_WITHOUT_LIBP2P", touched: false });
  });

  it("takes the same addresses from the --config file, and refuses keys that are not lists of addresses", async () => {
    const config = (name: string, value: unknown) => {
      const file = join(dir, `${name}.json`);
      writeFileSync(file, JSON.stringify(value));
      return ["--config", file];
    };
    const [unavailable, golem, notList, tooMany] = await Promise.all([
      run("config-unavailable", config("unavailable", { public: true, listen: ["/ip4/192.0.2.1/tcp/4001"] })),
      run("config-golem", ["--backend", "golem", ...config("golem", { appendAnnounce: ["/ip4/127.0.0.1/tcp/1"] })]),
      run("config-not-list", config("not-list", { announce: "/ip4/127.0.0.1/tcp/1" })),
      run("config-too-many", config("too-many", { bootstrap: Array.from({ length: 17 }, () => BOOT) })),
    ]);
    expect(unavailable).to.deep.equal({ code: 125, error: "ADDRESS_UNAVAILABLE", touched: false });
    expect(golem).to.deep.equal({ code: 125, error: "ADDRESS_FLAG_WITHOUT_LIBP2P", touched: false });
    expect(notList).to.deep.equal({ code: 125, error: "CONFIG_INVALID", touched: false });
    expect(tooMany).to.deep.equal({ code: 125, error: "CONFIG_INVALID", touched: false });
  });
});

/**
 * The package as a user gets it: `npm pack`, install the tarball into an empty project that cannot see the
 * repository's node_modules, type-check a strict consumer of every public entry and the examples against it,
 * import every entry at run time, and run `examples/verified-qube.ts` (k = 3, paid) on a devnet.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cp, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { builtinModules } from "node:module";
import { join, relative } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { expect } from "chai";
import { type Packed, packCopy } from "../../scripts/pack.js";
import { PROBE_CACHE, tmp } from "../helpers/network.js";

const ROOT = join(import.meta.dirname, "..", "..");
const BIN = join(ROOT, "bin", "airqube.js");
const run = promisify(execFile);
const ENTRIES = ["", "/requestor", "/provider", "/sandbox", "/probes", "/chain", "/golem", "/devnet"];

interface Manifest {
  version: string;
  exports: Record<string, unknown>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
}

async function filesUnder(dir: string, suffix: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (entry.isFile() && entry.name.endsWith(suffix)) out.push(join(entry.parentPath, entry.name));
  return out;
}

/** The package a bare module specifier names (`@scope/name/sub` → `@scope/name`). */
const packageOf = (specifier: string) =>
  specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!;

describe("package: npm pack, install into an empty project, type-check, import and run @docker", function () {
  this.timeout(900_000);
  const project = tmp("aq-consumer-");
  const home = tmp("aq-consumer-home-");
  const manifest = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as Manifest;
  let packed: Packed;
  const installed = join(project, "node_modules", "airqube");
  let devnet: ChildProcess | undefined;
  let devnetLog = "";

  before(async () => {
    const started = Date.now();
    packed = await packCopy(project);
    const types = manifest.devDependencies["@types/node"]!;
    await writeFile(
      join(project, "package.json"),
      JSON.stringify({
        name: "airqube-consumer",
        private: true,
        type: "module",
        dependencies: { airqube: `file:./${packed.filename}`, "@types/node": types },
      }),
    );
    const packedAt = Date.now();
    // from npm's cache where it can (the set-up's `npm ci` filled it); dependencies' install scripts are not needed
    await run(
      "npm",
      ["install", "--no-audit", "--no-fund", "--prefer-offline", "--ignore-scripts", "--loglevel=error"],
      {
        cwd: project,
        maxBuffer: 64 * 1024 * 1024,
        timeout: 600_000,
      },
    );
    process.stdout.write(`      (npm pack ${packedAt - started} ms, npm install ${Date.now() - packedAt} ms)\n`);
  });

  after(() => {
    if (devnet && devnet.exitCode === null) devnet.kill("SIGINT");
  });

  it("ships compiled JavaScript, declarations, the two commands and the README only", () => {
    const paths = packed.files.map((f) => f.path);
    expect(paths).to.include.members([
      "package.json",
      "README.md",
      "bin/airqube.js",
      "bin/ya-runtime-airqube.js",
      "bin/launch.js",
      "dist/index.js",
      "dist/index.d.ts",
    ]);
    const stray = paths.filter(
      (p) =>
        !/^(dist\/.*\.(js|d\.ts)|dist\/dashboard\/static\/[\w./-]+|dist\/\.build-stamp|bin\/(airqube|ya-runtime-airqube|launch)\.js|README\.md|package\.json|contracts\/AirqubeEscrow(V2)?\.sol)$/.test(
          p,
        ),
    );
    expect(stray, "files that users do not need").to.deep.equal([]);
    expect(paths.some((p) => p.startsWith("dist/test/") || p.startsWith("dist/bench/"))).to.equal(false);
  });

  it("declares every package its declarations and its code import, and no private path leaks", async () => {
    const allowed = new Set([
      ...Object.keys(manifest.dependencies),
      ...Object.keys(manifest.peerDependencies ?? {}),
      ...builtinModules,
    ]);
    const dist = join(installed, "dist");
    const problems: string[] = [];
    for (const file of [...(await filesUnder(dist, ".d.ts")), ...(await filesUnder(dist, ".js"))]) {
      // code and declarations, not the examples in their doc comments
      const text = (await readFile(file, "utf8")).replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
      for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)["']([^"']+)["']/g)) {
        const specifier = m[1]!;
        if (specifier.startsWith("node:")) continue;
        if (specifier.startsWith(".")) {
          // relative imports stay inside dist/
          const target = join(file, "..", specifier);
          if (relative(dist, target).startsWith("..")) problems.push(`${relative(dist, file)}: ${specifier}`);
          continue;
        }
        // private paths of the repository (src/, test/) or of another package's internals
        if (/\/(src|test)\//.test(specifier) && !allowed.has(packageOf(specifier)))
          problems.push(`${relative(dist, file)}: ${specifier}`);
        else if (!allowed.has(packageOf(specifier)))
          problems.push(`${relative(dist, file)}: ${specifier} (undeclared)`);
      }
    }
    expect(problems).to.deep.equal([]);
  });

  it("a strict TypeScript consumer of every entry and the examples type-checks against the tarball", async () => {
    await cp(join(ROOT, "examples"), join(project, "examples"), {
      recursive: true,
      filter: (p) => !p.endsWith("tsconfig.json"),
    });
    const imports = ENTRIES.map((e, i) => `import * as entry${i} from "airqube${e}";`).join("\n");
    await writeFile(
      join(project, "consumer.ts"),
      `${imports}
import { Airqube, type QubeDescription, type QubeResult, UserError } from "airqube";
const description: QubeDescription = { image: "airqube/busybox:latest", command: ["true"], redundancy: { k: 3 } };
export async function use(aq: Airqube): Promise<QubeResult> {
  return aq.run(description, { onEvent: (event) => void event.type });
}
export const all = [${ENTRIES.map((_, i) => `entry${i}`).join(", ")}];
export const error: UserError = new UserError("X", "y");
`,
    );
    await writeFile(
      join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2023",
          lib: ["ES2024", "ESNext.Disposable"],
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          noUncheckedIndexedAccess: true,
          verbatimModuleSyntax: true,
          noEmit: true,
          skipLibCheck: true,
          types: ["node"],
        },
        include: ["consumer.ts", "examples/*.ts"],
      }),
    );
    const tsc = join(ROOT, "node_modules", "typescript", "bin", "tsc");
    const check = await run(process.execPath, [tsc, "-p", project], { cwd: project }).catch(
      (e: { stdout: string }) => ({ stdout: e.stdout, failed: true }),
    );
    expect(check.stdout).to.equal("");
    expect("failed" in check).to.equal(false);
  });

  it("every entry imports at run time, and `import('airqube')` loads no network stack, ethers, Hardhat, Docker client or golem-js", async () => {
    const script = `
      import { registerHooks } from "node:module";
      const loaded = [];
      registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); loaded.push(r.url); return r; } });
      const root = await import("airqube");
      // identities are libp2p keys (@libp2p/crypto, @libp2p/peer-id): those load; the network stack must not
      const heavy = loaded.filter((u) => /node_modules\\/(libp2p|@libp2p\\/(?!crypto|peer-id|interface)[^/]+|ethers|hardhat|@nomicfoundation|@golem-sdk|dockerode|@chainsafe|pino|commander)\\//.test(u));
      for (const e of ${JSON.stringify(ENTRIES.slice(1))}) await import("airqube" + e);
      process.stdout.write(JSON.stringify({ root: Object.keys(root).length, heavy }));
    `;
    await writeFile(join(project, "imports.mjs"), script);
    const { stdout } = await run(process.execPath, ["imports.mjs"], { cwd: project });
    const result = JSON.parse(stdout) as { root: number; heavy: string[] };
    expect(result.root).to.be.greaterThan(10);
    expect(result.heavy).to.deep.equal([]);
  });

  it("the local chain without Hardhat installed is a clear HARDHAT_MISSING error", async () => {
    await writeFile(
      join(project, "chain.mjs"),
      `import { startLocalChain } from "airqube/chain";
       try { await startLocalChain(); process.stdout.write("started"); }
       catch (e) { process.stdout.write(JSON.stringify({ code: e.code, message: e.message })); }`,
    );
    const { stdout } = await run(process.execPath, ["chain.mjs"], { cwd: project });
    const error = JSON.parse(stdout) as { code: string; message: string };
    expect(error.code).to.equal("HARDHAT_MISSING");
    expect(error.message).to.contain("npm install --save-dev hardhat");
  });

  it("the installed binary runs the compiled CLI", async () => {
    const { stdout } = await run(join(project, "node_modules", ".bin", "airqube"), ["--version"], { cwd: project });
    expect(stdout.trim()).to.equal(manifest.version);
    expect(existsSync(join(installed, "src"))).to.equal(false);
  });

  it("examples/verified-qube.ts runs a paid k = 3 qube on a devnet through the installed package", async () => {
    if (existsSync(PROBE_CACHE)) await cp(PROBE_CACHE, join(home, "probe-cache"), { recursive: true });
    await mkdir(home, { recursive: true });
    const env = { ...process.env, AIRQUBE_HOME: home, AIRQUBE_LOG_LEVEL: "warn" };
    devnet = spawn(process.execPath, [BIN, "devnet", "up", "--json", "--providers", "3", "--ready-timeout", "180s"], {
      stdio: ["ignore", "pipe", "pipe"],
      env,
    });
    devnet.stderr!.on("data", (chunk: Buffer) => {
      devnetLog = (devnetLog + chunk.toString()).slice(-4000);
    });
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: devnet!.stdout! }).once("line", (line) =>
        line.includes('"ready"') ? resolve() : reject(new Error(`devnet: ${line}\n${devnetLog}`)),
      );
      devnet!.once("exit", (code) => reject(new Error(`devnet up exited ${code}: ${devnetLog}`)));
    });
    const { stdout, stderr } = await run(process.execPath, [join("examples", "verified-qube.ts")], {
      cwd: project,
      env,
      timeout: 240_000,
    });
    const result = JSON.parse(stdout.trim().split("\n").at(-1)!) as {
      verified: boolean;
      ok: boolean;
      agreeing: number;
      statements: number;
      payments: string[];
      result: string;
    };
    expect(result, stderr).to.include({ verified: true, ok: true, statements: result.agreeing });
    expect(result.agreeing).to.be.at.least(2);
    expect(result.payments).to.deep.equal(["settled"]);
    expect(result.result).to.equal("HELLO FROM AN UNTRUSTED PROVIDER\n");
    process.stdout.write(
      `      package: ${packed.size} bytes packed, ${packed.unpackedSize} bytes unpacked (${packed.files.length} files)\n`,
    );
  });
});

/** `airqube golem-runtime install|uninstall`: the ya-provider descriptor and the launcher, in a temp plugins dir. */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import {
  DESCRIPTOR_FILE,
  defaultPluginsDir,
  installGolemRuntime,
  LAUNCHER_PATH,
  launcherScript,
  presetHelp,
  uninstallGolemRuntime,
} from "../../../src/cli/golem-runtime-command.js";
import { packageRoot } from "../../../src/package-root.js";
import { AirqubeError } from "../../../src/qube/index.js";

const run = promisify(execFile);

async function rejection(promise: Promise<unknown>): Promise<AirqubeError> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(AirqubeError);
    return error as AirqubeError;
  }
  expect.fail("expected a rejection");
}

describe("golem runtime install", function () {
  this.timeout(30_000);
  let root: string;
  let plugins: string;
  /** A stand-in runtime script that prints its arguments, so the launcher can be run. */
  let script: string;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "airqube-install-"));
    plugins = join(root, "it's plugins", "nested");
    script = join(root, "fake-runtime.js");
    await writeFile(script, "process.stdout.write(JSON.stringify(process.argv.slice(2)));\n");
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("writes the descriptor ya-provider reads and a launcher that execs node on the runtime script", async () => {
    const result = await installGolemRuntime({ pluginsDir: plugins, runtimeScript: script });
    expect(result.written).to.deep.equal([join(plugins, DESCRIPTOR_FILE), join(plugins, LAUNCHER_PATH)]);
    const descriptor = JSON.parse(await readFile(join(plugins, DESCRIPTOR_FILE), "utf8"));
    expect(descriptor).to.be.an("array").with.lengthOf(1);
    const [desc] = descriptor;
    expect(desc).to.include({ name: "airqube", "supervisor-path": "exe-unit", "runtime-path": LAUNCHER_PATH });
    expect(desc.version).to.match(/^\d+\.\d+\.\d+$/); // ya-provider parses it as semver
    expect(desc["extra-args"]).to.deep.equal([]);
    expect(desc.properties).to.deep.equal({});
    expect(desc.config.counters).to.deep.equal({
      "golem.usage.duration_sec": { name: "duration", description: "Duration", price: true },
      "golem.usage.cpu_sec": { name: "cpu", description: "CPU", price: true },
    });
    expect(result.exeUnit).to.deep.equal({ path: join(plugins, "exe-unit"), found: false });
    const launcher = join(plugins, LAUNCHER_PATH);
    expect((await stat(launcher)).mode & 0o777).to.equal(0o755);
    // run as exe-unit would: arguments with spaces and quotes reach the runtime unchanged
    const args = ["--workdir", "/tmp/w d", "--task-package", "it's", "offer-template"];
    const { stdout } = await run(launcher, args);
    expect(JSON.parse(stdout)).to.deep.equal(args);
  });

  it("is idempotent: a second install writes nothing; a changed exe-unit path rewrites the descriptor only", async () => {
    await installGolemRuntime({ pluginsDir: plugins, runtimeScript: script });
    const before = (await stat(join(plugins, DESCRIPTOR_FILE))).mtimeMs;
    const again = await installGolemRuntime({ pluginsDir: plugins, runtimeScript: script });
    expect(again.written).to.deep.equal([]);
    expect((await stat(join(plugins, DESCRIPTOR_FILE))).mtimeMs).to.equal(before);
    await writeFile(join(plugins, "exe-unit"), "");
    const moved = await installGolemRuntime({ pluginsDir: plugins, runtimeScript: script, exeUnit: "exe-unit" });
    expect(moved.exeUnit.found).to.equal(true);
    const other = await installGolemRuntime({
      pluginsDir: plugins,
      runtimeScript: script,
      exeUnit: "/usr/lib/yagna/plugins/exe-unit",
    });
    expect(other.written).to.deep.equal([join(plugins, DESCRIPTOR_FILE)]);
    expect(await readdir(plugins)).to.have.members([DESCRIPTOR_FILE, "ya-runtime-airqube", "exe-unit"]);
  });

  it("refuses to overwrite a file it did not write, before writing anything", async () => {
    await mkdir(plugins, { recursive: true });
    const foreign = '[{"name":"airqube","version":"9.9.9","supervisor-path":"x"}]\n';
    await writeFile(join(plugins, DESCRIPTOR_FILE), foreign);
    const error = await rejection(installGolemRuntime({ pluginsDir: plugins, runtimeScript: script }));
    expect(error).to.include({ code: "GOLEM_RUNTIME_FOREIGN_FILE", fault: "user" });
    expect(error.message).to.include(join(plugins, DESCRIPTOR_FILE));
    expect(await readFile(join(plugins, DESCRIPTOR_FILE), "utf8")).to.equal(foreign);
    expect(await readdir(plugins)).to.deep.equal([DESCRIPTOR_FILE]);
    // a foreign launcher: the descriptor is not written either
    await rm(join(plugins, DESCRIPTOR_FILE));
    await mkdir(join(plugins, "ya-runtime-airqube"));
    await writeFile(join(plugins, LAUNCHER_PATH), "#!/bin/sh\nexec something-else\n");
    expect(await rejection(installGolemRuntime({ pluginsDir: plugins, runtimeScript: script }))).to.include({
      code: "GOLEM_RUNTIME_FOREIGN_FILE",
    });
    expect(await readdir(plugins)).to.deep.equal(["ya-runtime-airqube"]);
    // a symbolic link is never followed, even to a file of ours
    await rm(join(plugins, "ya-runtime-airqube"), { recursive: true });
    const ours = join(root, "ours.sh");
    await writeFile(ours, launcherScript(process.execPath, script));
    await symlink(ours, join(plugins, DESCRIPTOR_FILE));
    expect(await rejection(installGolemRuntime({ pluginsDir: plugins, runtimeScript: script }))).to.include({
      code: "GOLEM_RUNTIME_FOREIGN_FILE",
    });
  });

  it("uninstall removes exactly what install wrote, and refuses a foreign file", async () => {
    await mkdir(plugins, { recursive: true });
    await writeFile(join(plugins, "ya-runtime-vm.json"), "[]");
    await installGolemRuntime({ pluginsDir: plugins, runtimeScript: script });
    const result = await uninstallGolemRuntime({ pluginsDir: plugins });
    expect(result.removed).to.deep.equal([
      join(plugins, DESCRIPTOR_FILE),
      join(plugins, LAUNCHER_PATH),
      join(plugins, "ya-runtime-airqube"),
    ]);
    expect(await readdir(plugins)).to.deep.equal(["ya-runtime-vm.json"]);
    expect((await uninstallGolemRuntime({ pluginsDir: plugins })).removed).to.deep.equal([]);
    // a file of someone else's in the launcher's directory stays, and so does the directory
    await installGolemRuntime({ pluginsDir: plugins, runtimeScript: script });
    await writeFile(join(plugins, "ya-runtime-airqube", "notes.txt"), "mine");
    expect((await uninstallGolemRuntime({ pluginsDir: plugins })).removed).to.have.lengthOf(2);
    expect(await readdir(join(plugins, "ya-runtime-airqube"))).to.deep.equal(["notes.txt"]);
    // a descriptor airqube did not write: refused, and the launcher is kept too
    await installGolemRuntime({ pluginsDir: plugins, runtimeScript: script });
    await writeFile(join(plugins, DESCRIPTOR_FILE), "[]");
    expect(await rejection(uninstallGolemRuntime({ pluginsDir: plugins }))).to.include({
      code: "GOLEM_RUNTIME_FOREIGN_FILE",
    });
    expect(await readdir(join(plugins, "ya-runtime-airqube"))).to.have.members(["notes.txt", "ya-runtime-airqube"]);
    // a launcher directory that is a link is not followed
    await rm(join(plugins, "ya-runtime-airqube"), { recursive: true });
    await rm(join(plugins, DESCRIPTOR_FILE));
    const elsewhere = join(root, "elsewhere");
    await mkdir(elsewhere);
    await writeFile(join(elsewhere, "ya-runtime-airqube"), launcherScript(process.execPath, script));
    await symlink(elsewhere, join(plugins, "ya-runtime-airqube"));
    expect(await rejection(uninstallGolemRuntime({ pluginsDir: plugins }))).to.include({
      code: "GOLEM_RUNTIME_FOREIGN_FILE",
    });
    expect(await readdir(elsewhere)).to.deep.equal(["ya-runtime-airqube"]);
  });

  it("prints how to enable a preset, with the plugins directory when it is not ya-provider's default", () => {
    const help = presetHelp({
      pluginsDir: plugins,
      launcher: join(plugins, LAUNCHER_PATH),
      exeUnit: { path: "/x", found: false },
    });
    expect(help).to.include("preset create --no-interactive --preset-name airqube --exe-unit airqube");
    expect(help).to.include("preset activate airqube");
    expect(help).to.include(`--exe-unit-path '${join(plugins, "ya-*.json")}'`);
    expect(help).to.include("exe-unit is not at /x");
    const usual = presetHelp({ pluginsDir: defaultPluginsDir(), launcher: "l", exeUnit: { path: "/x", found: true } });
    expect(usual).not.to.include("--exe-unit-path").and.not.to.include("exe-unit is not at");
  });

  it("refuses a missing runtime script and paths a launcher cannot carry", async () => {
    expect(
      await rejection(installGolemRuntime({ pluginsDir: plugins, runtimeScript: join(root, "absent.js") })),
    ).to.include({ code: "GOLEM_RUNTIME_SCRIPT_MISSING" });
    expect(
      await rejection(installGolemRuntime({ pluginsDir: plugins, runtimeScript: script, node: "node" })),
    ).to.include({
      code: "GOLEM_RUNTIME_PATH_INVALID",
    });
    expect(() => launcherScript(process.execPath, "/a\nrm -rf /")).to.throw(AirqubeError, /one line/);
    // refused before the plugins directory was created
    expect(await readdir(root)).to.deep.equal(["fake-runtime.js"]);
  });

  it("the CLI: install --json, launcher pointing at this installation's bin/ya-runtime-airqube.js", async () => {
    const cli = join(packageRoot(), "bin", "airqube.js");
    const installed = await run(process.execPath, [
      cli,
      "golem-runtime",
      "install",
      "--plugins-dir",
      plugins,
      "--json",
    ]);
    const result = JSON.parse(installed.stdout);
    expect(result).to.include({
      pluginsDir: plugins,
      runtimeScript: join(packageRoot(), "bin", "ya-runtime-airqube.js"),
    });
    expect(result.written).to.have.lengthOf(2);
    const launcher = await readFile(join(plugins, LAUNCHER_PATH), "utf8");
    expect(launcher).to.include(`'${join(packageRoot(), "bin", "ya-runtime-airqube.js")}' "$@"`);
    // one process is enough for the command's wiring: uninstall's own behaviour is tested above
    expect((await uninstallGolemRuntime({ pluginsDir: plugins })).removed).to.have.lengthOf(3);
  });
});

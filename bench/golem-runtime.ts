/**
 * `npm run bench:golem-runtime -- --json [--runs N]`: the overhead of ya-runtime-airqube over a direct sandbox
 * run. The same trivial qube (`/bin/true` in airqube/busybox, vol-input staged as /input, /output copied out,
 * the runtime's limits) runs directly through `ContainerSandbox.run` and as a RunProcess through the runtime's
 * service mode (one `start` process, as exe-unit keeps it for an activity: request -> ProcessStatus), interleaved,
 * after one untimed run of each. The work dir's deploy.json is written for the image already in the engine
 * (deploy itself is not what is measured). Prints { runs, directMs, runtimeMs, ratio, startMs } (medians;
 * startMs: spawn to the Hello reply, once).
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import {
  encodeRequest,
  FrameDecoder,
  type RuntimeRequest,
  type RuntimeResponse,
} from "../src/golem/runtime/protocol.js";
import { loadRuntimeConfig, processLimits, writeDeployState } from "../src/golem/runtime/state.js";
import { ContainerSandbox } from "../src/sandbox/container-sandbox.js";
import { argValue, median, round, wantsJson } from "./stats.js";

const runs = argValue("--runs", 10);
const root = await mkdtemp(join(tmpdir(), "aq-bench-golem-runtime-"));
const home = join(root, "home");
const workdir = join(root, "work");
await mkdir(join(workdir, "vol-input"), { recursive: true });
await mkdir(join(workdir, "vol-output"), { recursive: true });
await mkdir(home);
await writeFile(join(workdir, "vol-input", "in.txt"), "input\n");
const imageId = (await new Docker().getImage("airqube/busybox:latest").inspect()).Id;
await writeDeployState(workdir, {
  imageId,
  archiveDigest: imageId,
  tier: "container",
  deployedAt: new Date().toISOString(),
});
const limits = processLimits({}, await loadRuntimeConfig(home, {}));

/** The runtime in service mode: requests in, replies and events out. */
class Service {
  readonly child: ChildProcessWithoutNullStreams;
  private readonly decoder = new FrameDecoder<RuntimeResponse>("response");
  private readonly waiting = new Map<string, (r: RuntimeResponse) => void>();
  private nextId = 1;

  constructor() {
    this.child = spawn(
      process.execPath,
      [join(import.meta.dirname, "..", "bin", "ya-runtime-airqube.js"), "--workdir", workdir, "start"],
      {
        env: { ...process.env, AIRQUBE_RUNTIME_HOME: home },
      },
    );
    this.child.stderr.on("data", (chunk: Buffer) => process.stderr.write(chunk));
    this.child.stdout.on("data", (chunk: Buffer) => {
      for (const response of this.decoder.push(chunk)) {
        const key = response.event
          ? "processStatus" in response && !response.processStatus.running
            ? `pid:${response.processStatus.pid}`
            : ""
          : `id:${response.id}`;
        this.waiting.get(key)?.(response);
        this.waiting.delete(key);
      }
    });
  }

  private wait(key: string): Promise<RuntimeResponse> {
    return new Promise((resolve) => this.waiting.set(key, resolve));
  }

  async request(request: Omit<RuntimeRequest, "id">): Promise<RuntimeResponse> {
    const id = this.nextId++;
    const reply = this.wait(`id:${id}`);
    this.child.stdin.write(encodeRequest({ id, ...request } as RuntimeRequest));
    return reply;
  }

  /** One RunProcess of `/bin/true`, to its ProcessStatus. */
  async runTrue(): Promise<void> {
    const reply = await this.request({ run: { bin: "/bin/true", args: ["true"], workDir: "" } });
    if (!("run" in reply)) throw new Error(`bench: the runtime refused the run: ${JSON.stringify(reply)}`);
    const status = await this.wait(`pid:${reply.run.pid}`);
    if (!("processStatus" in status) || status.processStatus.returnCode !== 0)
      throw new Error(`bench: /bin/true failed in the runtime: ${JSON.stringify(status)}`);
  }
}

const sandbox = new ContainerSandbox();
async function direct(): Promise<void> {
  const staging = await mkdtemp(join(workdir, ".bench-"));
  try {
    const result = await sandbox.run({
      image: imageId,
      imageDigest: imageId,
      command: ["/bin/true"],
      inputDir: join(workdir, "vol-input"),
      outputs: ["/output"],
      outputDir: staging,
      limits,
    });
    if (result.exitCode !== 0) throw new Error(`bench: /bin/true failed directly: ${result.stderr}`);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

const spawned = performance.now();
const service = new Service();
try {
  await service.request({ hello: { version: "0.1.0" } });
  const startMs = performance.now() - spawned;
  await direct();
  await service.runTrue();
  const directMs: number[] = [];
  const runtimeMs: number[] = [];
  for (let i = 0; i < runs; i++) {
    let t = performance.now();
    await direct();
    directMs.push(performance.now() - t);
    t = performance.now();
    await service.runTrue();
    runtimeMs.push(performance.now() - t);
    if (!wantsJson) process.stderr.write(`\r${i + 1}/${runs}`);
  }
  await service.request({ shutdown: {} });
  if (!wantsJson) process.stderr.write("\n");
  console.log(
    JSON.stringify({
      runs,
      directMs: round(median(directMs)),
      runtimeMs: round(median(runtimeMs)),
      ratio: round(median(runtimeMs) / median(directMs), 3),
      startMs: round(startMs),
    }),
  );
} finally {
  service.child.kill("SIGKILL");
  await sandbox.close();
  await rm(root, { recursive: true, force: true });
}

/**
 * activity-api/v1 of the loopback yagna (specs/activity-api.yaml), requestor side, with a simulated exe-unit
 * behind each activity that really executes the exe-script:
 *
 * - `deploy` resolves the agreement's `golem.srv.comp.task_package` to a known image and creates the host
 *   directories of its volumes; `start` makes the activity Ready.
 * - `transfer` moves files between a volume and the requestor over the GSB gftp protocol (gsb.ts). As in
 *   the real exe-unit, a `container:` path must lie inside a volume of the image; others are refused.
 * - `run` runs the entry point in a fresh container of Airqube's sandbox (container tier) with the volumes:
 *   `/input` is mounted read-only (the sandbox's input mount), and every other volume is restored from the
 *   host copy before the command (by a small prelude that copies a read-only snapshot placed at
 *   `/input/.exeunit/<volume>`) and copied back after it (the sandbox's declared outputs). This is where the
 *   simulation differs from a VM: the snapshot is visible under /input, and /input is read-only to the
 *   command.
 *
 * A provider with a `runtime` (provider.ts) runs its activities through that ExeUnit runtime binary instead,
 * driven as exe-unit drives it (test/golem/runtime/exe-unit.ts): `deploy` calls the runtime's `deploy` with
 * the image's task package and takes the volumes it declares (`W/<vol.name>`), `start` starts its service mode,
 * each `run` is a RunProcess whose ProcessStatus events give the output and exit code, usage comes from its
 * counters, and the end of the activity is a Shutdown, then the runtime's process group is killed.
 *
 * Batch results are long-polled: `GET .../exec/{batch}?timeout` waits for the batch to end and answers 408
 * when nothing new came in time (golem-js retries 408 and 500).
 */
import { cp, mkdir, mkdtemp, readFile, rename, rm } from "node:fs/promises";
import { dirname, join, posix } from "node:path";
import { z } from "zod";
import type { Sandbox } from "../../../src/sandbox/api.js";
import { ExeUnit, type RuntimeSession } from "../runtime/exe-unit.js";
import type { GsbBus } from "./gsb.js";
import type { AgreementRecord } from "./market.js";
import type { PaymentService } from "./payment.js";
import { costOf, type SimImage } from "./provider.js";
import {
  eventDate,
  HttpError,
  type Ledger,
  newId,
  parseBody,
  type Route,
  type RouteContext,
  seconds,
  Waiters,
} from "./util.js";

const BASE = "/activity-api/v1";

const commandSchema = z.union([
  z.object({ deploy: z.record(z.string(), z.unknown()) }).strict(),
  z.object({ start: z.object({ args: z.array(z.string()).optional() }).passthrough() }).strict(),
  z
    .object({
      transfer: z.object({ from: z.string().min(1).max(2048), to: z.string().min(1).max(2048) }).passthrough(),
    })
    .strict(),
  z
    .object({
      run: z
        .object({
          entry_point: z.string().min(1).max(4096),
          args: z
            .array(z.string().max(1 << 20))
            .max(4096)
            .optional(),
          env: z.record(z.string(), z.string()).optional(),
          capture: z.unknown().optional(),
        })
        .passthrough(),
    })
    .strict(),
  z.object({ terminate: z.object({}).passthrough() }).strict(),
]);
type Command = z.infer<typeof commandSchema>;
const scriptSchema = z.array(commandSchema).min(1).max(64);

interface ResultDto {
  index: number;
  eventDate: string;
  result: "Ok" | "Error";
  stdout?: string;
  stderr?: string;
  message?: string;
  isBatchFinished: boolean;
}

interface Batch {
  results: ResultDto[];
  done: boolean;
  waiters: Waiters;
}

type State = "New" | "Initialized" | "Deployed" | "Ready" | "Unresponsive" | "Terminated";

interface ActivityRecord {
  id: string;
  agreement: AgreementRecord;
  state: State;
  reason?: string;
  created: number;
  ended?: number;
  dir: string;
  image?: SimImage;
  /** Container path → host directory. */
  volumes: Map<string, string>;
  batches: Map<string, Batch>;
  runs: number;
  cpuSec: number;
  controller: AbortController;
  debitNotes?: NodeJS.Timeout;
  /** The exe-unit side of the provider's ExeUnit runtime, and its service once started. */
  exeUnit?: ExeUnit;
  startMode?: "empty" | "blocking";
  session?: RuntimeSession;
}

export interface ActivityDeps {
  agreements: ReadonlyMap<string, AgreementRecord>;
  terminateByProvider(agreementId: string, message: string): void;
  gsb: GsbBus;
  payment: PaymentService;
  sandbox: Sandbox;
  /** The images the providers can run, by GVMI hash (SHA3-224 hex). */
  images: Readonly<Record<string, SimImage>>;
  ledger: Ledger;
  /** Host directory under which each activity gets a private directory. */
  workRoot: string;
  /** Largest file a transfer moves (either way). */
  maxTransferBytes: number;
  /** Wall-clock cap of one `run` (ms). */
  runWallTimeMs: number;
}

/** A prelude that restores the writable volumes from `/input/.exeunit/<volume>` and runs the entry point. */
const PRELUDE = [
  'while [ "$1" != "--" ]; do',
  '  if [ -d "/input/.exeunit$1" ]; then cp -R "/input/.exeunit$1/." "$1/" && chmod -R u+w "$1" || exit 126; fi',
  "  shift",
  "done",
  "shift",
  'exec "$@"',
].join("\n");

export class ActivityService {
  private readonly activities = new Map<string, ActivityRecord>();

  constructor(private readonly deps: ActivityDeps) {}

  routes(): Route[] {
    return [
      { method: "POST", path: `${BASE}/activity`, handler: (c) => this.create(c) },
      { method: "DELETE", path: `${BASE}/activity/{id}`, handler: (c) => this.destroy(c) },
      { method: "GET", path: `${BASE}/activity/{id}/agreement`, handler: (c) => this.agreementOf(c) },
      { method: "GET", path: `${BASE}/activity/{id}/state`, handler: (c) => this.stateOf(c) },
      { method: "GET", path: `${BASE}/activity/{id}/usage`, handler: (c) => this.usageOf(c) },
      { method: "POST", path: `${BASE}/activity/{id}/exec`, handler: (c) => this.exec(c) },
      { method: "GET", path: `${BASE}/activity/{id}/exec/{batch}`, handler: (c) => this.results(c) },
    ];
  }

  /** Activities created and not destroyed (leak check). */
  openActivities(): string[] {
    return [...this.activities.values()].filter((a) => a.state !== "Terminated").map((a) => a.id);
  }

  /** The agreement ended: its activities stop (the provider's side). Returns their ids and usage. */
  endAgreement(agreementId: string): { ids: string[]; cpuSec: number; durationSec: number } {
    const mine = [...this.activities.values()].filter((a) => a.agreement.agreementId === agreementId);
    for (const a of mine) void this.terminate(a, "the agreement ended");
    return {
      ids: mine.map((a) => a.id),
      cpuSec: mine.reduce((n, a) => n + this.usage(a).cpuSec, 0),
      durationSec: mine.reduce((n, a) => n + ((a.ended ?? Date.now()) - a.created) / 1000, 0),
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.activities.values()].map((a) => this.terminate(a, "yagna is closing")));
  }

  private activity(id: string | undefined): ActivityRecord {
    const activity = this.activities.get(id ?? "");
    if (!activity) throw new HttpError(404, `no activity ${id}`);
    return activity;
  }

  private async create(c: RouteContext) {
    const { agreementId } = parseBody(z.object({ agreementId: z.string().min(1) }).passthrough(), c.body);
    const agreement = this.deps.agreements.get(agreementId);
    if (!agreement) throw new HttpError(404, `no agreement ${agreementId}`);
    if (agreement.state !== "Approved") throw new HttpError(400, `agreement ${agreementId} is ${agreement.state}`);
    const id = newId("activity");
    const dir = await mkdtemp(join(this.deps.workRoot, "activity-"));
    const activity: ActivityRecord = {
      id,
      agreement,
      state: "Initialized",
      created: Date.now(),
      dir,
      volumes: new Map(),
      batches: new Map(),
      runs: 0,
      cpuSec: 0,
      controller: new AbortController(),
    };
    this.activities.set(id, activity);
    this.deps.ledger.activitiesCreated.push(id);
    const every = agreement.provider.debitNoteEveryMs;
    if (every) {
      activity.debitNotes = setInterval(() => {
        const usage = this.usage(activity);
        this.deps.payment.issueDebitNote(
          agreementId,
          id,
          agreement.provider.id,
          costOf(agreement.provider, usage) * (agreement.provider.overbill ?? 1),
          [usage.cpuSec, usage.durationSec],
        );
      }, every);
    }
    return { status: 201, json: { activityId: id } };
  }

  private usage(a: ActivityRecord): { cpuSec: number; durationSec: number } {
    // a runtime's counters as they stand now: it sends them after each process's status, so they are read when
    // the usage is needed (debit note, invoice), never right after a process ended
    const counted = a.session?.counters.get("golem.usage.cpu_sec");
    return { cpuSec: counted ?? a.cpuSec, durationSec: ((a.ended ?? Date.now()) - a.created) / 1000 };
  }

  private async destroy(c: RouteContext) {
    const activity = this.activity(c.params.id);
    await this.terminate(activity, "destroyed by the requestor");
    return { status: 200 };
  }

  private async terminate(a: ActivityRecord, reason: string): Promise<void> {
    if (a.state === "Terminated") return;
    a.state = "Terminated";
    a.reason = reason;
    a.ended = Date.now();
    a.controller.abort();
    if (a.debitNotes) clearInterval(a.debitNotes);
    if (a.session) {
      // exe-unit's shutdown: Shutdown to the runtime, then its process tree killed
      await a.session.shutdown({ signal: AbortSignal.timeout(20_000) }).catch(() => undefined);
      await a.session.dispose();
    }
    this.deps.ledger.activitiesDestroyed.push(a.id);
    for (const batch of a.batches.values()) {
      if (!batch.done) {
        batch.done = true;
        batch.results.push({
          index: batch.results.length,
          eventDate: eventDate(),
          result: "Error",
          message: `ExeUnit: the activity was terminated: ${reason}`,
          isBatchFinished: true,
        });
      }
      batch.waiters.notify();
    }
    await rm(a.dir, { recursive: true, force: true });
  }

  private agreementOf(c: RouteContext) {
    return { status: 200, json: this.activity(c.params.id).agreement.agreementId };
  }

  private stateOf(c: RouteContext) {
    const a = this.activity(c.params.id);
    return { status: 200, json: { state: [a.state, null], ...(a.reason ? { reason: a.reason } : {}) } };
  }

  private usageOf(c: RouteContext) {
    const a = this.activity(c.params.id);
    const u = this.usage(a);
    return { status: 200, json: { currentUsage: [u.cpuSec, u.durationSec], timestamp: Math.floor(Date.now() / 1000) } };
  }

  private exec(c: RouteContext) {
    const a = this.activity(c.params.id);
    const { text } = parseBody(z.object({ text: z.string().max(4 << 20) }), c.body);
    let commands: Command[];
    try {
      commands = scriptSchema.parse(JSON.parse(text));
    } catch (error) {
      throw new HttpError(400, `invalid exe-script: ${(error as Error).message.slice(0, 500)}`);
    }
    if (a.state === "Terminated") throw new HttpError(500, `activity ${a.id} is terminated`);
    const batchId = newId("batch");
    const batch: Batch = { results: [], done: false, waiters: new Waiters() };
    a.batches.set(batchId, batch);
    void this.runBatch(a, batch, commands);
    return { status: 200, json: batchId };
  }

  private async results(c: RouteContext) {
    const a = this.activity(c.params.id);
    if (String(c.headers.accept ?? "").includes("text/event-stream"))
      throw new HttpError(406, "streamed batch results are not simulated");
    const batch = a.batches.get(c.params.batch ?? "");
    if (!batch) throw new HttpError(404, `no batch ${c.params.batch}`);
    const timeout = seconds(c.query.get("timeout") ?? undefined, 5);
    const index = c.query.get("commandIndex");
    const want = index === null ? undefined : Number(index);
    const ready = () => batch.done || (want !== undefined && batch.results.length > want);
    await batch.waiters.wait(ready, timeout * 1000, c.signal);
    if (!ready() && batch.results.length === 0) throw new HttpError(408, "no result within the timeout");
    return { status: 200, json: batch.results.slice(0, want === undefined ? undefined : want + 1) };
  }

  private async runBatch(a: ActivityRecord, batch: Batch, commands: Command[]): Promise<void> {
    for (let index = 0; index < commands.length; index++) {
      let outcome: { ok: boolean; stdout?: string; stderr?: string; message?: string };
      try {
        outcome = await this.command(a, commands[index]!);
      } catch (error) {
        outcome = { ok: false, message: (error as Error).message };
      }
      if (batch.done) return; // terminated meanwhile: the termination recorded the result
      const last = index === commands.length - 1 || !outcome.ok;
      batch.results.push({
        index,
        eventDate: eventDate(),
        result: outcome.ok ? "Ok" : "Error",
        stdout: outcome.stdout ?? "",
        stderr: outcome.stderr ?? "",
        message: outcome.message ?? "",
        isBatchFinished: last,
      });
      if (last) batch.done = true;
      batch.waiters.notify();
      if (last) return;
    }
  }

  private async command(
    a: ActivityRecord,
    command: Command,
  ): Promise<{ ok: boolean; stdout?: string; stderr?: string; message?: string }> {
    if (a.state === "Terminated") return { ok: false, message: "ExeUnit: the activity is terminated" };
    if ("deploy" in command) return this.deploy(a);
    if ("start" in command) {
      if (a.state !== "Deployed") return { ok: false, message: `ExeUnit: cannot start in state ${a.state}` };
      if (a.exeUnit && a.startMode === "blocking") a.session = await a.exeUnit.start({ signal: a.controller.signal });
      a.state = "Ready";
      return { ok: true, message: "started" };
    }
    if ("terminate" in command) {
      await this.terminate(a, "terminate command");
      return { ok: true };
    }
    if (a.state !== "Ready") return { ok: false, message: `ExeUnit: not ready (${a.state})` };
    if ("transfer" in command) return this.transfer(a, command.transfer.from, command.transfer.to);
    return this.run(a, command.run.entry_point, command.run.args ?? [], command.run.env ?? {});
  }

  private async deploy(a: ActivityRecord) {
    if (a.state !== "Initialized") return { ok: false, message: `ExeUnit: cannot deploy in state ${a.state}` };
    const pkg = String(a.agreement.demand.properties["golem.srv.comp.task_package"] ?? "");
    const hash = /^hash:sha3:([0-9a-f]{56}):/.exec(pkg)?.[1];
    const image = hash ? this.deps.images[hash] : undefined;
    if (!image) return { ok: false, message: `ExeUnit: cannot download the image ${pkg}` };
    a.image = image;
    if (a.agreement.provider.runtime) return this.deployRuntime(a, image);
    for (const volume of image.volumes) {
      const host = join(a.dir, "volumes", volume.replace(/^\/+/, ""));
      await mkdir(host, { recursive: true });
      a.volumes.set(volume, host);
    }
    a.state = "Deployed";
    return { ok: true, stdout: JSON.stringify({ startMode: "empty", valid: { Ok: "" }, vols: image.volumes }) };
  }

  /** `deploy` through the provider's ExeUnit runtime: its DeployResult's volumes become the activity's. */
  private async deployRuntime(a: ActivityRecord, image: SimImage) {
    const runtime = a.agreement.provider.runtime!;
    if (!image.archive) return { ok: false, message: "ExeUnit: the image has no task package for the runtime" };
    const workDir = join(a.dir, "work");
    await mkdir(workDir);
    const unit = new ExeUnit({
      runtime: runtime.command,
      workDir,
      taskPackage: image.archive,
      ...(runtime.env ? { env: runtime.env } : {}),
      timeoutMs: this.deps.runWallTimeMs + 30_000,
    });
    const { result, outcome } = await unit.deploy({ signal: a.controller.signal });
    if ("Err" in result.valid || outcome.code !== 0)
      return {
        ok: false,
        message: `ExeUnit: deploy failed: ${"Err" in result.valid ? result.valid.Err : outcome.stderr}`,
      };
    a.exeUnit = unit;
    a.startMode = result.startMode;
    for (const vol of result.vols) a.volumes.set(vol.path, join(workDir, vol.name));
    a.state = "Deployed";
    return { ok: true, stdout: outcome.stdout };
  }

  /** `run` as a RunProcess of the runtime's service: output and exit code from its ProcessStatus events. */
  private async runRuntime(a: ActivityRecord, entry: string, args: string[]) {
    const session = a.session;
    if (!session) return { ok: false, message: "ExeUnit: START command not run" };
    const signal = AbortSignal.any([a.controller.signal, AbortSignal.timeout(this.deps.runWallTimeMs + 30_000)]);
    let done: Awaited<ReturnType<RuntimeSession["waitProcess"]>>;
    try {
      const { pid } = await session.run(entry, args, { signal });
      done = await session.waitProcess(pid, { signal });
    } catch (error) {
      return { ok: false, message: `ExeUnit: ${(error as Error).message}` };
    }
    a.cpuSec = session.counters.get("golem.usage.cpu_sec") ?? a.cpuSec;
    const stdout = done.stdout.toString();
    const stderr = done.stderr.toString();
    if (done.returnCode !== 0)
      return { ok: false, stdout, stderr, message: `ExeUnit: process exited with code ${done.returnCode}` };
    return { ok: true, stdout, stderr };
  }

  /** A `container:` path → its host path, or undefined when it lies outside every volume. */
  private hostPath(a: ActivityRecord, url: string): string | undefined {
    const path = posix.normalize(url.slice("container:".length));
    if (!path.startsWith("/") || path.split("/").includes("..")) return undefined;
    for (const [volume, host] of a.volumes)
      if (path.startsWith(`${volume}/`)) return join(host, path.slice(volume.length + 1));
    return undefined;
  }

  private async transfer(a: ActivityRecord, from: string, to: string) {
    const provider = a.agreement.provider;
    if (to.startsWith("container:")) {
      const dest = this.hostPath(a, to);
      if (!dest) return { ok: false, message: `ExeUnit: ${to} is not inside a volume` };
      await mkdir(dirname(dest), { recursive: true });
      await this.deps.gsb.fetchFile(from, dest, this.deps.maxTransferBytes, a.controller.signal);
      return { ok: true };
    }
    if (from.startsWith("container:")) {
      const source = this.hostPath(a, from);
      if (!source) return { ok: false, message: `ExeUnit: ${from} is not inside a volume` };
      let data: Buffer;
      try {
        data = await readFile(source);
      } catch {
        return { ok: false, message: `ExeUnit: no such file ${from}` };
      }
      const sent = provider.extraBytes ? Buffer.concat([data, Buffer.alloc(provider.extraBytes, 0x41)]) : data;
      await this.deps.gsb.sendData(to, sent, {
        ...(provider.wrongHash ? { hashOverride: "00".repeat(32) } : {}),
        ...(provider.misplaceChunks ? { offsetShift: 7 } : {}),
        signal: a.controller.signal,
      });
      return { ok: true };
    }
    return { ok: false, message: "ExeUnit: a transfer needs a container: side" };
  }

  private async run(a: ActivityRecord, entry: string, args: string[], env: Record<string, string>) {
    const provider = a.agreement.provider;
    a.runs++;
    this.deps.ledger.runs.push({ provider: provider.id, argv: [entry, ...args] });
    if (provider.dieOnRun === a.runs) {
      this.deps.terminateByProvider(a.agreement.agreementId, "the provider's machine went down");
      return { ok: false, message: "ExeUnit: the provider terminated the activity" };
    }
    if (provider.runtime) {
      const outcome = await this.runRuntime(a, entry, args);
      if (provider.tamper) await provider.tamper(a.volumes, [entry, ...args]);
      return outcome;
    }
    const image = a.image!;
    const writable = [...a.volumes.keys()].filter((v) => v !== "/input");
    const stage = await mkdtemp(join(a.dir, "run-"));
    try {
      const inputDir = join(stage, "in");
      const outputDir = join(stage, "out");
      await mkdir(inputDir);
      await mkdir(outputDir);
      const inputVolume = a.volumes.get("/input");
      if (inputVolume) await cp(inputVolume, inputDir, { recursive: true });
      for (const v of writable) await cp(a.volumes.get(v)!, join(inputDir, ".exeunit", v), { recursive: true });
      const result = await this.deps.sandbox.run(
        {
          image: image.docker,
          command: ["/bin/sh", "-c", PRELUDE, "exe-unit", ...writable, "--", entry, ...args],
          env,
          inputDir,
          outputs: writable,
          outputDir,
          limits: { wallTimeMs: this.deps.runWallTimeMs },
        },
        { signal: a.controller.signal },
      );
      a.cpuSec += (result.usage?.cpuMs ?? result.durationMs) / 1000;
      for (const v of writable) {
        const host = a.volumes.get(v)!;
        await rm(host, { recursive: true, force: true });
        const produced = join(outputDir, v.replace(/^\/+/, ""));
        await rename(produced, host).catch(() => mkdir(host, { recursive: true }));
      }
      if (provider.tamper) await provider.tamper(a.volumes, [entry, ...args]);
      if (result.exitCode !== 0)
        return {
          ok: false,
          stdout: result.stdout,
          stderr: result.stderr,
          message: `ExeUnit: process exited with code ${result.exitCode}${result.timedOut ? " (timed out)" : ""}`,
        };
      return { ok: true, stdout: result.stdout, stderr: result.stderr };
    } finally {
      await rm(stage, { recursive: true, force: true });
    }
  }
}

/**
 * A test-side emulation of yagna's exe-unit driving an ExeUnit runtime binary, as exe-unit does it
 * (`exe-unit/src/runtime/process.rs`, `exe-unit/runtime-api/src/server/client.rs`):
 *
 * - every call passes the global flags first, in exe-unit's order: `--workdir W [--task-package P]
 *   [--cpu-cores N] [--mem-gib X] [--storage-gib X] [extra-args...]`, then the subcommand; the process runs
 *   with the work directory as its current directory;
 * - `deploy --`: the DeployResult JSON is read from the first `{` of stdout (empty stdout = a valid deploy
 *   without volumes), and a directory `W/<vol.name>` is created for each volume;
 * - `start` (service mode, no `--`): stdin and stdout piped, a Hello with version 0.1.0 first, request ids
 *   counting from 2 upwards, replies and events read as exe-unit's codec reads them (nothing is decoded while
 *   fewer than 4 bytes are buffered); `run --entrypoint E -- args` for command mode;
 * - a RunProcess carries `bin` = the entry point, `args` = [basename(entry point), ...args], an empty
 *   `work_dir` and no output specs, exactly what exe-unit sends for an exe-script `run`;
 * - `container:/input/x` transfer paths map to `W/<vol.name>/x` by the volume whose path is the longest
 *   prefix.
 *
 * The runtime's process is spawned in its own process group and the whole group is killed on dispose (as
 * exe-unit kills the runtime's process tree).
 *
 * @example
 * const unit = new ExeUnit({ runtime: [process.execPath, "bin/ya-runtime-airqube.js"], workDir, taskPackage });
 * const { result } = await unit.deploy();
 * await using session = await unit.start();
 * const { pid } = await session.run("/bin/sh", ["-c", "echo hi > /output/x"]);
 * const status = await session.waitProcess(pid); // { returnCode: 0, stdout, stderr }
 * await session.shutdown();
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import {
  encodeRequest,
  FrameDecoder,
  MAX_RESPONSE_FRAME_BYTES,
  type ProcessStatus,
  RUNTIME_API_VERSION,
  type RuntimeEvent,
  type RuntimeReply,
  type RuntimeRequest,
  type RuntimeResponse,
} from "../../../src/golem/runtime/protocol.js";
import { type AirqubeError, PeerError, PlatformError, TimeoutError, UserError } from "../../../src/qube/errors.js";

/** yagna's DeployResult as a runtime prints it for `deploy` (camelCase JSON). */
export interface DeployResult {
  valid: { Ok: string } | { Err: string };
  vols: Array<{ name: string; path: string }>;
  startMode: "empty" | "blocking";
}

/** How to reach the runtime and what exe-unit passes it. */
export interface ExeUnitOptions {
  /** The runtime's command: executable and leading arguments, e.g. `[process.execPath, "bin/x.js"]`. */
  runtime: readonly string[];
  /** The activity's work directory (exists). */
  workDir: string;
  /** The downloaded image, passed as `--task-package` when set. */
  taskPackage?: string;
  cpuCores?: number;
  memGib?: number;
  storageGib?: number;
  /** The descriptor's `extra-args`, after the resource flags. */
  extraArgs?: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** Default deadline of every call and wait, in ms (60 s). */
  timeoutMs?: number;
}

/** The outcome of a one-shot runtime call (`offer-template`, `test`, `deploy`, `run`). */
export interface CommandOutcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A finished process as exe-unit sees it: its return code and all output of its ProcessStatus events. */
export interface ProcessOutcome {
  returnCode: number;
  stdout: Buffer;
  stderr: Buffer;
  /** The number of ProcessStatus events it took. */
  statuses: number;
}

/** Most bytes of a runtime's stderr kept (the tail). */
const STDERR_TAIL_BYTES = 64 * 1024;

/** The exe-unit side of one activity's runtime. */
export class ExeUnit {
  readonly options: ExeUnitOptions;
  /** The volumes of the last successful deploy. */
  vols: DeployResult["vols"] = [];

  constructor(options: ExeUnitOptions) {
    this.options = options;
  }

  /** The global flags, in exe-unit's order. */
  globalArgs(): string[] {
    const o = this.options;
    const args = ["--workdir", o.workDir];
    if (o.taskPackage !== undefined) args.push("--task-package", o.taskPackage);
    if (o.cpuCores !== undefined) args.push("--cpu-cores", String(Math.trunc(o.cpuCores)));
    if (o.memGib !== undefined) args.push("--mem-gib", String(o.memGib));
    if (o.storageGib !== undefined) args.push("--storage-gib", String(o.storageGib));
    args.push(...(o.extraArgs ?? []));
    return args;
  }

  /**
   * Runs the runtime once with the global flags and `args` (e.g. `["offer-template"]`, `["test"]`,
   * `["run", "--entrypoint", "/bin/sh", "--", "-c", "x"]`); collects its output and exit status.
   */
  async command(args: readonly string[], options: { signal?: AbortSignal } = {}): Promise<CommandOutcome> {
    const [bin, ...lead] = this.options.runtime;
    if (bin === undefined) throw new UserError("EXE_UNIT_NO_RUNTIME", "No runtime command given");
    const signal = options.signal ?? AbortSignal.timeout(this.options.timeoutMs ?? 60_000);
    const child = spawn(bin, [...lead, ...this.globalArgs(), ...args], {
      cwd: this.options.workDir,
      env: this.options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout?.on("data", (b: Buffer) => stdout.push(b));
    child.stderr?.on("data", (b: Buffer) => stderr.push(b));
    const onAbort = () => killGroup(child);
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      const { code, signal: killedBy } = await exitOf(child);
      if (signal.aborted) {
        throw new TimeoutError("EXE_UNIT_TIMEOUT", `The runtime's ${args[0] ?? ""} call did not finish in time`, {
          details: tail(Buffer.concat(stderr)),
        });
      }
      return {
        code,
        signal: killedBy,
        stdout: Buffer.concat(stdout).toString(),
        stderr: Buffer.concat(stderr).toString(),
      };
    } finally {
      signal.removeEventListener("abort", onAbort);
      killGroup(child);
    }
  }

  /**
   * `deploy --`: parses the DeployResult as exe-unit does and creates `W/<vol.name>` for each volume of a
   * valid deploy.
   *
   * @throws PeerError `EXE_UNIT_DEPLOY_INVALID` when stdout holds no JSON object or a malformed one.
   */
  async deploy(options: { signal?: AbortSignal } = {}): Promise<{ result: DeployResult; outcome: CommandOutcome }> {
    const outcome = await this.command(["deploy", "--"], options);
    const result = parseDeployResult(outcome.stdout);
    if ("Ok" in result.valid && outcome.code === 0) {
      for (const vol of result.vols) {
        const dir = path.resolve(this.options.workDir, vol.name);
        if (path.dirname(dir) !== path.resolve(this.options.workDir)) {
          throw new PeerError("EXE_UNIT_DEPLOY_INVALID", "A deploy volume name is not a plain name", {
            details: vol.name,
          });
        }
        await mkdir(dir, { recursive: true });
      }
      this.vols = result.vols;
    }
    return { result, outcome };
  }

  /**
   * Maps a container path (`/input/x`, or a transfer URL `container:/input/x`) to its host path under the
   * work directory, through the volume with the longest matching path.
   *
   * @throws UserError `EXE_UNIT_PATH_OUTSIDE_VOLUMES` when no volume holds it.
   */
  hostPath(containerPath: string): string {
    const p = path.posix.normalize(containerPath.replace(/^container:/, ""));
    const vol = [...this.vols]
      .sort((a, b) => b.path.length - a.path.length)
      .find((v) => p === v.path || p.startsWith(v.path.endsWith("/") ? v.path : `${v.path}/`));
    if (!vol || !p.startsWith("/")) {
      throw new UserError("EXE_UNIT_PATH_OUTSIDE_VOLUMES", "The path is in no deployed volume", { details: p });
    }
    return path.join(this.options.workDir, vol.name, p.slice(vol.path.length));
  }

  /**
   * `start`: spawns the runtime in service mode and says Hello.
   *
   * @throws PeerError `EXE_UNIT_HELLO_FAILED` when the runtime answers Hello with an error or exits first.
   */
  async start(options: { signal?: AbortSignal; hello?: boolean } = {}): Promise<RuntimeSession> {
    const [bin, ...lead] = this.options.runtime;
    if (bin === undefined) throw new UserError("EXE_UNIT_NO_RUNTIME", "No runtime command given");
    const child = spawn(bin, [...lead, ...this.globalArgs(), "start"], {
      cwd: this.options.workDir,
      env: this.options.env ?? process.env,
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    const session = new RuntimeSession(child, this.options.timeoutMs ?? 60_000);
    if (options.hello === false) return session;
    try {
      const reply = await session.request({ hello: { version: RUNTIME_API_VERSION } }, options);
      if (!("hello" in reply)) {
        throw new PeerError("EXE_UNIT_HELLO_FAILED", "The runtime did not answer Hello", {
          details: JSON.stringify(reply),
        });
      }
      return session;
    } catch (error) {
      await session.dispose();
      throw error;
    }
  }
}

/** One running `start` process: requests, replies, events and the raw pipe. */
export class RuntimeSession implements AsyncDisposable {
  readonly child: ChildProcess;
  /** Every reply and event, in arrival order. */
  readonly responses: RuntimeResponse[] = [];
  /** The last value of each RuntimeStatus counter. */
  readonly counters = new Map<string, number>();
  /** The exit of the runtime process. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The protocol error of the runtime's stdout, if it wrote a bad frame. */
  protocolError: AirqubeError | undefined;

  readonly #timeoutMs: number;
  readonly #decoder = new FrameDecoder<RuntimeResponse>("response");
  #raw: Buffer = Buffer.alloc(0);
  #nextId = 1;
  #stderr = Buffer.alloc(0);
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  #waiters = new Set<() => void>();

  constructor(child: ChildProcess, timeoutMs: number) {
    this.child = child;
    this.#timeoutMs = timeoutMs;
    child.stdout?.on("data", (chunk: Buffer) => {
      if (this.protocolError) return;
      try {
        for (const frame of this.#frames(chunk))
          for (const response of this.#decoder.push(frame)) this.#onResponse(response);
      } catch (error) {
        this.protocolError = error as AirqubeError;
      }
      this.#wake();
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      this.#stderr = Buffer.concat([this.#stderr, chunk]).subarray(-STDERR_TAIL_BYTES);
    });
    // A runtime that exits stops reading: writes to it fail with EPIPE, which the exit reports.
    child.stdin?.on("error", () => {});
    this.exited = exitOf(child).then((exit) => {
      this.#exit = exit;
      this.#wake();
      return exit;
    });
  }

  /** The tail of the runtime's stderr (its log). */
  stderrText(): string {
    return this.#stderr.toString();
  }

  /** The events (process and runtime status) received so far. */
  events(): RuntimeEvent[] {
    return this.responses.filter((r): r is RuntimeEvent => r.event === true);
  }

  /**
   * Sends a request with the next id (2, 3, ... as exe-unit counts) and waits for the reply with that id.
   *
   * @throws TimeoutError `EXE_UNIT_TIMEOUT`; PlatformError `EXE_UNIT_RUNTIME_EXITED` when the runtime exits
   *   first; the runtime's protocol error when its stdout goes bad.
   */
  async request(
    command: DistributiveOmit<RuntimeRequest, "id">,
    options: { signal?: AbortSignal } = {},
  ): Promise<RuntimeReply> {
    this.#nextId += 1;
    const id = this.#nextId;
    this.sendRaw(encodeRequest({ id, ...command } as RuntimeRequest));
    return this.#until(
      () => this.responses.find((r): r is RuntimeReply => r.event !== true && r.id === id),
      `the reply to request ${id}`,
      options.signal,
    );
  }

  /**
   * An exe-script `run` as exe-unit sends it: `bin` = the entry point, `args` = [its basename, ...args],
   * empty work dir, no output specs. Resolves with the `run{pid}` reply.
   *
   * @throws PeerError `EXE_UNIT_RUN_REFUSED` when the runtime answers with an error (its message in details).
   */
  async run(entryPoint: string, args: readonly string[] = [], options: { signal?: AbortSignal } = {}) {
    const reply = await this.request(
      { run: { bin: entryPoint, args: [path.posix.basename(entryPoint), ...args], workDir: "" } },
      options,
    );
    if ("run" in reply) return { pid: reply.run.pid };
    throw refused(reply);
  }

  /** Kill{pid, signal}; resolves once the runtime answers. */
  async kill(pid: number, signal = 9, options: { signal?: AbortSignal } = {}): Promise<RuntimeReply> {
    return this.request({ kill: { pid, signal } }, options);
  }

  /** Shutdown; resolves with the reply once the runtime answers. */
  async shutdown(options: { signal?: AbortSignal } = {}): Promise<RuntimeReply> {
    return this.request({ shutdown: {} }, options);
  }

  /**
   * Waits until the process `pid` reports `running: false`; returns its return code and all the output of
   * its ProcessStatus events (events that came before this call count too).
   */
  async waitProcess(pid: number, options: { signal?: AbortSignal } = {}): Promise<ProcessOutcome> {
    const statuses = () =>
      this.responses.flatMap((r) => ("processStatus" in r && r.processStatus.pid === pid ? [r.processStatus] : []));
    const last = await this.#until(
      () => statuses().find((s: ProcessStatus) => !s.running),
      `the end of process ${pid}`,
      options.signal,
    );
    const all = statuses();
    return {
      returnCode: last.returnCode,
      stdout: Buffer.concat(all.map((s) => s.stdout)),
      stderr: Buffer.concat(all.map((s) => s.stderr)),
      statuses: all.length,
    };
  }

  /**
   * Waits until `probe` returns a value (re-checked on every response and on exit), e.g. a counter:
   * `await session.waitFor(() => session.counters.get("golem.usage.cpu_sec"), "the cpu counter")`.
   */
  async waitFor<T>(probe: () => T | undefined, what: string, options: { signal?: AbortSignal } = {}): Promise<T> {
    return this.#until(probe, what, options.signal);
  }

  /** Writes raw bytes to the runtime's stdin (malformed or oversized frames). */
  sendRaw(bytes: Uint8Array): void {
    this.child.stdin?.write(bytes);
  }

  /** Closes the runtime's stdin (end of stream). */
  closeStdin(): void {
    this.child.stdin?.end();
  }

  /** Waits for the runtime to exit by itself (bounded). */
  async waitExit(options: { signal?: AbortSignal } = {}) {
    return this.#until(() => this.#exit, "the runtime's exit", options.signal, { allowExit: true });
  }

  /** Kills the runtime's process group if it still runs and waits for its exit. */
  async dispose(): Promise<void> {
    if (this.#exit === undefined) killGroup(this.child);
    await this.exited;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }

  /**
   * The complete frames buffered, released as exe-unit's codec releases them: it decodes only when at least
   * 4 bytes are buffered, so a shorter frame waits for more bytes (a runtime whose last frame is shorter
   * stalls the real exe-unit, and this emulation). A length prefix past the bound goes to the decoder at once,
   * which refuses it before its payload is buffered.
   */
  *#frames(chunk: Buffer): Generator<Uint8Array> {
    this.#raw = this.#raw.length === 0 ? chunk : Buffer.concat([this.#raw, chunk]);
    while (this.#raw.length >= 4) {
      let length = 0;
      let prefix = 0;
      while (prefix < this.#raw.length && prefix < 10) {
        const byte = this.#raw[prefix] as number;
        length += (byte & 0x7f) * 2 ** (7 * prefix);
        prefix++;
        if ((byte & 0x80) === 0) break;
      }
      const complete = prefix > 0 && ((this.#raw[prefix - 1] as number) & 0x80) === 0;
      if (length > MAX_RESPONSE_FRAME_BYTES || prefix >= 10) {
        yield this.#raw; // the decoder's RUNTIME_FRAME_TOO_LARGE or MALFORMED
        return;
      }
      if (!complete || this.#raw.length < prefix + length) return;
      yield this.#raw.subarray(0, prefix + length);
      this.#raw = this.#raw.subarray(prefix + length);
    }
  }

  #onResponse(response: RuntimeResponse): void {
    this.responses.push(response);
    if ("runtimeStatus" in response && "counter" in response.runtimeStatus) {
      this.counters.set(response.runtimeStatus.counter.name, response.runtimeStatus.counter.value);
    }
  }

  #wake(): void {
    for (const wake of this.#waiters) wake();
  }

  /** Resolves with the first defined value of `probe`, re-checked on every response and on exit. */
  async #until<T>(
    probe: () => T | undefined,
    what: string,
    signal: AbortSignal | undefined,
    options: { allowExit?: boolean } = {},
  ): Promise<T> {
    const deadline = signal ?? AbortSignal.timeout(this.#timeoutMs);
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        const value = probe();
        if (value !== undefined) return finish(() => resolve(value));
        if (this.protocolError) return finish(() => reject(this.protocolError));
        if (this.#exit && !options.allowExit) {
          const exit = this.#exit;
          return finish(() =>
            reject(
              new PlatformError("EXE_UNIT_RUNTIME_EXITED", `The runtime exited before ${what}`, {
                details: `code ${exit.code}, signal ${exit.signal}; stderr: ${tail(this.#stderr)}`,
              }),
            ),
          );
        }
        if (deadline.aborted) {
          return finish(() =>
            reject(
              new TimeoutError("EXE_UNIT_TIMEOUT", `The runtime did not send ${what} in time`, {
                details: tail(this.#stderr),
              }),
            ),
          );
        }
      };
      const finish = (settle: () => void) => {
        this.#waiters.delete(check);
        deadline.removeEventListener("abort", check);
        settle();
      };
      this.#waiters.add(check);
      deadline.addEventListener("abort", check, { once: true });
      check();
    });
  }
}

/**
 * Parses a runtime's `deploy` output as exe-unit does: empty means valid without volumes; otherwise the
 * JSON object from the first `{`.
 *
 * @throws PeerError `EXE_UNIT_DEPLOY_INVALID`.
 */
export function parseDeployResult(stdout: string): DeployResult {
  if (stdout.length === 0) return { valid: { Ok: "" }, vols: [], startMode: "empty" };
  const start = stdout.indexOf("{");
  let value: unknown;
  try {
    if (start < 0) throw new Error("no JSON object");
    value = JSON.parse(stdout.slice(start));
  } catch (error) {
    throw new PeerError("EXE_UNIT_DEPLOY_INVALID", "The runtime's deploy output is not a DeployResult", {
      details: stdout.slice(0, 500),
      cause: error,
    });
  }
  const v = value as Partial<DeployResult> | null;
  const valid = v?.valid as Record<string, unknown> | undefined;
  const okOrErr =
    valid && (typeof valid.Ok === "string" || typeof valid.Err === "string") && Object.keys(valid).length === 1;
  const vols = v?.vols ?? [];
  const volsOk = Array.isArray(vols) && vols.every((x) => typeof x?.name === "string" && typeof x?.path === "string");
  const startMode = v?.startMode ?? "empty";
  if (!okOrErr || !volsOk || (startMode !== "empty" && startMode !== "blocking")) {
    throw new PeerError("EXE_UNIT_DEPLOY_INVALID", "The runtime's deploy output is not a DeployResult", {
      details: stdout.slice(0, 500),
    });
  }
  return { valid: v?.valid as DeployResult["valid"], vols, startMode };
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

function refused(reply: RuntimeReply): PeerError {
  const details = "error" in reply ? `${reply.error.code}: ${reply.error.message}` : JSON.stringify(reply);
  return new PeerError("EXE_UNIT_RUN_REFUSED", "The runtime refused the request", { details });
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    child.once("close", (code, signal) => resolve({ code, signal }));
    child.once("error", () => resolve({ code: null, signal: null }));
  });
}

/** SIGKILLs the process group of a child spawned with `detached: true` (only processes we started). */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

function tail(buffer: Buffer): string {
  return buffer.subarray(-2000).toString();
}

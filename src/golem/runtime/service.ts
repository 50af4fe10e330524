/**
 * Service mode (`start`): ya-runtime-api over stdin/stdout. Hello is answered with the runtime's version; each
 * RunProcess is answered at once with its pid and runs in a fresh sandbox, then a ProcessStatus event reports
 * its return code and (bounded) stdout and stderr, followed by RuntimeStatus counter events with the usage so far
 * (`golem.usage.duration_sec`, `golem.usage.cpu_sec`: the sandboxes' own, metered by the host). Kill aborts
 * that sandbox (answered once it is gone); Shutdown aborts all, answers, and ends the service with 0; the end
 * of stdin ends it the same way without an answer. A malformed or oversized frame is logged and ends the
 * service with 2 after every sandbox is destroyed.
 */
import type { Logger } from "pino";
import { type AirqubeError, toAirqubeError, UserError } from "../../qube/errors.js";
import type { SandboxResult } from "../../sandbox/api.js";
import {
  encodeResponse,
  FrameDecoder,
  MAX_REQUEST_FRAME_BYTES,
  type OutputSpec,
  type RuntimeErrorCode,
  type RuntimeRequest,
  type RuntimeResponse,
} from "./protocol.js";
import type { RuntimeProcessSpec } from "./sandbox-run.js";

/** Most processes running at once in one activity. */
export const MAX_RUNNING_PROCESSES = 16;
/** Largest stdout and stderr each carried by a ProcessStatus event. */
export const MAX_STATUS_OUTPUT_BYTES = 1024 * 1024;

/** The counters the runtime reports (as ya-provider's descriptor declares them). */
export const USAGE_COUNTERS = { duration: "golem.usage.duration_sec", cpu: "golem.usage.cpu_sec" } as const;

/** What the service needs from the rest of the runtime. */
export interface ServiceOptions {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  /** Checks a process before it gets a pid (path rules); throws the typed error to answer with. */
  check: (spec: RuntimeProcessSpec) => void;
  /** Runs one process in a fresh sandbox; must destroy it before settling, also on abort. */
  run: (spec: RuntimeProcessSpec, signal: AbortSignal) => Promise<SandboxResult>;
  version: string;
  logger: Logger;
}

interface Running {
  controller: AbortController;
  done: Promise<void>;
}

/** Signal number a Kill names, reported as 128 + signal when it ends the process. */
const SIGKILL = 9;

/**
 * Serves one activity until Shutdown, the end of stdin, or a bad frame; resolves with the exit status.
 *
 * @example
 * process.exitCode = await serveRuntime({ input: process.stdin, output: process.stdout, check, run, version, logger });
 */
export async function serveRuntime(options: ServiceOptions): Promise<number> {
  const { logger } = options;
  const decoder = new FrameDecoder<RuntimeRequest>("request", { maxFrameBytes: MAX_REQUEST_FRAME_BYTES });
  const running = new Map<number, Running>();
  let nextPid = 1;
  const usage = { durationMs: 0, cpuMs: 0 };
  let closed = false;

  const send = (response: RuntimeResponse): void => {
    if (closed) return;
    options.output.write(encodeResponse(response));
  };
  const sendError = (id: number, error: AirqubeError, code: RuntimeErrorCode): void =>
    send({
      id,
      event: false,
      error: { code, message: error.message.slice(0, 2000), context: { code: error.code, fault: error.fault } },
    });

  const stopAll = async (): Promise<void> => {
    for (const process of running.values()) process.controller.abort();
    await Promise.all([...running.values()].map((p) => p.done));
  };

  const startProcess = (
    id: number,
    spec: RuntimeProcessSpec,
    outputs: { stdout?: OutputSpec | undefined; stderr?: OutputSpec | undefined },
  ): void => {
    try {
      options.check(spec);
      if (running.size >= MAX_RUNNING_PROCESSES)
        throw new UserError("RUNTIME_TOO_MANY_PROCESSES", "Too many processes run at once", {
          details: `at most ${MAX_RUNNING_PROCESSES}`,
        });
    } catch (error) {
      sendError(id, toAirqubeError(error), "BAD_REQUEST");
      return;
    }
    const pid = nextPid++;
    const controller = new AbortController();
    const started = performance.now();
    send({ id, event: false, run: { pid } });
    const done = options.run(spec, controller.signal).then(
      (result) => {
        usage.durationMs += result.durationMs;
        usage.cpuMs += result.usage?.cpuMs ?? 0;
        logger.info({ pid, exitCode: result.exitCode, durationMs: result.durationMs }, "process ended");
        finish(pid, result.exitCode, kept(result.stdout, outputs.stdout), kept(result.stderr, outputs.stderr));
      },
      (error: unknown) => {
        const failure = toAirqubeError(error);
        const killed = controller.signal.aborted;
        // a killed or failed sandbox reports no usage: its wall time still counts (its CPU time is unknown)
        usage.durationMs += performance.now() - started;
        if (!killed) logger.warn({ pid, err: failure }, "process failed in the sandbox");
        const message = killed ? "" : `airqube: ${failure.code}: ${failure.message}\n`;
        finish(pid, killed ? 128 + SIGKILL : -1, new Uint8Array(), kept(message, outputs.stderr));
      },
    );
    running.set(pid, { controller, done });
  };

  const finish = (pid: number, returnCode: number, stdout: Uint8Array, stderr: Uint8Array): void => {
    running.delete(pid);
    send({ event: true, processStatus: { pid, running: false, returnCode, stdout, stderr } });
    for (const [name, value] of [
      [USAGE_COUNTERS.duration, usage.durationMs / 1000],
      [USAGE_COUNTERS.cpu, usage.cpuMs / 1000],
    ] as const)
      send({ event: true, runtimeStatus: { counter: { name, value } } });
  };

  const handle = async (request: RuntimeRequest): Promise<"continue" | "shutdown"> => {
    if ("hello" in request) send({ id: request.id, event: false, hello: { version: options.version } });
    else if ("run" in request)
      startProcess(
        request.id,
        { bin: request.run.bin, args: [...request.run.args], workDir: request.run.workDir },
        { stdout: request.run.stdout, stderr: request.run.stderr },
      );
    else if ("kill" in request) {
      const target = running.get(request.kill.pid);
      if (!target)
        sendError(
          request.id,
          new UserError("RUNTIME_NO_SUCH_PROCESS", "No running process has this pid", {
            details: String(request.kill.pid),
          }),
          "NOT_FOUND",
        );
      else {
        target.controller.abort();
        await target.done;
        send({ id: request.id, event: false, kill: {} });
      }
    } else if ("shutdown" in request) {
      await stopAll();
      send({ id: request.id, event: false, shutdown: {} });
      return "shutdown";
    } else
      sendError(
        request.id,
        new UserError("RUNTIME_UNSUPPORTED", "This runtime does not support the request (no network)"),
        "BAD_REQUEST",
      );
    return "continue";
  };

  try {
    for await (const chunk of options.input as AsyncIterable<Buffer>) {
      let requests: RuntimeRequest[];
      try {
        requests = decoder.push(chunk);
      } catch (error) {
        const failure = toAirqubeError(error);
        logger.error({ err: failure }, "bad frame from exe-unit: stopping");
        process.stderr.write(`ya-runtime-airqube: ${failure.code}: ${failure.message}\n`);
        await stopAll();
        return 2;
      }
      for (const request of requests) {
        // Kill waits for its sandbox; other requests are not held up by it
        if ("kill" in request) void handle(request);
        else if ((await handle(request)) === "shutdown") return 0;
      }
    }
    await stopAll();
    return 0;
  } catch (error) {
    // stdin failed or was destroyed (the runtime was told to stop): nothing may outlive the service
    logger.warn({ err: toAirqubeError(error) }, "stdin closed: stopping");
    await stopAll();
    return 1;
  } finally {
    closed = true;
  }
}

/**
 * The part of a process's output its RunProcess asked for: none for `{}`, the last `atEnd` bytes, or (no spec)
 * all of it; never more than {@link MAX_STATUS_OUTPUT_BYTES}.
 */
function kept(text: string, spec: OutputSpec | undefined): Uint8Array {
  const bytes = Buffer.from(text, "utf8");
  const keep = spec === undefined ? MAX_STATUS_OUTPUT_BYTES : Math.min(spec.atEnd ?? 0, MAX_STATUS_OUTPUT_BYTES);
  return bytes.length > keep ? bytes.subarray(bytes.length - keep) : bytes;
}

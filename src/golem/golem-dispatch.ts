/**
 * One qube on one Golem provider. Golem signs nothing, so the two phases of the port are played by the
 * requestor itself:
 *
 * - `prepare` (called by `GolemMarket.dispatch`): an allocation capped at `maxGlmPerQube`, a rental of exactly
 *   this provider (`oneOf` with a provider filter), the VM deployed, the inputs uploaded.
 * - `awaitCommitment`: runs the qube, packs the declared outputs with stdout/stderr/exit status into a tar in
 *   the VM, downloads it with a byte cap and checks its size and SHA-256 against what the VM reported, unpacks
 *   it with the safe unpacker into a private staging directory, normalises and hashes the outputs exactly as
 *   the embedded network does, releases the rental, and returns H(domain, qube, provider, outputs root, salt)
 *   with a salt only the requestor knows.
 * - `reveal(outputDir)`: moves the staged outputs into place and returns the answer (no statement).
 *
 * The rental (activity, agreement) and the allocation are released on every path: success, failure, time-out
 * and abort.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Allocation, ExeUnit, GolemNetwork, ResourceRental, Result } from "@golem-sdk/golem-js";
import {
  type AirqubeError,
  buildOutputManifest,
  type OutputManifest,
  outputsRootOf,
  PeerError,
  TimeoutError,
  UserError,
} from "../qube/index.js";
import type { Dispatch, DispatchEvents, ProviderAnswer, ProviderCandidate, SealedQube } from "../requestor/api.js";
import type { SandboxOutput } from "../sandbox/api.js";
import { unpackTar } from "../sandbox/unpack.js";
import type { GolemConfig } from "./config.js";
import { fromGolemError } from "./errors.js";
import { orderFor, rentHoursFor, withinAgreedPrice } from "./order.js";
import {
  packCommand,
  parsePackReport,
  type RemoteLayout,
  remoteLayout,
  runAndPackCommand,
  runCommand,
} from "./remote-script.js";
import { RUNTIME_NAME as AIRQUBE_RUNTIME_NAME } from "./runtime/offer.js";
import { YagnaStorageProvider } from "./storage.js";

/** Domain tag of the requestor-side commitment. */
export const GOLEM_COMMITMENT_DOMAIN = "airqube/golem-commitment/v1";

/** Staged result of a committed run. */
interface Staged {
  outputsRoot: string;
  manifest: OutputManifest;
  files: SandboxOutput[];
  dir: string;
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

/** What a dispatch needs of its market. */
export interface DispatchContext {
  glm: GolemNetwork;
  config: GolemConfig;
  /** Private directory for this dispatch (created 0700 by the market, removed by `dispose`). */
  workDir: string;
  /** Provider ids whose proposal or agreement was rejected, signalled by the market's event listener. */
  watchRejections(providerId: string, onRejected: (reason: string) => void): () => void;
  onDisposed(): void;
}

function combine(...signals: (AbortSignal | undefined)[]): AbortSignal {
  return AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined));
}

/**
 * One qube on one Golem provider (see the module comment for its phases), created and prepared by
 * {@link GolemMarket.dispatch}. The requestor commits to the provider's answer itself, with a salt only it
 * knows; the rental and the allocation are released on every path.
 */
export class GolemDispatch implements Dispatch {
  private readonly controller = new AbortController();
  private allocation: Allocation | undefined;
  private rental: ResourceRental | undefined;
  private exe: ExeUnit | undefined;
  private releasing: Promise<void> | undefined;
  private disposing: Promise<void> | undefined;
  private staged: Staged | undefined;
  private readonly salt = randomBytes(32);
  private readonly layout: RemoteLayout;
  /** Errors met while releasing, for tests and logs; release never throws. */
  readonly releaseErrors: unknown[] = [];
  /**
   * How the rental's invoice ended before the allocation was released: `accepted`, `rejected` (not what was
   * agreed), or `deadline` (none settled within `timeouts.finalizeMs`); undefined before a release or without
   * a rental.
   */
  settlement: "accepted" | "rejected" | "deadline" | undefined;
  private invoiceSettled: { promise: Promise<"accepted" | "rejected">; stop: () => void } | undefined;

  constructor(
    readonly provider: ProviderCandidate,
    private readonly qube: SealedQube,
    private readonly context: DispatchContext,
    private readonly events: DispatchEvents,
  ) {
    this.layout = remoteLayout(context.config.layout.output, randomBytes(16).toString("hex"));
  }

  /** Rents this provider, deploys the VM and uploads the inputs. Releases everything on failure. */
  async prepare(options: { signal?: AbortSignal } = {}): Promise<void> {
    const { glm, config } = this.context;
    const spec = this.qube.spec.spec;
    const signal = combine(options.signal, this.controller.signal);
    try {
      // with the airqube runtime, the proposal must carry a summary of the scanned offer's key
      const order = orderFor(spec, config, this.provider.id, this.provider.operator);
      const rentHours = rentHoursFor(spec);
      try {
        this.allocation = await glm.payment.createAllocation({
          budget: config.maxGlmPerQube,
          expirationSec: Math.round(rentHours * 75 * 60),
        });
      } catch (error) {
        throw fromGolemError(error, "GOLEM_ALLOCATION_FAILED", "Could not create a GLM allocation", signal);
      }
      signal.throwIfAborted();
      const rejected = new AbortController();
      let rejection = "";
      const stopWatching = this.context.watchRejections(this.provider.id, (reason) => {
        rejection = reason;
        rejected.abort(new PeerError("PROPOSAL_REJECTED", "The provider refused the qube", { details: reason }));
      });
      const negotiation = AbortSignal.timeout(config.timeouts.negotiationMs);
      try {
        this.rental = await glm.oneOf({
          order: {
            ...order,
            payment: {
              allocation: this.allocation,
              // pay only what was agreed: golem-js accepts any amount a provider bills unless filtered
              invoiceFilter: (invoice) =>
                invoice.provider.id.toLowerCase() === this.provider.id.toLowerCase() &&
                withinAgreedPrice(invoice.amount, this.provider.price, config),
              debitNoteFilter: (note) => withinAgreedPrice(note.totalAmountDue, this.provider.price, config),
            },
          },
          signalOrTimeout: combine(signal, negotiation, rejected.signal),
        });
      } catch (error) {
        signal.throwIfAborted();
        if (rejected.signal.aborted)
          throw new PeerError("PROPOSAL_REJECTED", "The provider refused the qube", {
            details: `${this.provider.id}: ${rejection}`,
            cause: error,
          });
        if (negotiation.aborted)
          throw new TimeoutError("GOLEM_NEGOTIATION_TIMEOUT", "No agreement with the provider in time", {
            details: `${this.provider.id} after ${config.timeouts.negotiationMs} ms`,
            cause: error,
          });
        throw fromGolemError(error, "GOLEM_NEGOTIATION_FAILED", "Could not agree with the provider", signal);
      } finally {
        stopWatching();
      }
      this.invoiceSettled = this.watchInvoice(this.rental.agreement.id);
      this.events.onAgreement?.(this.provider.id);
      this.exe = await this.step(
        "GOLEM_DEPLOY",
        "The provider could not start the VM",
        config.timeouts.deployMs,
        signal,
        (s) => this.rental!.getExeUnit(s),
      );
      for (const input of spec.inputs) {
        const source = this.qube.inputs.get(input.path);
        if (!source) throw new UserError("INPUT_MISSING", "No file for a declared input", { details: input.path });
        const result = await this.step(
          "GOLEM_UPLOAD",
          "Could not upload an input to the provider",
          config.timeouts.transferMs,
          signal,
          (s) =>
            this.exe!.uploadFile(source, `${config.layout.input.replace(/\/+$/, "")}/${input.path}`, {
              signalOrTimeout: s,
            }),
        );
        expectOk(result, "GOLEM_UPLOAD_FAILED", "The provider could not store an input", input.path);
      }
      this.events.onSent?.(this.provider.id);
    } catch (error) {
      await this.release();
      await this.dispose();
      throw this.classify(error, signal, options.signal);
    }
  }

  /** Runs the qube and stages its outputs; resolves with the requestor-side commitment. */
  async awaitCommitment(options: { signal?: AbortSignal } = {}): Promise<string> {
    const signal = combine(options.signal, this.controller.signal);
    try {
      if (!this.exe) throw new PeerError("GOLEM_NOT_PREPARED", "The rental is not ready");
      const exe = this.exe;
      this.events.onStarted?.(this.provider.id);
      const packed = await this.runAndPack(exe, signal);
      const report = parsePackReport(packed.stdout);
      const cap = this.archiveCap();
      if (report.size > cap)
        throw new PeerError("OUTPUT_LIMIT", "The provider's outputs are larger than allowed", {
          details: `${report.size} bytes packed, limit ${cap}`,
        });
      const tarFile = join(this.context.workDir, "outputs.tar");
      await this.download(exe, report, tarFile, signal);
      this.staged = await this.unpack(tarFile, signal);
      await rm(tarFile, { force: true });
      return golemCommitmentOf(this.qube.spec.id, this.provider.id, this.staged.outputsRoot, this.salt);
    } catch (error) {
      await this.release();
      await this.dispose();
      throw this.classify(error, signal, options.signal);
    } finally {
      await this.release();
    }
  }

  /**
   * Runs the qube, then packs its outputs: two exe-script commands on a runtime whose volumes persist between
   * processes (Golem's VM), one on Airqube's runtime, whose every process starts with a fresh `/output` (the
   * run's files land in the volume only after its sandbox is gone). Resolves with the pack step's result.
   */
  private async runAndPack(exe: ExeUnit, signal: AbortSignal): Promise<Result> {
    const { config } = this.context;
    const spec = this.qube.spec.spec;
    const runMs = spec.limits.wallTimeMs + config.timeouts.runGraceMs;
    if (config.runtime.name === AIRQUBE_RUNTIME_NAME) {
      const both = runAndPackCommand(this.layout, spec.command, spec.env, spec.outputs, config.logBytes);
      const result = await this.step(
        "GOLEM_RUN",
        "The qube did not finish on the provider",
        runMs + config.timeouts.transferMs,
        signal,
        (s) => exe.run(both.entryPoint, both.args, { signalOrTimeout: s }),
      );
      expectOk(result, "GOLEM_RUN_FAILED", "The provider failed to run the qube and pack its outputs");
      return result;
    }
    const run = runCommand(this.layout, spec.command, spec.env);
    const ran = await this.step("GOLEM_RUN", "The qube did not finish on the provider", runMs, signal, (s) =>
      exe.run(run.entryPoint, run.args, { signalOrTimeout: s }),
    );
    expectOk(ran, "GOLEM_RUN_FAILED", "The provider failed to run the qube");
    const pack = packCommand(this.layout, spec.outputs, config.logBytes);
    const packed = await this.step(
      "GOLEM_PACK",
      "The provider could not pack the outputs",
      config.timeouts.transferMs,
      signal,
      (s) => exe.run(pack.entryPoint, pack.args, { signalOrTimeout: s }),
    );
    expectOk(packed, "GOLEM_PACK_FAILED", "The provider could not pack the outputs");
    return packed;
  }

  async reveal(outputDir: string, options: { signal?: AbortSignal } = {}): Promise<ProviderAnswer> {
    options.signal?.throwIfAborted();
    const staged = this.staged;
    if (!staged) throw new PeerError("COMMITMENT_MISSING", "No committed run to reveal");
    try {
      await mkdir(outputDir, { recursive: true });
      for (const entry of await readdir(staged.dir)) await rename(join(staged.dir, entry), join(outputDir, entry));
    } catch (error) {
      throw new UserError("OUTPUT_CONFLICT", "Could not place the provider's outputs", {
        details: `${outputDir}: ${(error as Error).message}`,
        cause: error,
      });
    } finally {
      await this.dispose();
    }
    return {
      provider: this.provider.id,
      ...(this.provider.payout ? { payout: this.provider.payout } : {}),
      outputsRoot: staged.outputsRoot,
      manifest: staged.manifest,
      files: staged.files,
      outputDir,
      exitCode: staged.exitCode,
      stdout: staged.stdout,
      stderr: staged.stderr,
    };
  }

  abort(reason: Error): void {
    this.controller.abort(reason);
    void this.release().then(() => this.dispose());
  }

  /** Releases the rental and the allocation; idempotent and never throws. */
  release(): Promise<void> {
    this.releasing ??= (async () => {
      const { glm, config } = this.context;
      if (this.rental) {
        const deadline = Date.now() + config.timeouts.finalizeMs;
        // a fresh deadline: the caller's signal may be aborted already, and golem-js would then skip the release
        const finalized = await this.rental.stopAndFinalize(config.timeouts.finalizeMs).then(
          () => true,
          (e: unknown) => {
            this.releaseErrors.push(e);
            return false;
          },
        );
        // golem-js gives up at the first step that fails (e.g. yagna refusing to destroy the activity) and
        // never terminates the agreement then: the provider would neither stop nor invoice
        if (!finalized) await this.endRental(this.rental, deadline);
        // the allocation pays the invoice: it is released only once the invoice is settled (accepted, or
        // rejected by the filters) or the finalize deadline passed, even when golem-js's finalization failed
        // early (e.g. yagna refused to destroy the activity) and did not wait for the payment itself
        this.settlement = await this.settledBy(deadline);
      }
      if (this.allocation)
        await glm.payment.releaseAllocation(this.allocation).catch((e) => this.releaseErrors.push(e));
    })();
    return this.releasing;
  }

  /** Removes the staged files (after reveal, abort, or when the market closes). */
  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      await rm(this.context.workDir, { recursive: true, force: true });
      this.context.onDisposed();
    })();
    return this.disposing;
  }

  /** Destroys the activity and terminates the agreement after golem-js's finalization failed; never throws. */
  private async endRental(rental: ResourceRental, deadline: number): Promise<void> {
    const { glm } = this.context;
    const left = () => Math.max(1000, deadline - Date.now());
    const activity = this.exe?.activity;
    if (activity) await glm.activity.destroyActivity(activity, left()).catch((e) => this.releaseErrors.push(e));
    const state = await glm.market.fetchAgreement(rental.agreement.id).then(
      (a) => a.getState(),
      () => "unknown",
    );
    if (state !== "Terminated")
      await glm.market
        .terminateAgreement(rental.agreement, "Finished", left())
        .catch((e) => this.releaseErrors.push(e));
  }

  /** Resolves when golem-js accepts or rejects the invoice of `agreementId`. */
  private watchInvoice(agreementId: string): { promise: Promise<"accepted" | "rejected">; stop: () => void } {
    const events = this.context.glm.payment.events;
    let stop = () => {};
    const promise = new Promise<"accepted" | "rejected">((resolve) => {
      const accepted = ({ invoice }: { invoice: { agreementId: string } }) => {
        if (invoice.agreementId === agreementId) resolve("accepted");
      };
      const rejected = ({ invoice }: { invoice: { agreementId: string } }) => {
        if (invoice.agreementId === agreementId) resolve("rejected");
      };
      events.on("invoiceAccepted", accepted);
      events.on("invoiceRejected", rejected);
      stop = () => {
        events.off("invoiceAccepted", accepted);
        events.off("invoiceRejected", rejected);
      };
    });
    void promise.then(() => stop());
    return { promise, stop: () => stop() };
  }

  /** The invoice's settlement, or `deadline` when none came before `deadline` (ms since the epoch). */
  private async settledBy(deadline: number): Promise<"accepted" | "rejected" | "deadline"> {
    const watch = this.invoiceSettled;
    if (!watch) return "deadline";
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        watch.promise,
        new Promise<"deadline">((resolve) => {
          timer = setTimeout(() => resolve("deadline"), Math.max(0, deadline - Date.now()));
        }),
      ]);
    } finally {
      clearTimeout(timer);
      watch.stop();
    }
  }

  private archiveCap(): number {
    const limits = this.qube.spec.spec.limits;
    return limits.outputBytes + 2 * this.context.config.logBytes + (limits.outputFiles + 16) * 2048;
  }

  /** Runs one golem-js step under its own deadline, mapping errors by cause. */
  private async step<T>(
    code: string,
    message: string,
    timeoutMs: number,
    signal: AbortSignal,
    action: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    signal.throwIfAborted();
    const deadline = AbortSignal.timeout(timeoutMs);
    try {
      return await action(combine(signal, deadline));
    } catch (error) {
      if (!signal.aborted && deadline.aborted)
        throw new TimeoutError(`${code}_TIMEOUT`, `${message} in time`, {
          details: `${this.provider.id}: no answer within ${timeoutMs} ms`,
          cause: error,
        });
      throw fromGolemError(error, `${code}_FAILED`, message, signal);
    }
  }

  /** Downloads the packed tar through yagna with a byte cap, then checks size and hash. */
  private async download(
    exe: ExeUnit,
    report: { size: number; sha256?: string | undefined },
    file: string,
    signal: AbortSignal,
  ): Promise<void> {
    const storage = this.context.glm.services.storageProvider;
    const out = createWriteStream(file, { mode: 0o600 });
    const hash = createHash("sha256");
    let received = 0;
    let overflow = false;
    const url = await storage.receiveData((chunk) => {
      received += chunk.byteLength;
      if (received > report.size) {
        overflow = true;
        // refuses the chunk: the storage provider answers the provider with an error and the transfer stops
        throw new PeerError("GOLEM_DOWNLOAD_OVERSIZE", "The provider sent more bytes than it packed", {
          details: `more than ${report.size} bytes`,
        });
      }
      hash.update(chunk);
      out.write(chunk);
    });
    // how the transfer ended as the storage provider saw it (hash, order), when it can tell
    const outcome =
      storage instanceof YagnaStorageProvider
        ? storage.outcome(url).then(
            () => undefined,
            (e) => e,
          )
        : undefined;
    let transferError: unknown;
    try {
      const result = await this.step(
        "GOLEM_DOWNLOAD",
        "Could not download the outputs",
        this.context.config.timeouts.transferMs,
        signal,
        (s) => exe.transfer(`container:${this.layout.tar}`, url, { signalOrTimeout: s }),
      );
      expectOk(result, "GOLEM_DOWNLOAD_FAILED", "The provider could not send the outputs");
    } catch (error) {
      transferError = error;
    } finally {
      await storage.release([url]).catch(() => undefined);
      await new Promise<void>((resolve, reject) =>
        out.end((error?: Error | null) => (error ? reject(error) : resolve())),
      );
    }
    if (overflow)
      throw new PeerError("GOLEM_DOWNLOAD_OVERSIZE", "The provider sent more bytes than it packed", {
        details: `more than ${report.size} bytes`,
      });
    const failure = (await outcome) as AirqubeError | undefined;
    if (failure && failure.code !== "GOLEM_DOWNLOAD_UNFINISHED") throw failure;
    if (transferError) throw transferError;
    if (failure) throw failure;
    if (received !== report.size)
      throw new PeerError("GOLEM_DOWNLOAD_TRUNCATED", "The outputs download is truncated", {
        details: `${received} of ${report.size} bytes`,
      });
    const digest = hash.digest("hex");
    if (report.sha256 && digest !== report.sha256)
      throw new PeerError("GOLEM_DOWNLOAD_CORRUPT", "The outputs download does not match its hash", {
        details: `${digest} != ${report.sha256}`,
      });
  }

  /** Unpacks the tar safely, splits off stdout/stderr/exit, and computes the outputs root. */
  private async unpack(tarFile: string, signal: AbortSignal): Promise<Staged> {
    const limits = this.qube.spec.spec.limits;
    const log = this.context.config.logBytes;
    const dir = join(this.context.workDir, "outputs");
    const unpacked = await unpackTar(
      createReadStream(tarFile),
      dir,
      {
        maxFileBytes: Math.max(limits.outputBytes, log),
        maxTotalBytes: limits.outputBytes + 2 * log,
        maxFiles: limits.outputFiles + 3,
      },
      { signal, stripPrefix: this.layout.output.replace(/^\/+/, "") },
    );
    const meta = this.layout.stage.slice(this.layout.output.length + 1);
    const read = async (name: string) => {
      if (!unpacked.some((f) => f.path === `${meta}/${name}`))
        throw new PeerError("GOLEM_RESULT_INCOMPLETE", "The provider's archive lacks the run record", {
          details: name,
        });
      return readFile(join(dir, meta, name), "utf8");
    };
    const exitText = (await read("exit")).trim();
    const stdout = await read("out");
    const stderr = await read("err");
    await rm(join(dir, meta), { recursive: true, force: true });
    const files = unpacked.filter((f) => f.path !== meta && !f.path.startsWith(`${meta}/`));
    const manifest = buildOutputManifest(files, this.qube.spec.spec, { source: "peer" });
    const exit = /^-?\d{1,3}$/.test(exitText) ? Number(exitText) : Number.NaN;
    return {
      outputsRoot: outputsRootOf(manifest),
      manifest,
      files,
      dir,
      exitCode: Number.isInteger(exit) && exit >= 0 && exit <= 255 ? exit : null,
      stdout: stdout.slice(0, log),
      stderr: stderr.slice(0, log),
    };
  }

  private classify(error: unknown, signal: AbortSignal, callerSignal: AbortSignal | undefined): AirqubeError {
    if (callerSignal?.aborted || this.controller.signal.aborted)
      return new TimeoutError("ABORTED", "The qube was aborted", {
        details: this.provider.id,
        cause: error,
      });
    return fromGolemError(error, "GOLEM_FAILED", "The Golem provider failed", signal);
  }
}

function expectOk(result: Result, code: string, message: string, what?: string): void {
  if (result?.result === "Ok") return;
  const text = [what, result?.message, typeof result?.stderr === "string" ? result.stderr.slice(0, 500) : ""]
    .filter(Boolean)
    .join(": ");
  throw new PeerError(code, message, { details: text || "no result" });
}

/**
 * The requestor-side commitment: "sha256:" + hex(SHA-256(domain NUL qubeId NUL provider NUL root NUL salt)).
 * Only the requestor knows the salt; it binds the staged outputs before any other provider's result is seen.
 */
export function golemCommitmentOf(qubeId: string, provider: string, outputsRoot: string, salt: Uint8Array): string {
  const hash = createHash("sha256");
  for (const part of [GOLEM_COMMITMENT_DOMAIN, qubeId, provider, outputsRoot]) hash.update(part).update("\0");
  return `sha256:${hash.update(salt).digest("hex")}`;
}

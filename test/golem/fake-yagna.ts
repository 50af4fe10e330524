/**
 * A small in-memory Golem network for tests: implementations of golem-js's market, activity and payment APIs
 * (and of its storage provider and yagna handle) that return yagna-shaped data (ProposalDTO, AgreementDTO,
 * allocations, invoices, ExeScript results), plugged in through `new GolemNetwork({ override })`.
 *
 * Each fake provider has a VM file system (a Map of absolute path → bytes) and understands the ExeScript
 * commands golem-js sends: deploy, start, transfer (in and out through the fake storage provider) and run.
 * `run` of Airqube's two remote scripts is emulated (the scripts themselves are tested on a real shell in
 * remote-script.test.ts); the qube's own command is played by the provider's `execute` behaviour.
 *
 * The ledger (`counts`) records every agreement, activity and allocation created and released, so a test can
 * assert that nothing leaked.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import {
  Activity,
  Agreement,
  Allocation,
  Demand,
  GolemMarketError,
  type GolemNetworkOptions,
  Invoice,
  MarketErrorCode,
  OfferProposal,
  Result,
  ScannedOffer,
} from "@golem-sdk/golem-js";
import { EMPTY, Observable, Subject } from "rxjs";
import tar from "tar-stream";

export const PLATFORM = "erc20-holesky-tglm";
export const REQUESTOR_ADDRESS = "0x00000000000000000000000000000000000000aa";

export interface ExecuteContext {
  command: string[];
  env: Record<string, string>;
  /** Input files by path relative to the input directory. */
  inputs: Map<string, Buffer>;
}
export interface ExecuteResult {
  exitCode: number;
  stdout?: string;
  stderr?: string;
  /** Files written, relative to the output directory. */
  outputs: Record<string, string | Buffer>;
}

export interface FakeProviderSpec {
  id: string;
  name?: string;
  wallet?: string;
  /** Linear price per cpu second, per env second, start (GLM). */
  price?: [number, number, number];
  memGib?: number;
  /** What the qube produces on this provider. Default `honestExecute`. */
  execute?: (ctx: ExecuteContext) => ExecuteResult;
  /** The provider rejects the requestor's counter-proposal. */
  rejectCounter?: string;
  /** The provider rejects the agreement. */
  rejectAgreement?: string;
  /** Never answers the demand (no offer proposal). */
  silent?: boolean;
  /** The exe-unit crashes during the qube's run. */
  crashOnRun?: boolean;
  /** The run never ends. */
  hangOnRun?: boolean;
  /** Sends only this fraction of the packed outputs. */
  truncateDownload?: number;
  /** Flips a byte of the packed outputs in transit (size unchanged). */
  corruptDownload?: boolean;
  /** Offer properties over the defaults (e.g. another runtime's name and properties). */
  properties?: Record<string, unknown>;
}

/** Deterministic honest behaviour: `result.txt` = sha256 of the command and every input. */
export function honestExecute(ctx: ExecuteContext): ExecuteResult {
  const hash = createHash("sha256").update(JSON.stringify(ctx.command));
  for (const [path, data] of [...ctx.inputs].sort(([a], [b]) => (a < b ? -1 : 1))) hash.update(path).update(data);
  const digest = hash.digest("hex");
  return { exitCode: 0, stdout: `ran ${ctx.command.join(" ")}\n`, outputs: { "result.txt": `${digest}\n` } };
}

export function lyingExecute(ctx: ExecuteContext): ExecuteResult {
  return { ...honestExecute(ctx), outputs: { "result.txt": "forty-two\n" } };
}

interface FakeVm {
  provider: FakeProviderSpec;
  fs: Map<string, Buffer>;
  state: string;
  batches: Map<string, { results: Result[]; done: boolean; waiters: (() => void)[] }>;
}

export interface Ledger {
  demands: number;
  agreementsApproved: string[];
  agreementsTerminated: string[];
  activitiesCreated: string[];
  activitiesDestroyed: string[];
  allocationsCreated: string[];
  allocationsReleased: string[];
  invoicesAccepted: string[];
  runs: string[];
}

export class FakeGolem {
  readonly ledger: Ledger = {
    demands: 0,
    agreementsApproved: [],
    agreementsTerminated: [],
    activitiesCreated: [],
    activitiesDestroyed: [],
    allocationsCreated: [],
    allocationsReleased: [],
    invoicesAccepted: [],
    runs: [],
  };
  private seq = 0;
  private readonly providers = new Map<string, FakeProviderSpec>();
  private readonly agreements = new Map<string, { agreement: Agreement; state: string; provider: FakeProviderSpec }>();
  private readonly vms = new Map<string, FakeVm>();
  private readonly allocations = new Map<string, Allocation>();
  private readonly published = new Map<string, string | Uint8Array>();
  private readonly receivers = new Map<string, (data: Uint8Array) => void>();
  private readonly agreementEvents = new Subject<never>();
  readonly invoices$ = new Subject<Invoice>();
  readonly debitNotes$ = new Subject<never>();

  constructor(providers: FakeProviderSpec[]) {
    for (const p of providers) this.providers.set(p.id, p);
  }

  private id(prefix: string): string {
    return `${prefix}-${++this.seq}`;
  }

  private properties(p: FakeProviderSpec): Record<string, unknown> {
    const [cpu, env, start] = p.price ?? [0.00001, 0.00001, 0.001];
    return {
      "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
      "golem.com.pricing.model.linear.coeffs": [cpu, env, start],
      "golem.com.pricing.model": "linear",
      "golem.inf.mem.gib": p.memGib ?? 8,
      "golem.inf.storage.gib": 40,
      "golem.inf.cpu.threads": 4,
      "golem.inf.cpu.cores": 2,
      "golem.runtime.name": "vm",
      "golem.runtime.version": "0.4.2",
      "golem.node.id.name": p.name ?? `fake-${p.id.slice(-4)}`,
      "golem.node.debug.subnet": "public",
      "golem.activity.caps.transfer.protocol": ["gftp", "http", "https"],
      [`golem.com.payment.platform.${PLATFORM}.address`]: p.wallet ?? p.id,
      ...p.properties,
    };
  }

  /** Everything released that was taken. */
  leaks(): string[] {
    const l = this.ledger;
    const open = (taken: string[], given: string[]) => taken.filter((x) => !given.includes(x));
    return [
      ...open(l.agreementsApproved, l.agreementsTerminated).map((a) => `agreement ${a}`),
      ...open(l.activitiesCreated, l.activitiesDestroyed).map((a) => `activity ${a}`),
      ...open(l.allocationsCreated, l.allocationsReleased).map((a) => `allocation ${a}`),
    ];
  }

  /** The overrides for `new GolemNetwork({ override })`. */
  override(): NonNullable<GolemNetworkOptions["override"]> {
    return {
      yagna: this.yagna() as never,
      marketApi: this.marketApi() as never,
      activityApi: this.activityApi() as never,
      paymentApi: this.paymentApi() as never,
      storageProvider: this.storage() as never,
    };
  }

  private yagna() {
    return {
      market: {},
      identity: { getIdentity: async () => ({ identity: REQUESTOR_ADDRESS }) },
      activity: { control: {}, state: {}, exec: {} },
      payment: {},
      net: {},
      gsb: {},
      yagnaOptions: { apiKey: "test", basePath: "http://127.0.0.1:7465" },
      connect: async () => ({ identity: REQUESTOR_ADDRESS, name: "requestor", role: "manager" }),
      disconnect: async () => undefined,
    };
  }

  private marketApi() {
    const self = this;
    const proposalModel = (p: FakeProviderSpec, state: string, prev?: string) => ({
      proposalId: self.id("proposal"),
      issuerId: p.id,
      state,
      timestamp: new Date().toISOString(),
      properties: self.properties(p),
      constraints: "(&(golem.srv.comp.expiration>0))",
      ...(prev ? { prevProposalId: prev } : {}),
    });
    const streams = new Map<string, Subject<unknown>>();
    return {
      async publishDemandSpecification(spec: unknown) {
        self.ledger.demands++;
        const demand = new Demand(self.id("demand"), spec as never);
        streams.set(demand.id, new Subject());
        return demand;
      },
      async unpublishDemand() {},
      collectMarketProposalEvents(demand: Demand) {
        const stream = streams.get(demand.id) ?? new Subject();
        setTimeout(() => {
          for (const p of self.providers.values()) {
            if (p.silent) continue;
            stream.next({
              type: "ProposalReceived",
              proposal: new OfferProposal(proposalModel(p, "Initial") as never, demand),
              timestamp: new Date(),
            });
          }
        }, 5);
        return stream.asObservable();
      },
      collectAgreementEvents() {
        return self.agreementEvents.asObservable();
      },
      async counterProposal(offer: OfferProposal) {
        const p = self.providers.get(offer.provider.id)!;
        const counter = {
          id: self.id("counter"),
          previousProposalId: offer.id,
          issuer: "Requestor",
          properties: {},
          model: { proposalId: "", issuerId: REQUESTOR_ADDRESS, state: "Draft" },
        };
        const stream = streams.get(offer.demand.id);
        setTimeout(() => {
          if (p.rejectCounter) {
            stream?.next({
              type: "ProposalRejected",
              counterProposal: counter,
              reason: p.rejectCounter,
              timestamp: new Date(),
            });
            return;
          }
          stream?.next({
            type: "ProposalReceived",
            proposal: new OfferProposal(proposalModel(p, "Draft", counter.id) as never, offer.demand),
            timestamp: new Date(),
          });
        }, 5);
        return counter;
      },
      async rejectProposal() {},
      async getPaymentRelatedDemandDecorations() {
        return {
          properties: [{ key: `golem.com.payment.platform.${PLATFORM}.address`, value: REQUESTOR_ADDRESS }],
          constraints: [`(golem.com.payment.platform.${PLATFORM}.address=*)`],
        };
      },
      async getAgreement(id: string) {
        const entry = self.agreements.get(id);
        if (!entry) throw new GolemMarketError("no such agreement", MarketErrorCode.CouldNotGetAgreement);
        return self.agreementWithState(entry);
      },
      async createAgreement(proposal: OfferProposal) {
        return self.newAgreement(proposal, "Proposal");
      },
      async proposeAgreement(proposal: OfferProposal) {
        const p = self.providers.get(proposal.provider.id)!;
        const agreement = self.newAgreement(proposal, "Pending");
        if (p.rejectAgreement) {
          self.agreements.get(agreement.id)!.state = "Rejected";
          setTimeout(
            () =>
              self.agreementEvents.next({
                type: "AgreementRejected",
                agreement,
                reason: p.rejectAgreement,
                timestamp: new Date(),
              } as never),
            1,
          );
          throw new GolemMarketError(
            `Unable to confirm agreement with provider: ${p.rejectAgreement}`,
            MarketErrorCode.AgreementApprovalFailed,
          );
        }
        self.agreements.get(agreement.id)!.state = "Approved";
        self.ledger.agreementsApproved.push(agreement.id);
        return self.agreementWithState(self.agreements.get(agreement.id)!);
      },
      async confirmAgreement(agreement: Agreement) {
        return agreement;
      },
      async terminateAgreement(agreement: Agreement) {
        const entry = self.agreements.get(agreement.id)!;
        entry.state = "Terminated";
        self.ledger.agreementsTerminated.push(agreement.id);
        // the provider ends the agreement's activities and sends its invoice
        for (const [id, vm] of self.vms)
          if (vm.state !== "Terminated" && id.startsWith(`${agreement.id}/`)) self.destroyVm(id);
        setTimeout(() => self.invoices$.next(self.invoiceFor(entry)), 5);
        return self.agreementWithState(entry);
      },
      async getAgreementState(id: string) {
        return self.agreements.get(id)?.state ?? "Expired";
      },
      scan() {
        return new Observable((subscriber) => {
          const timer = setTimeout(() => {
            for (const p of self.providers.values())
              subscriber.next(
                new ScannedOffer({
                  offerId: self.id("offer"),
                  providerId: p.id,
                  properties: self.properties(p),
                  constraints: "",
                  timestamp: new Date().toISOString(),
                } as never),
              );
            subscriber.complete();
          }, 5);
          return () => clearTimeout(timer);
        });
      },
    };
  }

  private newAgreement(proposal: OfferProposal, state: string): Agreement {
    const p = this.providers.get(proposal.provider.id)!;
    const id = this.id("agreement");
    const model = {
      agreementId: id,
      demand: {
        demandId: proposal.demand.id,
        requestorId: REQUESTOR_ADDRESS,
        properties: {},
        constraints: "",
        timestamp: new Date().toISOString(),
      },
      offer: {
        offerId: proposal.id,
        providerId: p.id,
        properties: this.properties(p),
        constraints: "",
        timestamp: new Date().toISOString(),
      },
      validTo: new Date(Date.now() + 3600_000).toISOString(),
      state,
      timestamp: new Date().toISOString(),
    };
    const agreement = new Agreement(id, model as never, proposal.demand);
    this.agreements.set(id, { agreement, state, provider: p });
    return agreement;
  }

  private agreementWithState(entry: { agreement: Agreement; state: string }): Agreement {
    const a = entry.agreement;
    return new Agreement(a.id, { ...(a as unknown as { model: object }).model, state: entry.state } as never, a.demand);
  }

  private invoiceFor(entry: { agreement: Agreement; provider: FakeProviderSpec }): Invoice {
    const p = entry.provider;
    return new Invoice(
      {
        invoiceId: this.id("invoice"),
        issuerId: p.id,
        recipientId: REQUESTOR_ADDRESS,
        payeeAddr: p.wallet ?? p.id,
        payerAddr: REQUESTOR_ADDRESS,
        paymentPlatform: PLATFORM,
        timestamp: new Date().toISOString(),
        agreementId: entry.agreement.id,
        activityIds: [],
        amount: "0.001",
        paymentDueDate: new Date(Date.now() + 3600_000).toISOString(),
        status: "RECEIVED",
      } as never,
      { id: p.id, name: p.name ?? "fake", walletAddress: p.wallet ?? p.id },
    );
  }

  private destroyVm(id: string): void {
    const vm = this.vms.get(id);
    if (!vm || vm.state === "Terminated") return;
    vm.state = "Terminated";
    this.ledger.activitiesDestroyed.push(id);
    for (const batch of vm.batches.values()) for (const w of batch.waiters.splice(0)) w();
  }

  private activityApi() {
    const self = this;
    const activityOf = (id: string, previous = "New") => {
      const vm = self.vms.get(id)!;
      const [agreementId] = id.split("/");
      const entry = self.agreements.get(agreementId!)!;
      return new Activity(id, entry.agreement, vm.state as never, previous as never, {} as never);
    };
    return {
      async getActivity(id: string) {
        return activityOf(id);
      },
      async createActivity(agreement: Agreement) {
        const entry = self.agreements.get(agreement.id)!;
        const id = `${agreement.id}/${self.id("activity")}`;
        self.vms.set(id, { provider: entry.provider, fs: new Map(), state: "Initialized", batches: new Map() });
        self.ledger.activitiesCreated.push(id);
        return activityOf(id);
      },
      async destroyActivity(activity: Activity) {
        self.destroyVm(activity.id);
        return activityOf(activity.id);
      },
      async getActivityState(id: string) {
        return self.vms.get(id)?.state ?? "Terminated";
      },
      async executeScript(activity: Activity, script: { text: string }) {
        const vm = self.vms.get(activity.id)!;
        if (vm.state === "Terminated") throw new Error("activity terminated");
        const batchId = self.id("batch");
        const batch = { results: [] as Result[], done: false, waiters: [] as (() => void)[] };
        vm.batches.set(batchId, batch);
        const commands = JSON.parse(script.text) as Record<string, Record<string, unknown>>[];
        void self.runBatch(vm, batch, commands);
        return batchId;
      },
      async getExecBatchResults(activity: Activity, batchId: string, _index?: number, timeout?: number) {
        const vm = self.vms.get(activity.id)!;
        const batch = vm.batches.get(batchId)!;
        if (!batch.done && vm.state !== "Terminated") {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, (timeout ?? 5) * 1000);
            batch.waiters.push(() => {
              clearTimeout(timer);
              resolve();
            });
          });
        }
        return [...batch.results];
      },
      getExecBatchEvents() {
        return EMPTY;
      },
    };
  }

  private async runBatch(
    vm: FakeVm,
    batch: { results: Result[]; done: boolean; waiters: (() => void)[] },
    commands: Record<string, Record<string, unknown>>[],
  ): Promise<void> {
    await new Promise((r) => setTimeout(r, 2));
    for (let index = 0; index < commands.length; index++) {
      const command = commands[index]!;
      const [name, args] = Object.entries(command)[0]!;
      let outcome: { ok: boolean; stdout?: string; stderr?: string; message?: string } | "hang";
      try {
        outcome = await this.command(vm, name, args);
      } catch (error) {
        outcome = { ok: false, message: (error as Error).message };
      }
      if (outcome === "hang") return;
      if (vm.state === "Terminated") return;
      const last = index === commands.length - 1 || !outcome.ok;
      batch.results.push(
        new Result({
          index,
          eventDate: new Date().toISOString(),
          result: outcome.ok ? "Ok" : "Error",
          stdout: outcome.stdout ?? "",
          stderr: outcome.stderr ?? "",
          message: outcome.message ?? "",
          isBatchFinished: last,
        }),
      );
      if (last) break;
    }
    batch.done = true;
    for (const w of batch.waiters.splice(0)) w();
  }

  private async command(
    vm: FakeVm,
    name: string,
    args: Record<string, unknown>,
  ): Promise<{ ok: boolean; stdout?: string; stderr?: string; message?: string } | "hang"> {
    const p = vm.provider;
    switch (name) {
      case "deploy":
        return { ok: true };
      case "start":
        vm.state = "Ready";
        return { ok: true };
      case "transfer": {
        const from = String(args.from);
        const to = String(args.to);
        if (to.startsWith("container:")) {
          const source = this.published.get(from);
          if (source === undefined) return { ok: false, message: `cannot fetch ${from}` };
          vm.fs.set(
            to.slice("container:".length),
            typeof source === "string" ? await readFile(source) : Buffer.from(source),
          );
          return { ok: true };
        }
        const data = vm.fs.get(from.slice("container:".length));
        const receiver = this.receivers.get(to);
        if (!data || !receiver) return { ok: false, message: `no such file ${from}` };
        let bytes = data;
        if (p.truncateDownload !== undefined) bytes = data.subarray(0, Math.floor(data.length * p.truncateDownload));
        if (p.corruptDownload) {
          bytes = Buffer.from(data);
          bytes[600] = (bytes[600] ?? 0) ^ 0xff;
        }
        for (let i = 0; i < bytes.length; i += 4096) receiver(bytes.subarray(i, i + 4096));
        return { ok: true };
      }
      case "run": {
        const argv = args.args as string[];
        const script = argv[2];
        if (script === "airqube-run") {
          this.ledger.runs.push(p.id);
          if (p.crashOnRun) return { ok: false, message: "ExeUnit: process terminated by signal 9 (VM crashed)" };
          if (p.hangOnRun) return "hang";
          return this.emulateRun(vm, argv);
        }
        if (script === "airqube-pack") return this.emulatePack(vm, argv);
        if (script === "airqube-run-pack") {
          // one process (Airqube's runtime): run script, pack script, n, the pack step's n arguments, the run's
          const [, , , runScript, packScript, count, ...rest] = argv as [
            string,
            string,
            string,
            string,
            string,
            string,
          ];
          const n = Number(count);
          this.ledger.runs.push(p.id);
          if (p.crashOnRun) return { ok: false, message: "ExeUnit: process terminated by signal 9 (VM crashed)" };
          if (p.hangOnRun) return "hang";
          const ran = this.emulateRun(vm, ["-c", runScript, "airqube-run", ...rest.slice(n)]);
          if (!ran.ok) return ran;
          return this.emulatePack(vm, ["-c", packScript, "airqube-pack", ...rest.slice(0, n)]);
        }
        return { ok: false, message: `unknown entry point ${String(args.entry_point)}` };
      }
      default:
        return { ok: false, message: `unsupported command ${name}` };
    }
  }

  private emulateRun(vm: FakeVm, argv: string[]) {
    const [, , , stage, output, ...rest] = argv as [string, string, string, string, string, ...string[]];
    const sep = rest.indexOf("--");
    const env = Object.fromEntries(
      rest.slice(0, sep).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
    );
    const command = rest.slice(sep + 1);
    const inputs = new Map<string, Buffer>();
    for (const [path, data] of vm.fs) if (path.startsWith("/input/")) inputs.set(path.slice("/input/".length), data);
    const result = (vm.provider.execute ?? honestExecute)({ command, env, inputs });
    for (const [path, data] of Object.entries(result.outputs)) vm.fs.set(`${output}/${path}`, Buffer.from(data));
    vm.fs.set(`${stage}/stdout`, Buffer.from(result.stdout ?? ""));
    vm.fs.set(`${stage}/stderr`, Buffer.from(result.stderr ?? ""));
    vm.fs.set(`${stage}/exit`, Buffer.from(`${result.exitCode}\n`));
    return { ok: true };
  }

  private async emulatePack(vm: FakeVm, argv: string[]) {
    const [, , , stage, output, limit, tarPath, ...declared] = argv as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      ...string[],
    ];
    const pack = tar.pack();
    const entries: [string, Buffer][] = [
      [`${stage}/exit`, vm.fs.get(`${stage}/exit`) ?? Buffer.from("-1\n")],
      [`${stage}/out`, (vm.fs.get(`${stage}/stdout`) ?? Buffer.alloc(0)).subarray(0, Number(limit))],
      [`${stage}/err`, (vm.fs.get(`${stage}/stderr`) ?? Buffer.alloc(0)).subarray(0, Number(limit))],
    ];
    for (const [path, data] of [...vm.fs].sort(([a], [b]) => (a < b ? -1 : 1)))
      if (declared.some((d) => path === `${output}/${d}` || path.startsWith(`${output}/${d}/`)))
        entries.push([path, data]);
    const chunks: Buffer[] = [];
    pack.on("data", (c: unknown) => {
      chunks.push(c as Buffer);
    });
    const ended = new Promise<void>((r) => pack.on("end", () => r()));
    for (const [path, data] of entries) pack.entry({ name: path.slice(1), size: data.length, mode: 0o644 }, data);
    pack.finalize();
    await ended;
    const bytes = Buffer.concat(chunks);
    vm.fs.set(tarPath, bytes);
    const sha = createHash("sha256").update(bytes).digest("hex");
    return { ok: true, stdout: `airqube-pack-size ${bytes.length}\nairqube-pack-sha256 ${sha}\n` };
  }

  private paymentApi() {
    const self = this;
    return {
      receivedInvoices$: this.invoices$,
      receivedDebitNotes$: this.debitNotes$,
      async connect() {},
      async getInvoice() {
        throw new Error("not stored");
      },
      async acceptInvoice(invoice: Invoice) {
        self.ledger.invoicesAccepted.push(invoice.id);
        return invoice;
      },
      async rejectInvoice(invoice: Invoice) {
        return invoice;
      },
      async getDebitNote() {
        throw new Error("not stored");
      },
      async acceptDebitNote(note: unknown) {
        return note;
      },
      async rejectDebitNote(note: unknown) {
        return note;
      },
      async getAllocation(id: string) {
        return self.allocations.get(id)!;
      },
      async createAllocation(params: { budget: number; expirationSec: number; paymentPlatform?: string }) {
        const allocation = new Allocation({
          allocationId: self.id("allocation"),
          address: REQUESTOR_ADDRESS,
          paymentPlatform: params.paymentPlatform ?? PLATFORM,
          totalAmount: String(params.budget),
          spentAmount: "0",
          remainingAmount: String(params.budget),
          timestamp: new Date().toISOString(),
          timeout: new Date(Date.now() + params.expirationSec * 1000).toISOString(),
          makeDeposit: false,
        } as never);
        self.allocations.set(allocation.id, allocation);
        self.ledger.allocationsCreated.push(allocation.id);
        return allocation;
      },
      async releaseAllocation(allocation: Allocation) {
        self.ledger.allocationsReleased.push(allocation.id);
      },
    };
  }

  private storage() {
    const self = this;
    let ready = false;
    return {
      async init() {
        ready = true;
      },
      isReady: () => ready,
      async close() {
        ready = false;
      },
      async publishFile(src: string) {
        const url = `gftp://fake/${self.id("pub")}`;
        self.published.set(url, src);
        return url;
      },
      async publishData(data: Uint8Array) {
        const url = `gftp://fake/${self.id("pub")}`;
        self.published.set(url, data);
        return url;
      },
      async receiveFile(): Promise<string> {
        throw new Error("receiveFile is not used by Airqube");
      },
      async receiveData(callback: (data: Uint8Array) => void) {
        const url = `gftp://fake/${self.id("recv")}`;
        self.receivers.set(url, callback);
        return url;
      },
      async release(urls: string[]) {
        for (const url of urls) {
          self.published.delete(url);
          self.receivers.delete(url);
        }
      },
    };
  }
}

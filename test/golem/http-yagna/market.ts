/**
 * market-api/v1 of the loopback yagna (specs/market-api.yaml), requestor side, with the simulated providers
 * answering: demands and their proposal events (long poll, consumed as read), counter-proposals, rejections,
 * agreements (create → confirm → wait → terminate), agreement events (long poll by date and app session) and
 * offer scans (server-sent `offer` events, or one JSON page).
 */
import { z } from "zod";
import { matches } from "./constraints.js";
import { OFFER_CONSTRAINTS, offerProperties, PLATFORM, type SimProvider } from "./provider.js";
import {
  EventLog,
  eventDate,
  HttpError,
  type Ledger,
  newId,
  parseBody,
  type Route,
  type RouteContext,
  STREAMED,
  seconds,
  Waiters,
} from "./util.js";

const BASE = "/market-api/v1";
/** How long a simulated provider takes to answer (ms). */
const PROVIDER_LATENCY_MS = 10;
/**
 * How long a provider takes to answer a counter-proposal (ms). golem-js registers its counter-proposal only
 * after reading it back (`GET .../proposals/{id}` after the POST); a rejection event that arrives before that is
 * dropped ("Could not locate counter proposal") and the negotiation waits for its time-out. A real provider is a
 * network round trip away; the simulated one waits long enough for the read-back to finish first.
 */
const COUNTER_LATENCY_MS = 150;

const demandBodySchema = z.object({
  properties: z.record(z.string(), z.unknown()),
  constraints: z.string().max(16_384),
});
const agreementProposalSchema = z.object({ proposalId: z.string().min(1), validTo: z.iso.datetime({ offset: true }) });
const reasonSchema = z.object({ message: z.string().max(4096) }).passthrough();
const scanSchema = z.object({
  type: z.enum(["offer", "demand"]),
  constraints: z.string().max(16_384).optional(),
  timeout: z.number().optional(),
});

export interface ProposalDto {
  proposalId: string;
  issuerId: string;
  state: "Initial" | "Draft" | "Rejected" | "Accepted" | "Expired";
  timestamp: string;
  properties: Record<string, unknown>;
  constraints: string;
  prevProposalId?: string;
}

interface DemandRecord {
  id: string;
  properties: Record<string, unknown>;
  constraints: string;
  timestamp: string;
  events: Record<string, unknown>[];
  waiters: Waiters;
  closed: boolean;
}

interface ProposalRecord {
  dto: ProposalDto;
  demandId: string;
  provider: SimProvider;
  issuer: "Provider" | "Requestor";
}

/** An agreement as yagna stores it, with the provider that signed it. */
export interface AgreementRecord {
  agreementId: string;
  demand: {
    demandId: string;
    requestorId: string;
    properties: Record<string, unknown>;
    constraints: string;
    timestamp: string;
  };
  offer: {
    offerId: string;
    providerId: string;
    properties: Record<string, unknown>;
    constraints: string;
    timestamp: string;
  };
  validTo: string;
  approvedDate?: string;
  state: "Proposal" | "Pending" | "Cancelled" | "Rejected" | "Approved" | "Expired" | "Terminated";
  timestamp: string;
  appSessionId?: string;
  provider: SimProvider;
}

type AgreementEvent = { eventType: string; eventDate: string; agreementId: string } & Record<string, unknown>;

/** What the market needs of the rest of the yagna. */
export interface MarketDeps {
  requestorId: string;
  providers(): readonly SimProvider[];
  /** Whether the providers know the image of a `golem.srv.comp.task_package` value. */
  knowsImage(taskPackage: unknown): boolean;
  /** Called when an approved agreement ends (the provider stops its activities and bills). */
  onAgreementEnded(agreement: AgreementRecord, by: "Requestor" | "Provider"): void;
  ledger: Ledger;
}

export class MarketService {
  private readonly demands = new Map<string, DemandRecord>();
  private readonly proposals = new Map<string, ProposalRecord>();
  readonly agreements = new Map<string, AgreementRecord>();
  private readonly agreementWaiters = new Waiters();
  private readonly agreementEvents = new EventLog<AgreementEvent>();
  private readonly scans = new Map<string, { constraints: string; close: Set<() => void> }>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(private readonly deps: MarketDeps) {}

  routes(): Route[] {
    return [
      { method: "POST", path: `${BASE}/demands`, handler: (c) => this.subscribe(c) },
      { method: "DELETE", path: `${BASE}/demands/{id}`, handler: (c) => this.unsubscribe(c) },
      { method: "GET", path: `${BASE}/demands/{id}/events`, handler: (c) => this.collectOffers(c) },
      { method: "GET", path: `${BASE}/demands/{id}/proposals/{pid}`, handler: (c) => this.getProposal(c) },
      { method: "POST", path: `${BASE}/demands/{id}/proposals/{pid}`, handler: (c) => this.counter(c) },
      { method: "POST", path: `${BASE}/demands/{id}/proposals/{pid}/reject`, handler: (c) => this.rejectProposal(c) },
      { method: "POST", path: `${BASE}/agreements`, handler: (c) => this.createAgreement(c) },
      { method: "GET", path: `${BASE}/agreements/{id}`, handler: (c) => ({ status: 200, json: this.agreementDto(c) }) },
      { method: "POST", path: `${BASE}/agreements/{id}/confirm`, handler: (c) => this.confirm(c) },
      { method: "POST", path: `${BASE}/agreements/{id}/wait`, handler: (c) => this.waitForApproval(c) },
      { method: "POST", path: `${BASE}/agreements/{id}/terminate`, handler: (c) => this.terminate(c) },
      { method: "GET", path: `${BASE}/agreementEvents`, handler: (c) => this.collectAgreementEvents(c) },
      { method: "POST", path: `${BASE}/scan`, handler: (c) => this.beginScan(c) },
      { method: "GET", path: `${BASE}/scan/{id}/events`, handler: (c) => this.scanEvents(c) },
      { method: "DELETE", path: `${BASE}/scan/{id}`, handler: (c) => this.endScan(c) },
    ];
  }

  /** Agreements approved and not ended (leak check). */
  openAgreements(): string[] {
    return [...this.agreements.values()].filter((a) => a.state === "Approved").map((a) => a.agreementId);
  }

  /** Demands still subscribed and scans not ended (leak check). */
  openSubscriptions(): string[] {
    return [
      ...[...this.demands.values()].filter((d) => !d.closed).map((d) => `demand ${d.id}`),
      ...[...this.scans.keys()].map((id) => `scan ${id}`),
    ];
  }

  /** The provider ends an approved agreement (a provider that dies, or one that quits). */
  terminateByProvider(agreementId: string, message: string): void {
    const agreement = this.agreements.get(agreementId);
    if (agreement?.state !== "Approved") return;
    this.end(agreement, "Provider", message);
  }

  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const d of this.demands.values()) {
      d.closed = true;
      d.waiters.notify();
    }
    for (const scan of this.scans.values()) for (const close of scan.close) close();
    this.scans.clear();
  }

  private later(action: () => void, ms = PROVIDER_LATENCY_MS): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      action();
    }, ms);
    this.timers.add(timer);
  }

  private subscribe(c: RouteContext) {
    const body = parseBody(demandBodySchema, c.body);
    try {
      matches(body.constraints, {});
    } catch (error) {
      throw new HttpError(400, `invalid constraints: ${(error as Error).message}`);
    }
    const demand: DemandRecord = {
      id: newId("demand"),
      ...body,
      timestamp: eventDate(),
      events: [],
      waiters: new Waiters(),
      closed: false,
    };
    this.demands.set(demand.id, demand);
    this.deps.ledger.demandsSubscribed.push(demand.id);
    this.later(() => {
      for (const provider of this.deps.providers()) {
        if (provider.silent || !this.fits(provider, demand.constraints, demand.properties)) continue;
        this.propose(demand, provider, "Initial");
      }
    });
    return { status: 201, json: demand.id };
  }

  /** Two-way match, as yagna's matcher does: the demand's constraints on the offer and the offer's on the demand. */
  private fits(provider: SimProvider, constraints: string, properties: Record<string, unknown>): boolean {
    return matches(constraints, offerProperties(provider)) && matches(OFFER_CONSTRAINTS, properties);
  }

  private propose(demand: DemandRecord, provider: SimProvider, state: "Initial" | "Draft", prev?: string): void {
    if (demand.closed) return;
    const dto: ProposalDto = {
      proposalId: newId("proposal"),
      issuerId: provider.id,
      state,
      timestamp: eventDate(),
      properties: offerProperties(provider),
      constraints: OFFER_CONSTRAINTS,
      ...(prev ? { prevProposalId: prev } : {}),
    };
    this.proposals.set(dto.proposalId, { dto, demandId: demand.id, provider, issuer: "Provider" });
    demand.events.push({ eventType: "ProposalEvent", eventDate: eventDate(), proposal: dto });
    demand.waiters.notify();
  }

  private demand(id: string | undefined): DemandRecord {
    const demand = this.demands.get(id ?? "");
    if (!demand || demand.closed) throw new HttpError(404, `no demand ${id}`);
    return demand;
  }

  private unsubscribe(c: RouteContext) {
    const demand = this.demands.get(c.params.id ?? "");
    if (!demand) throw new HttpError(404, `no demand ${c.params.id}`);
    if (demand.closed) throw new HttpError(410, "Already unsubscribed");
    demand.closed = true;
    demand.waiters.notify();
    this.deps.ledger.demandsUnsubscribed.push(demand.id);
    return { status: 204 };
  }

  private async collectOffers(c: RouteContext) {
    const demand = this.demand(c.params.id);
    const timeout = seconds(c.query.get("timeout") ?? undefined, 5);
    const max = Math.max(1, Math.min(100, Number(c.query.get("maxEvents") ?? 10) || 10));
    await demand.waiters.wait(() => demand.events.length > 0 || demand.closed, timeout * 1000, c.signal);
    if (demand.closed) throw new HttpError(404, `demand ${demand.id} unsubscribed`);
    return { status: 200, json: demand.events.splice(0, max) };
  }

  private proposal(c: RouteContext): ProposalRecord {
    const demand = this.demand(c.params.id);
    const proposal = this.proposals.get(c.params.pid ?? "");
    if (!proposal || proposal.demandId !== demand.id) throw new HttpError(404, `no proposal ${c.params.pid}`);
    return proposal;
  }

  private getProposal(c: RouteContext) {
    const proposal = this.proposal(c);
    // the requestor's own proposals stay readable once rejected: golem-js reads its counter-proposal right
    // after posting it, and a 410 there loses the provider's rejection event (the negotiation then hangs)
    if (proposal.dto.state === "Rejected" && proposal.issuer === "Provider")
      throw new HttpError(410, "Proposal rejected");
    return { status: 200, json: proposal.dto };
  }

  private counter(c: RouteContext) {
    const prev = this.proposal(c);
    const body = parseBody(demandBodySchema, c.body);
    if (prev.issuer !== "Provider") throw new HttpError(400, "a requestor cannot counter its own proposal");
    if (prev.dto.state !== "Initial" && prev.dto.state !== "Draft") throw new HttpError(410, "Proposal rejected");
    const demand = this.demand(c.params.id);
    const dto: ProposalDto = {
      proposalId: newId("proposal"),
      issuerId: this.deps.requestorId,
      state: "Draft",
      timestamp: eventDate(),
      properties: body.properties,
      constraints: body.constraints,
      prevProposalId: prev.dto.proposalId,
    };
    const provider = prev.provider;
    this.proposals.set(dto.proposalId, { dto, demandId: demand.id, provider, issuer: "Requestor" });
    this.later(() => {
      const refusal =
        provider.rejectCounter ??
        (!this.fits(provider, body.constraints, body.properties)
          ? "the demand does not match the offer"
          : body.properties["golem.com.payment.chosen-platform"] !== PLATFORM
            ? `no payment platform ${PLATFORM} chosen`
            : !this.deps.knowsImage(body.properties["golem.srv.comp.task_package"])
              ? "unknown task package"
              : undefined);
      if (refusal) {
        dto.state = "Rejected";
        demand.events.push({
          eventType: "ProposalRejectedEvent",
          eventDate: eventDate(),
          proposalId: dto.proposalId,
          reason: { message: refusal, "golem.proposal.rejection.is-final": true },
        });
        demand.waiters.notify();
      } else this.propose(demand, provider, "Draft", dto.proposalId);
    }, COUNTER_LATENCY_MS);
    return { status: 201, json: dto.proposalId };
  }

  private rejectProposal(c: RouteContext) {
    const proposal = this.proposal(c);
    parseBody(reasonSchema.partial(), c.body ?? {});
    if (proposal.dto.state === "Rejected") throw new HttpError(410, "Proposal already rejected");
    proposal.dto.state = "Rejected";
    return { status: 204 };
  }

  private createAgreement(c: RouteContext) {
    const body = parseBody(agreementProposalSchema, c.body);
    const proposal = this.proposals.get(body.proposalId);
    if (!proposal) throw new HttpError(404, `no proposal ${body.proposalId}`);
    if (proposal.issuer !== "Provider") throw new HttpError(400, "an agreement is made from the provider's proposal");
    if (proposal.dto.state === "Initial") throw new HttpError(409, "Proposal not negotiated yet (in `Initial` state)");
    if (proposal.dto.state !== "Draft") throw new HttpError(410, "Proposal rejected or expired");
    const counter = this.proposals.get(proposal.dto.prevProposalId ?? "");
    const demand = this.demands.get(proposal.demandId);
    if (!counter || !demand) throw new HttpError(409, "Proposal not negotiated yet");
    proposal.dto.state = "Accepted";
    const agreement: AgreementRecord = {
      agreementId: newId("agreement"),
      demand: {
        demandId: demand.id,
        requestorId: this.deps.requestorId,
        properties: counter.dto.properties,
        constraints: counter.dto.constraints,
        timestamp: counter.dto.timestamp,
      },
      offer: {
        offerId: proposal.dto.proposalId,
        providerId: proposal.provider.id,
        properties: proposal.dto.properties,
        constraints: proposal.dto.constraints,
        timestamp: proposal.dto.timestamp,
      },
      validTo: body.validTo,
      state: "Proposal",
      timestamp: eventDate(),
      provider: proposal.provider,
    };
    this.agreements.set(agreement.agreementId, agreement);
    return { status: 201, json: agreement.agreementId };
  }

  private agreement(id: string | undefined): AgreementRecord {
    const agreement = this.agreements.get(id ?? "");
    if (!agreement) throw new HttpError(404, `no agreement ${id}`);
    return agreement;
  }

  private agreementDto(c: RouteContext) {
    const { provider: _provider, ...dto } = this.agreement(c.params.id);
    return dto;
  }

  private confirm(c: RouteContext) {
    const agreement = this.agreement(c.params.id);
    if (agreement.state !== "Proposal") throw new HttpError(410, "Agreement not in `Proposal` state");
    const session = c.query.get("appSessionId");
    if (session) agreement.appSessionId = session;
    agreement.state = "Pending";
    this.agreementWaiters.notify();
    this.later(() => {
      if (agreement.state !== "Pending") return;
      const refusal = agreement.provider.rejectAgreement;
      if (refusal) {
        agreement.state = "Rejected";
        this.deps.ledger.agreementsRejected.push(agreement.agreementId);
        this.event(agreement, "AgreementRejectedEvent", { reason: { message: refusal } });
      } else {
        agreement.state = "Approved";
        agreement.approvedDate = eventDate();
        this.deps.ledger.agreementsApproved.push(agreement.agreementId);
        this.event(agreement, "AgreementApprovedEvent", {});
      }
      this.agreementWaiters.notify();
    });
    return { status: 204 };
  }

  private async waitForApproval(c: RouteContext) {
    const agreement = this.agreement(c.params.id);
    const timeout = seconds(c.query.get("timeout") ?? undefined, 5);
    if (agreement.state === "Proposal") throw new HttpError(409, "Agreement not confirmed yet by Requestor himself");
    await this.agreementWaiters.wait(() => agreement.state !== "Pending", timeout * 1000, c.signal);
    if (agreement.state === "Pending") throw new HttpError(408, "Agreement not approved within given timeout");
    if (agreement.state !== "Approved") throw new HttpError(410, `Agreement is ${agreement.state}`);
    return { status: 204 };
  }

  private terminate(c: RouteContext) {
    const agreement = this.agreement(c.params.id);
    const reason = parseBody(reasonSchema.partial(), c.body ?? {});
    if (agreement.state === "Proposal" || agreement.state === "Pending")
      throw new HttpError(409, "Agreement can not be terminated yet");
    if (agreement.state !== "Approved") throw new HttpError(410, `Agreement is ${agreement.state}`);
    this.end(agreement, "Requestor", reason.message ?? "");
    return { status: 204 };
  }

  private end(agreement: AgreementRecord, by: "Requestor" | "Provider", message: string): void {
    agreement.state = "Terminated";
    this.deps.ledger.agreementsTerminated.push({ id: agreement.agreementId, by });
    this.event(agreement, "AgreementTerminatedEvent", {
      terminator: by,
      signature: `sim-signature-${agreement.agreementId}`,
      reason: { message, "golem.requestor.code": by === "Requestor" ? "Success" : "Failure" },
    });
    this.deps.onAgreementEnded(agreement, by);
  }

  private event(agreement: AgreementRecord, eventType: string, extra: Record<string, unknown>): void {
    this.agreementEvents.push({
      eventType,
      eventDate: eventDate(),
      agreementId: agreement.agreementId,
      ...(agreement.appSessionId ? { appSessionId: agreement.appSessionId } : {}),
      ...extra,
    });
  }

  private async collectAgreementEvents(c: RouteContext) {
    const timeout = seconds(c.query.get("timeout") ?? undefined, 5);
    const max = Math.max(1, Math.min(100, Number(c.query.get("maxEvents") ?? 10) || 10));
    const session = c.query.get("appSessionId");
    const events = await this.agreementEvents.read(
      c.query.get("afterTimestamp") ?? undefined,
      (e) => !session || e.appSessionId === session,
      max,
      timeout * 1000,
      c.signal,
    );
    return { status: 200, json: events.map(({ appSessionId: _s, ...e }) => e) };
  }

  private beginScan(c: RouteContext) {
    const body = parseBody(scanSchema, c.body);
    if (body.type !== "offer") throw new HttpError(400, "only offer scans are simulated");
    const id = newId("scan");
    this.scans.set(id, { constraints: body.constraints ?? "", close: new Set() });
    this.deps.ledger.scansStarted.push(id);
    return { status: 201, json: id };
  }

  private offers(constraints: string) {
    return this.deps
      .providers()
      .filter((p) => !p.silent && matches(constraints, offerProperties(p)))
      .map((p) => ({
        offerId: newId("offer"),
        providerId: p.id,
        properties: offerProperties(p),
        constraints: OFFER_CONSTRAINTS,
        timestamp: eventDate(),
      }));
  }

  private scanEvents(c: RouteContext) {
    const scan = this.scans.get(c.params.id ?? "");
    if (!scan) throw new HttpError(404, `no scan ${c.params.id}`);
    const accept = String(c.headers.accept ?? "");
    if (!accept.includes("text/event-stream")) return { status: 200, json: this.offers(scan.constraints) };
    const res = c.res;
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    const close = () => res.end();
    scan.close.add(close);
    res.on("close", () => scan.close.delete(close));
    this.later(() => {
      for (const offer of this.offers(scan.constraints))
        if (!res.writableEnded) res.write(`event: offer\ndata: ${JSON.stringify(offer)}\n\n`);
    });
    return STREAMED;
  }

  private endScan(c: RouteContext) {
    const scan = this.scans.get(c.params.id ?? "");
    if (!scan) throw new HttpError(404, `no scan ${c.params.id}`);
    this.scans.delete(c.params.id!);
    this.deps.ledger.scansEnded.push(c.params.id!);
    for (const close of scan.close) close();
    return { status: 204 };
  }
}

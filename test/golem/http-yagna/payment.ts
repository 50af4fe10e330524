/**
 * payment-api/v1 of the loopback yagna (specs/payment-api.yaml), requestor side: allocations, the demand
 * decorations of the payment platform, and the invoices and debit notes the simulated providers issue, with
 * their event long-polls (by date and app session) and accept/reject. An acceptance is checked as yagna
 * would: the document must be RECEIVED, the allocation live, and the amount the one billed and covered.
 */
import { z } from "zod";
import { PLATFORM } from "./provider.js";
import {
  EventLog,
  eventDate,
  HttpError,
  type Ledger,
  newId,
  parseBody,
  type Route,
  type RouteContext,
  seconds,
} from "./util.js";

const BASE = "/payment-api/v1";

const decimal = z.string().regex(/^\d{1,30}(\.\d{1,18})?$/, "a decimal amount");
const allocationSchema = z.object({
  totalAmount: decimal,
  paymentPlatform: z.union([z.string(), z.object({ driver: z.string(), network: z.string(), token: z.string() })]),
  address: z.string().optional(),
  timeout: z.iso.datetime({ offset: true }).optional(),
  makeDeposit: z.boolean().optional(),
});
const acceptanceSchema = z.object({ totalAmountAccepted: decimal, allocationId: z.string().min(1) });
const rejectionSchema = z.object({
  rejectionReason: z.enum(["UNSOLICITED_SERVICE", "BAD_SERVICE", "INCORRECT_AMOUNT"]),
  totalAmountAccepted: decimal,
  message: z.string().max(4096).optional(),
});

interface Allocation {
  allocationId: string;
  address: string;
  paymentPlatform: string;
  totalAmount: string;
  spentAmount: string;
  remainingAmount: string;
  timestamp: string;
  timeout?: string;
  makeDeposit: boolean;
}

type Status = "RECEIVED" | "ACCEPTED" | "REJECTED";
interface Invoice {
  invoiceId: string;
  issuerId: string;
  recipientId: string;
  payeeAddr: string;
  payerAddr: string;
  paymentPlatform: string;
  timestamp: string;
  agreementId: string;
  activityIds: string[];
  amount: string;
  paymentDueDate: string;
  status: Status;
}
interface DebitNote {
  debitNoteId: string;
  issuerId: string;
  recipientId: string;
  payeeAddr: string;
  payerAddr: string;
  paymentPlatform: string;
  previousDebitNoteId?: string;
  timestamp: string;
  agreementId: string;
  activityId: string;
  totalAmountDue: string;
  usageCounterVector: number[];
  paymentDueDate: string;
  status: Status;
}
type DocumentEvent = { eventType: string; eventDate: string; session?: string } & Record<string, string>;

export interface PaymentDeps {
  requestorId: string;
  /** The app session the agreement was confirmed with (events are filtered by it). */
  sessionOf(agreementId: string): string | undefined;
  ledger: Ledger;
}

/** GLM with at most 18 decimals, as yagna writes amounts. */
export function glm(amount: number): string {
  return amount.toFixed(18).replace(/\.?0+$/, "") || "0";
}

/** GLM amounts compared exactly, in wei. */
function wei(amount: string): bigint {
  const [whole, frac = ""] = amount.split(".");
  return BigInt(whole ?? "0") * 10n ** 18n + BigInt(frac.padEnd(18, "0").slice(0, 18));
}

function fromWei(value: bigint): string {
  const whole = value / 10n ** 18n;
  const frac = (value % 10n ** 18n).toString().padStart(18, "0").replace(/0+$/, "");
  return frac ? `${whole}.${frac}` : `${whole}`;
}

export class PaymentService {
  readonly allocations = new Map<string, Allocation>();
  private readonly released = new Set<string>();
  readonly invoices = new Map<string, Invoice>();
  readonly debitNotes = new Map<string, DebitNote>();
  private readonly invoiceEvents = new EventLog<DocumentEvent>();
  private readonly debitNoteEvents = new EventLog<DocumentEvent>();

  constructor(private readonly deps: PaymentDeps) {}

  routes(): Route[] {
    return [
      { method: "POST", path: `${BASE}/allocations`, handler: (c) => this.createAllocation(c) },
      {
        method: "GET",
        path: `${BASE}/allocations/{id}`,
        handler: (c) => ({ status: 200, json: this.allocation(c.params.id) }),
      },
      { method: "DELETE", path: `${BASE}/allocations/{id}`, handler: (c) => this.releaseAllocation(c) },
      { method: "GET", path: `${BASE}/demandDecorations`, handler: (c) => this.decorations(c) },
      { method: "GET", path: `${BASE}/invoiceEvents`, handler: (c) => this.events(c, this.invoiceEvents) },
      { method: "GET", path: `${BASE}/debitNoteEvents`, handler: (c) => this.events(c, this.debitNoteEvents) },
      {
        method: "GET",
        path: `${BASE}/invoices/{id}`,
        handler: (c) => ({ status: 200, json: this.invoice(c.params.id) }),
      },
      { method: "POST", path: `${BASE}/invoices/{id}/accept`, handler: (c) => this.acceptInvoice(c) },
      { method: "POST", path: `${BASE}/invoices/{id}/reject`, handler: (c) => this.rejectInvoice(c) },
      {
        method: "GET",
        path: `${BASE}/debitNotes/{id}`,
        handler: (c) => ({ status: 200, json: this.debitNote(c.params.id) }),
      },
      { method: "POST", path: `${BASE}/debitNotes/{id}/accept`, handler: (c) => this.acceptDebitNote(c) },
    ];
  }

  /** Allocations not released (leak check). */
  openAllocations(): string[] {
    return [...this.allocations.keys()].filter((id) => !this.released.has(id));
  }

  /** A provider bills an agreement (once it ended). */
  issueInvoice(agreementId: string, provider: string, activityIds: string[], amount: number): Invoice {
    const invoice: Invoice = {
      invoiceId: newId("invoice"),
      issuerId: provider,
      recipientId: this.deps.requestorId,
      payeeAddr: provider,
      payerAddr: this.deps.requestorId,
      paymentPlatform: PLATFORM,
      timestamp: eventDate(),
      agreementId,
      activityIds,
      amount: glm(amount),
      paymentDueDate: new Date(Date.now() + 3600_000).toISOString(),
      status: "RECEIVED",
    };
    this.invoices.set(invoice.invoiceId, invoice);
    this.deps.ledger.invoicesIssued.push({ id: invoice.invoiceId, agreementId, amount: invoice.amount });
    this.deps.ledger.payments.push(`invoice-issued:${agreementId}`);
    const session = this.deps.sessionOf(agreementId);
    this.invoiceEvents.push({
      eventType: "InvoiceReceivedEvent",
      eventDate: eventDate(),
      invoiceId: invoice.invoiceId,
      ...(session ? { session } : {}),
    });
    return invoice;
  }

  /** A provider sends a debit note for a running activity (the total due so far). */
  issueDebitNote(agreementId: string, activityId: string, provider: string, due: number, usage: number[]): void {
    const previous = [...this.debitNotes.values()].filter((d) => d.activityId === activityId).at(-1);
    const note: DebitNote = {
      debitNoteId: newId("debit-note"),
      issuerId: provider,
      recipientId: this.deps.requestorId,
      payeeAddr: provider,
      payerAddr: this.deps.requestorId,
      paymentPlatform: PLATFORM,
      ...(previous ? { previousDebitNoteId: previous.debitNoteId } : {}),
      timestamp: eventDate(),
      agreementId,
      activityId,
      totalAmountDue: glm(due),
      usageCounterVector: usage,
      paymentDueDate: new Date(Date.now() + 3600_000).toISOString(),
      status: "RECEIVED",
    };
    this.debitNotes.set(note.debitNoteId, note);
    this.deps.ledger.debitNotesIssued.push({ id: note.debitNoteId, activityId, amount: note.totalAmountDue });
    const session = this.deps.sessionOf(agreementId);
    this.debitNoteEvents.push({
      eventType: "DebitNoteReceivedEvent",
      eventDate: eventDate(),
      debitNoteId: note.debitNoteId,
      ...(session ? { session } : {}),
    });
  }

  private createAllocation(c: RouteContext) {
    const body = parseBody(allocationSchema, c.body);
    const platform =
      typeof body.paymentPlatform === "string"
        ? body.paymentPlatform
        : `${body.paymentPlatform.driver}-${body.paymentPlatform.network}-${body.paymentPlatform.token}`;
    if (platform !== PLATFORM) throw new HttpError(400, `payment platform ${platform} is not initialised`);
    if (body.address && body.address !== this.deps.requestorId) throw new HttpError(400, `no account ${body.address}`);
    if (wei(body.totalAmount) <= 0n) throw new HttpError(400, "totalAmount must be positive");
    const allocation: Allocation = {
      allocationId: newId("allocation"),
      address: this.deps.requestorId,
      paymentPlatform: platform,
      totalAmount: body.totalAmount,
      spentAmount: "0",
      remainingAmount: body.totalAmount,
      timestamp: eventDate(),
      ...(body.timeout ? { timeout: body.timeout } : {}),
      makeDeposit: false,
    };
    this.allocations.set(allocation.allocationId, allocation);
    this.deps.ledger.allocationsCreated.push(allocation.allocationId);
    return { status: 201, json: allocation };
  }

  private allocation(id: string | undefined): Allocation {
    const allocation = this.allocations.get(id ?? "");
    if (!allocation || this.released.has(allocation.allocationId)) throw new HttpError(404, `no allocation ${id}`);
    return allocation;
  }

  private releaseAllocation(c: RouteContext) {
    const allocation = this.allocation(c.params.id);
    this.released.add(allocation.allocationId);
    this.deps.ledger.allocationsReleased.push(allocation.allocationId);
    this.deps.ledger.payments.push(`allocation-released:${allocation.allocationId}`);
    return { status: 204 };
  }

  private decorations(c: RouteContext) {
    const ids = (c.query.get("allocationIds") ?? "").split(",").filter(Boolean);
    if (ids.length === 0) throw new HttpError(400, "allocationIds is required");
    for (const id of ids) this.allocation(id);
    return {
      status: 200,
      json: {
        properties: [
          { key: `golem.com.payment.platform.${PLATFORM}.address`, value: this.deps.requestorId },
          { key: "golem.com.payment.protocol.version", value: "3" },
        ],
        constraints: [`(golem.com.payment.platform.${PLATFORM}.address=*)`],
      },
    };
  }

  private async events(c: RouteContext, log: EventLog<DocumentEvent>) {
    const timeout = seconds(c.query.get("timeout") ?? undefined, 5);
    const max = Math.max(1, Math.min(100, Number(c.query.get("maxEvents") ?? 10) || 10));
    const session = c.query.get("appSessionId");
    const events = await log.read(
      c.query.get("afterTimestamp") ?? undefined,
      (e) => !session || e.session === session,
      max,
      timeout * 1000,
      c.signal,
    );
    return { status: 200, json: events.map(({ session: _s, ...e }) => e) };
  }

  private invoice(id: string | undefined): Invoice {
    const invoice = this.invoices.get(id ?? "");
    if (!invoice) throw new HttpError(404, `no invoice ${id}`);
    return invoice;
  }

  private debitNote(id: string | undefined): DebitNote {
    const note = this.debitNotes.get(id ?? "");
    if (!note) throw new HttpError(404, `no debit note ${id}`);
    return note;
  }

  /** Takes `amount` from the allocation, or throws 400 as yagna does when it cannot cover it. */
  private spend(allocationId: string, amount: string): void {
    const allocation = this.allocation(allocationId);
    const remaining = wei(allocation.remainingAmount) - wei(amount);
    if (remaining < 0n) throw new HttpError(400, `allocation ${allocationId} cannot cover ${amount}`);
    allocation.remainingAmount = fromWei(remaining);
    allocation.spentAmount = fromWei(wei(allocation.spentAmount) + wei(amount));
  }

  private acceptInvoice(c: RouteContext) {
    const invoice = this.invoice(c.params.id);
    const body = parseBody(acceptanceSchema, c.body);
    if (invoice.status === "ACCEPTED") throw new HttpError(400, "invoice already accepted");
    if (wei(body.totalAmountAccepted) !== wei(invoice.amount))
      throw new HttpError(400, `accepted ${body.totalAmountAccepted}, billed ${invoice.amount}`);
    this.spend(body.allocationId, invoice.amount);
    invoice.status = "ACCEPTED";
    this.deps.ledger.invoicesAccepted.push({
      id: invoice.invoiceId,
      amount: invoice.amount,
      allocationId: body.allocationId,
    });
    this.deps.ledger.payments.push(`invoice-accepted:${invoice.agreementId}`);
    return { status: 200 };
  }

  private rejectInvoice(c: RouteContext) {
    const invoice = this.invoice(c.params.id);
    const body = parseBody(rejectionSchema, c.body);
    if (invoice.status === "ACCEPTED") throw new HttpError(400, "an accepted invoice cannot be rejected");
    invoice.status = "REJECTED";
    this.deps.ledger.invoicesRejected.push({ id: invoice.invoiceId, message: body.message ?? body.rejectionReason });
    this.deps.ledger.payments.push(`invoice-rejected:${invoice.agreementId}`);
    return { status: 200 };
  }

  private acceptDebitNote(c: RouteContext) {
    const note = this.debitNote(c.params.id);
    const body = parseBody(acceptanceSchema, c.body);
    if (wei(body.totalAmountAccepted) !== wei(note.totalAmountDue))
      throw new HttpError(400, `accepted ${body.totalAmountAccepted}, due ${note.totalAmountDue}`);
    this.allocation(body.allocationId);
    note.status = "ACCEPTED";
    this.deps.ledger.debitNotesAccepted.push({ id: note.debitNoteId, amount: note.totalAmountDue });
    return { status: 200 };
  }
}

/**
 * Small pieces shared by the loopback yagna's modules: ids, strictly increasing event dates, long-poll event
 * queues and the typed HTTP error every route throws.
 */
import { randomBytes } from "node:crypto";

/** An HTTP answer other than 2xx, with yagna's `{ message }` body. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

/** A fresh id: `prefix-` and 16 random hex digits (yagna uses opaque hex ids). */
export function newId(prefix: string): string {
  return `${prefix}-${randomBytes(8).toString("hex")}`;
}

let lastMs = 0;
/** An ISO date strictly later than every date this function returned before (clients page by `afterTimestamp`). */
export function eventDate(): string {
  lastMs = Math.max(Date.now(), lastMs + 1);
  return new Date(lastMs).toISOString();
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * A list that long-polls wait on: `wait(ready, timeoutMs, signal)` resolves as soon as `ready()` is true
 * (checked at once and after every `notify()`), or when the time is up or the signal aborts.
 */
export class Waiters {
  private readonly waiting = new Set<() => void>();

  notify(): void {
    for (const wake of [...this.waiting]) wake();
  }

  async wait(ready: () => boolean, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (ready()) return true;
    if (timeoutMs <= 0 || signal?.aborted) return false;
    return new Promise<boolean>((resolve) => {
      const finish = (value: boolean) => {
        clearTimeout(timer);
        this.waiting.delete(check);
        signal?.removeEventListener("abort", onAbort);
        resolve(value);
      };
      const check = () => {
        if (ready()) finish(true);
      };
      const onAbort = () => finish(ready());
      const timer = setTimeout(() => finish(ready()), timeoutMs);
      this.waiting.add(check);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** How many long-polls wait now. */
  get size(): number {
    return this.waiting.size;
  }
}

/** Events with an `eventDate`, read by date (`afterTimestamp`) and optionally filtered; nothing is consumed. */
export class EventLog<T extends { eventDate: string }> {
  readonly events: T[] = [];
  readonly waiters = new Waiters();

  push(event: T): void {
    this.events.push(event);
    this.waiters.notify();
  }

  /** Long-polls for events after `after` that pass `filter`, at most `max`. */
  async read(
    after: string | undefined,
    filter: (event: T) => boolean,
    max: number,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<T[]> {
    const afterMs = after ? Date.parse(after) : Number.NEGATIVE_INFINITY;
    const pick = () => this.events.filter((e) => Date.parse(e.eventDate) > afterMs && filter(e)).slice(0, max);
    await this.waiters.wait(() => pick().length > 0, timeoutMs, signal);
    return pick();
  }
}

/** Seconds from a query value, bounded to [0, max] (yagna's `timeout` parameters are seconds, floats allowed). */
export function seconds(value: string | undefined, fallback: number, max = 60): number {
  const n = value === undefined ? fallback : Number(value);
  if (!Number.isFinite(n) || n < 0) throw new HttpError(400, `invalid timeout: ${value}`);
  return Math.min(n, max);
}

/** What a route handler gets: path parameters, the query, the parsed JSON body and a signal for a gone client. */
export interface RouteContext {
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
  signal: AbortSignal;
  headers: Record<string, string | string[] | undefined>;
  /** The raw response, for handlers that stream (server-sent events); they return `STREAMED`. */
  res: import("node:http").ServerResponse;
}

/** A handler's answer: a status and an optional JSON body, or `STREAMED` when it wrote the response itself. */
export type Reply = { status: number; json?: unknown } | typeof STREAMED;
export const STREAMED = Symbol("streamed");

export interface Route {
  method: "GET" | "POST" | "PUT" | "DELETE";
  /** Path under the server root with `{name}` parameters, e.g. `/market-api/v1/demands/{id}/events`. */
  path: string;
  handler: (ctx: RouteContext) => Promise<Reply> | Reply;
}

/** Parses `body` with a zod schema, or throws HttpError 400. */
export function parseBody<T>(
  schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { message: string } } },
  body: unknown,
): T {
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw new HttpError(400, `invalid request body: ${parsed.error.message}`);
  return parsed.data;
}

/** Everything the loopback yagna handed out and took back, for assertions and the leak check. */
export interface Ledger {
  demandsSubscribed: string[];
  demandsUnsubscribed: string[];
  scansStarted: string[];
  scansEnded: string[];
  agreementsApproved: string[];
  agreementsRejected: string[];
  /** Terminated agreements with who ended them. */
  agreementsTerminated: { id: string; by: "Requestor" | "Provider" }[];
  activitiesCreated: string[];
  activitiesDestroyed: string[];
  allocationsCreated: string[];
  allocationsReleased: string[];
  invoicesIssued: { id: string; agreementId: string; amount: string }[];
  /** The usage each ended agreement was billed for (its activities' counters, summed), by provider. */
  usageBilled: { agreementId: string; provider: string; cpuSec: number; durationSec: number }[];
  invoicesAccepted: { id: string; amount: string; allocationId: string }[];
  invoicesRejected: { id: string; message: string }[];
  debitNotesIssued: { id: string; activityId: string; amount: string }[];
  debitNotesAccepted: { id: string; amount: string }[];
  /** Every exe-script `run`, by provider, with its argv. */
  runs: { provider: string; argv: string[] }[];
  /** Every HTTP answer a fault rule forced, as `METHOD path status`. */
  faults: string[];
  /**
   * The payment side in the order yagna saw it: `invoice-issued:<agreement>`,
   * `invoice-accepted:<agreement>`, `invoice-rejected:<agreement>`, `allocation-released:<allocation>`.
   */
  payments: string[];
}

export function emptyLedger(): Ledger {
  return {
    demandsSubscribed: [],
    demandsUnsubscribed: [],
    scansStarted: [],
    scansEnded: [],
    agreementsApproved: [],
    agreementsRejected: [],
    agreementsTerminated: [],
    activitiesCreated: [],
    activitiesDestroyed: [],
    allocationsCreated: [],
    allocationsReleased: [],
    invoicesIssued: [],
    usageBilled: [],
    invoicesAccepted: [],
    invoicesRejected: [],
    debitNotesIssued: [],
    debitNotesAccepted: [],
    runs: [],
    faults: [],
    payments: [],
  };
}

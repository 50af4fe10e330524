/**
 * A yagna on loopback for tests: an HTTP server on 127.0.0.1 that speaks the REST API golem-js 3.x calls
 * (version, identity, market, activity, payment, gsb with its WebSocket), written from the ya-client OpenAPI
 * specifications, with simulated providers whose exe-units run each exe-script in Airqube's container
 * sandbox. golem-js connects to it with nothing but its API URL and app key.
 *
 * It records what it handed out (`ledger`) and can tell what was never given back (`leaks()`), and it can
 * misbehave on request (`faults`: forced 408/500 answers, slow answers), besides the per-provider
 * misbehaviours of provider.ts. `HY_DEBUG=1` logs every answer to stderr.
 *
 * @example
 * const yagna = await HttpYagna.start({ providers: [{ id: node(1) }], images: { [GVMI]: BUSYBOX } });
 * const glm = new GolemNetwork({ api: { url: yagna.url, key: yagna.appKey } });
 * ...
 * expect(yagna.leaks()).to.deep.equal([]);
 * await yagna.close();
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Sandbox } from "../../../src/sandbox/api.js";
import { ContainerSandbox } from "../../../src/sandbox/container-sandbox.js";
import { ActivityService } from "./activity.js";
import { GsbBus } from "./gsb.js";
import { MarketService } from "./market.js";
import { PaymentService } from "./payment.js";
import { costOf, nodeIdSchema, type SimImage, type SimProvider } from "./provider.js";
import {
  emptyLedger,
  HttpError,
  type Ledger,
  pause,
  type Reply,
  type Route,
  type RouteContext,
  STREAMED,
} from "./util.js";
import { acceptWebSocket } from "./websocket.js";

/** The requestor's node id on this yagna. */
export const REQUESTOR_ID = "0x00000000000000000000000000000000000000aa";
/** Largest request body accepted (an exe-script with a few scripts inline is far smaller). */
const MAX_BODY_BYTES = 8 * 1024 * 1024;
const VERSION = "0.16.0";

/** A rule that makes the yagna misbehave: the next `times` requests matching it get `status` (or a delay). */
export interface FaultRule {
  method?: string;
  /** Matched against the path (without the query). */
  path: RegExp;
  /** Answer with this status and `{ message }` instead of handling the request. */
  status?: number;
  /** Wait this long before handling (or failing) the request. */
  delayMs?: number;
  /** How many matching requests it applies to (default: all). */
  times?: number;
}

export interface HttpYagnaOptions {
  providers: SimProvider[];
  /** The GVMIs the providers can run, by SHA3-224 hex hash. */
  images: Record<string, SimImage>;
  /** App key the requestor must present (default `airqube-test-key`). */
  appKey?: string;
  /** The sandbox exe-units run commands in (default: a ContainerSandbox, closed with the server). */
  sandbox?: Sandbox;
  /** Largest file an exe-unit transfers (default 64 MiB). */
  maxTransferBytes?: number;
  /** Wall-clock cap of one `run` (default 60 s). */
  runWallTimeMs?: number;
}

interface CompiledRoute extends Route {
  pattern: RegExp;
  names: string[];
}

export class HttpYagna {
  readonly ledger: Ledger = emptyLedger();
  readonly faults: FaultRule[] = [];
  readonly appKey: string;
  readonly market: MarketService;
  readonly payment: PaymentService;
  readonly activity: ActivityService;
  readonly gsb = new GsbBus();
  private readonly routes: CompiledRoute[];
  private readonly providers: SimProvider[];
  private readonly timers = new Set<NodeJS.Timeout>();
  private server: Server | undefined;
  private port = 0;

  private constructor(
    options: HttpYagnaOptions,
    private readonly sandbox: Sandbox,
    private readonly ownsSandbox: boolean,
    private readonly workRoot: string,
  ) {
    this.appKey = options.appKey ?? "airqube-test-key";
    this.providers = options.providers.map((p) => ({ ...p, id: nodeIdSchema.parse(p.id) }));
    const ledger = this.ledger;
    this.market = new MarketService({
      requestorId: REQUESTOR_ID,
      providers: () => this.providers,
      knowsImage: (pkg) => {
        const hash = /^hash:sha3:([0-9a-f]{56}):/.exec(String(pkg ?? ""))?.[1];
        return hash !== undefined && hash in options.images;
      },
      onAgreementEnded: (agreement) => {
        const usage = this.activity.endAgreement(agreement.agreementId);
        const provider = agreement.provider;
        ledger.usageBilled.push({
          agreementId: agreement.agreementId,
          provider: provider.id,
          cpuSec: usage.cpuSec,
          durationSec: usage.durationSec,
        });
        const delay = provider.invoiceDelayMs ?? 20;
        if (delay < 0) return;
        this.later(() => {
          const amount = costOf(provider, usage) * (provider.overbill ?? 1);
          this.payment.issueInvoice(agreement.agreementId, provider.id, usage.ids, amount);
        }, delay);
      },
      ledger,
    });
    this.payment = new PaymentService({
      requestorId: REQUESTOR_ID,
      sessionOf: (id) => this.market.agreements.get(id)?.appSessionId,
      ledger,
    });
    this.activity = new ActivityService({
      agreements: this.market.agreements,
      terminateByProvider: (id, message) => this.market.terminateByProvider(id, message),
      gsb: this.gsb,
      payment: this.payment,
      sandbox,
      images: options.images,
      ledger,
      workRoot,
      maxTransferBytes: options.maxTransferBytes ?? 64 * 1024 * 1024,
      runWallTimeMs: options.runWallTimeMs ?? 60_000,
    });
    const own: Route[] = [
      {
        method: "GET",
        path: "/version/get",
        handler: () => ({
          status: 200,
          json: {
            current: {
              version: VERSION,
              name: "sim",
              seen: true,
              releaseTs: "2025-01-01T00:00:00",
              insertionTs: "",
              updateTs: "",
            },
            pending: null,
          },
        }),
      },
      {
        method: "GET",
        path: "/me",
        handler: () => ({ status: 200, json: { identity: REQUESTOR_ID, name: "requestor", role: "manager" } }),
      },
      { method: "POST", path: "/gsb-api/v1/services", handler: (c) => ({ status: 201, json: this.gsb.bind(c.body) }) },
      {
        method: "DELETE",
        path: "/gsb-api/v1/services/{id}",
        handler: (c) => {
          this.gsb.unbind(c.params.id ?? "");
          return { status: 200 };
        },
      },
    ];
    this.routes = [...own, ...this.market.routes(), ...this.activity.routes(), ...this.payment.routes()].map(compile);
  }

  /** Starts a yagna on 127.0.0.1 (a free port). */
  static async start(options: HttpYagnaOptions): Promise<HttpYagna> {
    const workRoot = await mkdtemp(join(tmpdir(), "airqube-http-yagna-"));
    const sandbox = options.sandbox ?? new ContainerSandbox();
    const yagna = new HttpYagna(options, sandbox, !options.sandbox, workRoot);
    await yagna.listen();
    return yagna;
  }

  /** Base URL for golem-js (`api.url`). */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** What was handed out and never given back: agreements, activities, allocations, GSB services, demands, scans. */
  leaks(): string[] {
    return [
      ...this.market.openAgreements().map((id) => `agreement ${id}`),
      ...this.activity.openActivities().map((id) => `activity ${id}`),
      ...this.payment.openAllocations().map((id) => `allocation ${id}`),
      ...this.gsb.open().map((id) => `gsb services ${id}`),
      ...this.market.openSubscriptions(),
    ];
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.market.close();
    await this.activity.close();
    this.gsb.close();
    const server = this.server;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    if (this.ownsSandbox) await this.sandbox.close();
    await rm(this.workRoot, { recursive: true, force: true });
  }

  private later(action: () => void, ms: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      action();
    }, ms);
    this.timers.add(timer);
  }

  private async listen(): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    server.on("upgrade", (req, socket) => this.upgrade(req, socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  private upgrade(req: IncomingMessage, socket: import("node:stream").Duplex): void {
    const url = new URL(req.url ?? "/", this.url);
    const match = /^\/gsb-api\/v1\/services\/([A-Za-z0-9_-]+)$/.exec(url.pathname);
    const token = url.searchParams.get("authToken") ?? bearer(req);
    if (!match || token !== this.appKey || !this.gsb.has(match[1]!)) {
      socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n");
      return;
    }
    const ws = acceptWebSocket(req, socket, "gsb+flexbuffers");
    if (ws) this.gsb.attach(match[1]!, ws);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const controller = new AbortController();
    res.on("close", () => controller.abort());
    try {
      const url = new URL(req.url ?? "/", this.url);
      const method = req.method ?? "GET";
      const found = this.route(method, url.pathname);
      if (!found) throw new HttpError(404, `no route ${method} ${url.pathname}`);
      if (found.route.path !== "/version/get" && bearer(req) !== this.appKey)
        throw new HttpError(401, "Authorization information is missing or invalid");
      const fault = this.faults.find(
        (f) => (f.times ?? 1) > 0 && f.path.test(url.pathname) && (!f.method || f.method === method),
      );
      if (fault) {
        if (fault.times !== undefined) fault.times--;
        if (fault.delayMs) await pause(fault.delayMs, controller.signal);
        if (fault.status) {
          this.ledger.faults.push(`${method} ${url.pathname} ${fault.status}`);
          await readBody(req).catch(() => undefined);
          throw new HttpError(fault.status, `simulated ${fault.status}`);
        }
      }
      const body = await readBody(req);
      const context: RouteContext = {
        params: found.params,
        query: url.searchParams,
        body,
        signal: controller.signal,
        headers: req.headers,
        res,
      };
      const reply: Reply = await found.route.handler(context);
      if (reply === STREAMED) return;
      send(res, reply.status, reply.json);
    } catch (error) {
      if (res.headersSent) return void res.end();
      const status = error instanceof HttpError ? error.status : 500;
      send(res, status, { message: (error as Error)?.message ?? String(error) });
    }
  }

  private route(method: string, path: string): { route: CompiledRoute; params: Record<string, string> } | undefined {
    for (const route of this.routes) {
      if (route.method !== method) continue;
      const match = route.pattern.exec(path);
      if (!match) continue;
      const params = Object.fromEntries(route.names.map((n, i) => [n, decodeURIComponent(match[i + 1]!)]));
      return { route, params };
    }
    return undefined;
  }
}

function compile(route: Route): CompiledRoute {
  const names: string[] = [];
  const source = route.path.replace(/\{(\w+)\}/g, (_m, name: string) => {
    names.push(name);
    return "([^/]+)";
  });
  return { ...route, pattern: new RegExp(`^${source}$`), names };
}

function bearer(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  return typeof header === "string" && header.startsWith("Bearer ") ? header.slice(7) : undefined;
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, "request body too large");
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  const text = Buffer.concat(chunks).toString("utf8");
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, "the body is not JSON");
  }
}

function send(res: ServerResponse, status: number, json: unknown): void {
  if (process.env.HY_DEBUG)
    process.stderr.write(`[yagna] ${res.req.method} ${res.req.url} ${status} ${JSON.stringify(json)?.slice(0, 300)}\n`);
  if (json === undefined || status === 204) {
    res.writeHead(status);
    res.end();
    return;
  }
  const body = JSON.stringify(json);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/**
 * The dashboard's HTTP server: read-only, on 127.0.0.1 only, its data behind a random token.
 *
 * How the token travels: the printed URL carries it in the fragment (`http://127.0.0.1:PORT/#token=...`).
 * A browser never sends a fragment to the server, so the token is in no request line, no access log and no
 * Referer. The page reads it from `location.hash`, keeps it in `sessionStorage` (this tab, this origin),
 * removes it from the address bar, and sends it on each API call as `Authorization: Bearer <token>`. The server
 * accepts it in that header only (never in a query string or a cookie), compared in constant time. A custom
 * header also means another origin cannot make a browser send it without a CORS preflight, which this server
 * never grants (no `Access-Control-*` header, OPTIONS is 405). The static page (HTML, two ES modules, a style
 * sheet, and the charting library uPlot: its browser build and style sheet, read from the installed `uplot`
 * package) holds no data and is served without the token.
 *
 * Other defences: only GET and HEAD (anything else 405); the Host header must name this loopback listener
 * (DNS rebinding); a request whose Origin or Sec-Fetch-Site says another site is refused; a strict
 * Content-Security-Policy lets the page load and fetch from itself only; lists are paged and every response
 * is bounded ({@link MAX_RESPONSE_BYTES}).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import type { Logger } from "pino";
import { AirqubeError, PlatformError, UserError } from "../qube/errors.js";
import { cachedEarnings, readEarnings } from "./earnings-view.js";
import { MAX_RESPONSE_BYTES, MAX_URL_LENGTH, parsePage } from "./limits.js";
import { readNetworkView } from "./network-view.js";
import { readProviderView } from "./provider-view.js";
import { readEvidence, readRequestorView } from "./requestor-view.js";

/** How long one read of the provider's earnings on chain is reused by default, ms. */
export const EARNINGS_TTL_MS = 15_000;

/** Bytes of randomness in the access token. */
export const TOKEN_BYTES = 32;

/** The Content-Security-Policy of every response: nothing but this server, no inline script or style. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** The static files of the page (path → file in `static/`, content type). */
const STATIC: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/charts.js": { file: "charts.js", type: "text/javascript; charset=utf-8" },
  "/style.css": { file: "style.css", type: "text/css; charset=utf-8" },
};

/**
 * The charting library's files (path → file in the installed `uplot` package, content type): its browser
 * build, which defines the global `uPlot`, and its style sheet. With {@link STATIC}, nothing else is served
 * from disk.
 */
export const CHART_LIBRARY: Record<string, { file: string; type: string }> = {
  "/uPlot.iife.min.js": { file: "dist/uPlot.iife.min.js", type: "text/javascript; charset=utf-8" },
  "/uPlot.min.css": { file: "dist/uPlot.min.css", type: "text/css; charset=utf-8" },
};

/**
 * The directory of the `uplot` package as Node resolves it from this module (whether Airqube runs from its
 * sources, its `dist/` or `node_modules/airqube`), or undefined when it is not installed.
 */
export function chartLibraryDir(): string | undefined {
  try {
    return dirname(createRequire(import.meta.url).resolve("uplot/package.json"));
  } catch {
    return undefined;
  }
}

/** The API's endpoints, as `GET /api` lists them. */
export const API_ENDPOINTS = [
  { path: "/api", about: "this list" },
  {
    path: "/api/provider?limit=&offset=",
    about:
      "ledger jobs (paged), jobs and refusals over time, failures and refusals with reasons, stake, escape suite, capacity",
  },
  {
    path: "/api/requestor?limit=&offset=",
    about: "journalled qubes (paged) with providers, timeline, groups, cost; reputation; escrow",
  },
  {
    path: "/api/earnings",
    about:
      "on chain: credits and withdrawals of the provider's payout account, what it can withdraw (read at most every 15 s); an unpaid provider says so",
  },
  { path: "/api/network", about: "providers dispatched to, this machine's own offer, the running devnet" },
  { path: "/api/evidence/:qubeId", about: "the evidence kept against providers of a qube (JSON download)" },
] as const;

/** Where the dashboard reads from. */
export interface DashboardSources {
  /** The requestor's data directory (journal, reputation). */
  requestorDir: string;
  /** The provider's data directory (ledger, seats, status). */
  providerDir: string;
  /** The escape-suite report cache, if any. */
  probeCache?: string;
  /** AIRQUBE_HOME, for the devnet profile. */
  home: string;
}

/** Options of {@link startDashboard}. */
export interface DashboardOptions extends DashboardSources {
  /** TCP port on 127.0.0.1 (0: any free port). */
  port?: number;
  logger?: Logger;
  /** Clock (tests). */
  now?: () => Date;
  /** How long one read of the chain is reused, ms (default {@link EARNINGS_TTL_MS}). */
  earningsTtlMs?: number;
  signal?: AbortSignal;
}

/** A running dashboard. */
export interface Dashboard {
  /** The URL to open, token included (in the fragment): show it once to the user, never log it. */
  readonly url: string;
  readonly port: number;
  /** The access token (for API clients: `Authorization: Bearer <token>`). */
  readonly token: string;
  close(): Promise<void>;
}

/**
 * Starts the dashboard server on 127.0.0.1.
 *
 * @throws UserError `DASHBOARD_PORT_IN_USE` when the port is taken; PlatformError `DASHBOARD_LISTEN_FAILED` otherwise.
 * @example
 * const dashboard = await startDashboard({ requestorDir, providerDir, home, port: 0 });
 * process.stdout.write(`${dashboard.url}\n`);
 * // later
 * await dashboard.close();
 */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const token = randomBytes(TOKEN_BYTES).toString("base64url");
  const tokenDigest = createHash("sha256").update(token).digest();
  const staticDir = new URL("./static/", import.meta.url);
  const files = new Map<string, { type: string; body: Buffer }>();
  for (const [path, { file, type }] of Object.entries(STATIC)) {
    try {
      files.set(path, { type, body: readFileSync(new URL(file, staticDir)) });
    } catch (error) {
      throw new PlatformError("DASHBOARD_ASSETS_MISSING", "The dashboard's page is missing from the package", {
        details: `${new URL(file, staticDir).pathname}; rebuild with npm run build`,
        cause: error,
      });
    }
  }
  const library = chartLibraryDir();
  for (const [path, { file, type }] of Object.entries(CHART_LIBRARY)) {
    try {
      if (!library) throw new Error("the uplot package does not resolve");
      files.set(path, { type, body: readFileSync(join(library, file)) });
    } catch (error) {
      throw new PlatformError("DASHBOARD_ASSETS_MISSING", "The dashboard's charting library (uplot) is missing", {
        details: `${library ? join(library, file) : "uplot"}; reinstall Airqube's dependencies (npm install)`,
        cause: error,
      });
    }
  }
  const now = options.now ?? (() => new Date());
  const earnings = cachedEarnings(
    () => readEarnings(options.providerDir, now(), options.signal ? { signal: options.signal } : {}),
    options.earningsTtlMs ?? EARNINGS_TTL_MS,
  );
  let port = 0;
  const server: Server = createServer((request, response) => {
    try {
      handle(request, response);
    } catch (error) {
      fail(response, error);
    }
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.maxConnections = 64;

  const authorized = (request: IncomingMessage): boolean => {
    const header = request.headers.authorization;
    if (typeof header !== "string" || !header.startsWith("Bearer ") || header.length > 200) return false;
    const given = createHash("sha256").update(header.slice("Bearer ".length)).digest();
    return timingSafeEqual(given, tokenDigest);
  };

  const handle = (request: IncomingMessage, response: ServerResponse) => {
    request.resume();
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) response.setHeader(name, value);
    const target = request.url ?? "/";
    if (target.length > MAX_URL_LENGTH) return send(response, 414, { error: { code: "DASHBOARD_URL_TOO_LONG" } });
    const host = request.headers.host;
    if (host !== `127.0.0.1:${port}` && host !== `localhost:${port}`)
      return send(response, 421, {
        error: { code: "DASHBOARD_WRONG_HOST", message: "This server answers for 127.0.0.1 only" },
      });
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.setHeader("Allow", "GET, HEAD");
      return send(response, 405, { error: { code: "DASHBOARD_READ_ONLY", message: "The dashboard is read-only" } });
    }
    const origin = request.headers.origin;
    const site = request.headers["sec-fetch-site"];
    if (
      (origin !== undefined && origin !== `http://127.0.0.1:${port}` && origin !== `http://localhost:${port}`) ||
      (site !== undefined && site !== "same-origin" && site !== "none")
    )
      return send(response, 403, {
        error: { code: "DASHBOARD_CROSS_ORIGIN", message: "Requests from other sites are refused" },
      });
    const url = new URL(target, `http://127.0.0.1:${port}`);
    const asset = files.get(url.pathname);
    if (asset) {
      response.writeHead(200, { "Content-Type": asset.type, "Content-Length": asset.body.length });
      return response.end(request.method === "HEAD" ? undefined : asset.body);
    }
    if (url.pathname === "/favicon.ico") {
      // no icon: said without a 404 in the browser's console
      response.writeHead(204);
      return response.end();
    }
    if (!url.pathname.startsWith("/api")) return send(response, 404, { error: { code: "DASHBOARD_NOT_FOUND" } });
    if (!authorized(request)) {
      response.setHeader("WWW-Authenticate", 'Bearer realm="airqube-dashboard"');
      return send(response, 401, {
        error: {
          code: "DASHBOARD_TOKEN_REQUIRED",
          message: "Open the URL printed by airqube dashboard (token in the Authorization header only)",
        },
      });
    }
    options.logger?.debug({ path: url.pathname }, "dashboard request");
    const at = now();
    const dirs = { requestorDir: options.requestorDir, providerDir: options.providerDir, home: options.home };
    switch (url.pathname) {
      case "/api":
        return send(response, 200, { endpoints: API_ENDPOINTS });
      case "/api/provider":
        return send(
          response,
          200,
          readProviderView(options.providerDir, options.probeCache, parsePage(url.searchParams)),
        );
      case "/api/requestor":
        return send(response, 200, readRequestorView(options.requestorDir, parsePage(url.searchParams), at));
      case "/api/network":
        return send(response, 200, readNetworkView(dirs, at));
      case "/api/earnings":
        return void earnings().then(
          (view) => send(response, 200, view),
          (error: unknown) => fail(response, error),
        );
    }
    const evidence = /^\/api\/evidence\/([^/]+)$/.exec(url.pathname);
    if (evidence) {
      const qubeId = evidence[1]!;
      // no percent-decoding: a qube id is plain ASCII, anything else is malformed
      if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(qubeId))
        throw new UserError("DASHBOARD_BAD_QUERY", "The qube id is malformed");
      const bundle = readEvidence(options.requestorDir, qubeId);
      if (!bundle)
        return send(response, 404, {
          error: { code: "DASHBOARD_QUBE_UNKNOWN", message: "The journal does not know this qube" },
        });
      response.setHeader(
        "Content-Disposition",
        `attachment; filename="evidence-${qubeId.replace(/[^A-Za-z0-9_-]/g, "_")}.json"`,
      );
      return send(response, 200, bundle);
    }
    return send(response, 404, { error: { code: "DASHBOARD_NOT_FOUND" } });
  };

  const fail = (response: ServerResponse, error: unknown) => {
    if (response.headersSent) return response.destroy();
    if (error instanceof UserError) return send(response, 400, { error: error.toJSON() });
    if (error instanceof AirqubeError) {
      options.logger?.warn({ code: error.code, details: error.details }, "dashboard read failed");
      return send(response, 503, { error: error.toJSON() });
    }
    options.logger?.error({ err: error }, "dashboard request failed");
    return send(response, 500, { error: { code: "INTERNAL", message: "The dashboard failed to answer" } });
  };

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      reject(
        error.code === "EADDRINUSE"
          ? new UserError("DASHBOARD_PORT_IN_USE", `Port ${options.port} on 127.0.0.1 is in use`, {
              details: "pass another --port, or 0 for any free port",
              cause: error,
            })
          : new PlatformError("DASHBOARD_LISTEN_FAILED", "The dashboard cannot listen on 127.0.0.1", { cause: error }),
      );
    };
    server.once("error", onError);
    server.listen({ host: "127.0.0.1", port: options.port ?? 0 }, () => {
      server.off("error", onError);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  options.signal?.addEventListener("abort", () => void close(), { once: true });
  return { url: `http://127.0.0.1:${port}/#token=${token}`, port, token, close };
}

/** Headers of every response. */
const SECURITY_HEADERS: Record<string, string> = {
  "Content-Security-Policy": CONTENT_SECURITY_POLICY,
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "no-referrer",
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Resource-Policy": "same-origin",
  "Cache-Control": "no-store",
};

function send(response: ServerResponse, status: number, body: unknown): void {
  let text = JSON.stringify(body);
  if (Buffer.byteLength(text) > MAX_RESPONSE_BYTES) {
    status = 507;
    text = JSON.stringify({
      error: {
        code: "DASHBOARD_RESPONSE_TOO_LARGE",
        message: `The answer exceeds ${MAX_RESPONSE_BYTES} bytes: ask for a smaller limit`,
      },
    });
  }
  response.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
  });
  response.end(response.req.method === "HEAD" ? undefined : text);
}

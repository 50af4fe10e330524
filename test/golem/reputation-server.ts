/**
 * A reputation service on 127.0.0.1 for tests: answers golem-js's `GET /v2/providers/scores?network=...` with
 * what `answer` says (scores, a status, garbage, or nothing at all), and records the queries.
 */
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** Scores of one provider, each 0..1. */
export interface Scores {
  successRate: number;
  uptime: number;
  cpuSingleThreadScore: number;
  cpuMultiThreadScore: number;
}

export const GOOD: Scores = { successRate: 0.99, uptime: 0.99, cpuSingleThreadScore: 0.9, cpuMultiThreadScore: 0.9 };
export const POOR: Scores = { successRate: 0.2, uptime: 0.95, cpuSingleThreadScore: 0.9, cpuMultiThreadScore: 0.9 };

/** What the server answers. */
export type ScoreAnswer =
  | { kind: "data"; body: unknown }
  | { kind: "status"; status: number }
  | { kind: "raw"; body: string }
  | { kind: "hang" };

/** The reputation JSON golem-js expects, for `providers` (id → scores). */
export function reputationData(
  providers: Record<string, Scores>,
  extra: { rejectedProviders?: unknown[]; rejectedOperators?: unknown[] } = {},
): unknown {
  return {
    testedProviders: Object.entries(providers).map(([id, scores]) => ({
      provider: { id, name: `p-${id.slice(-4)}`, walletAddress: id },
      scores,
    })),
    untestedProviders: [],
    ...extra,
  };
}

export class ScoreServer {
  answer: ScoreAnswer = { kind: "data", body: reputationData({}) };
  readonly queries: URL[] = [];
  private readonly hung = new Set<ServerResponse>();

  private constructor(private readonly server: Server) {}

  static async start(): Promise<ScoreServer> {
    const server = createServer();
    const scores = new ScoreServer(server);
    server.on("request", (req, res) => scores.handle(req.url ?? "/", res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return scores;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v2/providers/scores`;
  }

  private handle(path: string, res: ServerResponse): void {
    this.queries.push(new URL(path, "http://127.0.0.1"));
    const a = this.answer;
    if (a.kind === "hang") {
      this.hung.add(res);
      return;
    }
    if (a.kind === "status") {
      res.writeHead(a.status, { "content-type": "text/plain" }).end("down");
      return;
    }
    const body = a.kind === "data" ? JSON.stringify(a.body) : a.body;
    res.writeHead(200, { "content-type": "application/json" }).end(body);
  }

  async close(): Promise<void> {
    for (const res of this.hung) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

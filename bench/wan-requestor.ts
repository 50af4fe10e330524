/**
 * The requestor side of `bench:wan`, run inside the requestor's network namespace: connects in public mode to
 * the bootnode, then times verified qubes (after one warm-up): k = 1 on a direct provider, k = 3 on three
 * direct providers, k = 1 on the provider behind NAT (through the relay). Prints one JSON line of medians.
 *
 * It also counts the network round trips of each qube, per provider, from the protocol code paths themselves
 * (nothing is assumed): every stream opened on a connection to the provider (libp2p 3's multistream-select
 * writes the protocol and waits for the provider to confirm it: one round trip), every liveness ping (one more,
 * after its stream; the cache of answers is cleared before each qube, as in a fresh `airqube run`), and every
 * turn of an exchange stream (src/net/wire.ts: the requestor sent, then waits to receive: proposal/agreement,
 * reveal request/reveal, and the admission query of paid qubes; the commitment the provider sends on its own
 * after the agreement is no turn). Connections opened during a qube are counted apart (`newConnections`: each
 * costs the TCP, Noise and muxer handshakes; the requestor here is warm), as are libp2p's own keep-alive pings
 * (`background`), which nothing waits for. The qubes are unpaid: a paid one adds the admission query (a stream
 * and a turn) and the chain's transactions. The providers of a k = 3 qube are served in parallel, so its critical
 * path is the largest count among them.
 *
 * Usage: node --import tsx bench/wan-requestor.ts BOOTSTRAP '{"direct":[id,id,id],"nat":id}' RUNS
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Connection, Stream } from "@libp2p/interface";
import { Wire } from "../src/net/wire.js";
import { Identity } from "../src/qube/index.js";
import { sealQube } from "../src/requestor/draft.js";
import { Libp2pMarket } from "../src/requestor/libp2p-market.js";
import { Requestor } from "../src/requestor/requestor.js";
import { median, round } from "./stats.js";

const [bootstrap = "", providersJson = "{}", runsText = "3"] = process.argv.slice(2);
const providers = JSON.parse(providersJson) as { direct: string[]; nat: string };
const runs = Number(runsText);
const tmp = (p: string) => mkdtempSync(join(tmpdir(), p));
const identity = Identity.fromSeed(randomBytes(32));
const market = await Libp2pMarket.connect({ identity, bootstrap: [bootstrap], public: true, allowPrivate: true });
const requestor = new Requestor({ market, dataDir: tmp("aq-wan-req-") });
const node = market.node;

/** Round trips per provider peer id, by kind, since the last reset. */
export interface RoundTripCount {
  streams: number;
  pings: number;
  turns: number;
  newConnections: number;
  /** The protocol of each stream counted. */
  protocols: string[];
  /** libp2p's own keep-alive pings (its connection monitor) during the qube: not waited for, not counted. */
  background: number;
}
let counts = new Map<string, RoundTripCount>();
const countOf = (peer: string) => {
  const count = counts.get(peer) ?? { streams: 0, pings: 0, turns: 0, newConnections: 0, protocols: [], background: 0 };
  counts.set(peer, count);
  return count;
};
const peerOfStream = new WeakMap<Stream, string>();
/** Peers the market is pinging now (its liveness check); other ping streams are libp2p's connection monitor. */
const pinging = new Map<string, number>();
const PING_PROTOCOL = "/ipfs/ping/1.0.0";
const instrumented = new WeakSet<Connection>();
const instrument = (connection: Connection) => {
  if (instrumented.has(connection)) return;
  instrumented.add(connection);
  const peer = connection.remotePeer.toString();
  const newStream = connection.newStream.bind(connection);
  connection.newStream = (async (...args: Parameters<typeof newStream>) => {
    const stream = await newStream(...args);
    if (stream.protocol === PING_PROTOCOL && !pinging.get(peer)) {
      countOf(peer).background++;
      return stream;
    }
    countOf(peer).streams++;
    countOf(peer).protocols.push(stream.protocol ?? "");
    peerOfStream.set(stream, peer);
    return stream;
  }) as typeof connection.newStream;
};
for (const connection of node.getConnections()) instrument(connection);
node.addEventListener("connection:open", (event) => {
  instrument(event.detail);
  countOf(event.detail.remotePeer.toString()).newConnections++;
});
const ping = node.services.ping.ping.bind(node.services.ping);
node.services.ping.ping = (async (...args: Parameters<typeof ping>) => {
  const peer = args[0].toString();
  pinging.set(peer, (pinging.get(peer) ?? 0) + 1);
  try {
    const rtt = await ping(...args);
    countOf(peer).pings++;
    return rtt;
  } finally {
    pinging.set(peer, pinging.get(peer)! - 1);
  }
}) as typeof ping;
// a turn: a receive that follows a send on the same stream (the requestor waits for the provider's answer)
const lastSent = new WeakMap<Wire, boolean>();
const wire = Wire.prototype;
for (const method of ["send", "sendBytes"] as const) {
  const original = wire[method] as (...args: unknown[]) => Promise<void>;
  (wire as unknown as Record<string, unknown>)[method] = function (this: Wire, ...args: unknown[]) {
    lastSent.set(this, true);
    return original.apply(this, args);
  };
}
const receiveFrame = wire.receiveFrame;
wire.receiveFrame = function (this: Wire, ...args: Parameters<typeof receiveFrame>) {
  if (lastSent.get(this)) {
    lastSent.set(this, false);
    const peer = peerOfStream.get(this.stream);
    if (peer) countOf(peer).turns++;
  }
  return receiveFrame.apply(this, args);
};
const total = (c: RoundTripCount) => c.streams + c.pings + c.turns;

async function timed(
  k: number,
  allowed: string[],
): Promise<{ ms: number; roundTrips: number; detail: RoundTripCount }> {
  const qube = await sealQube(
    {
      image: "airqube/busybox:latest",
      command: ["sh", "-c", "echo ok > /output/result"],
      outputs: ["result"],
      limits: { wallTimeMs: 20_000, memoryBytes: 64 << 20, scratchBytes: 16 << 20 },
      redundancy: { mode: "fixed", k, quorum: Math.floor(k / 2) + 1 },
    },
    identity,
  );
  // as a fresh `airqube run` does: every candidate answers a liveness ping first (else cached for 10 s)
  (market as unknown as { alive: Map<string, number> }).alive.clear();
  counts = new Map();
  const t0 = performance.now();
  const result = await requestor.run(qube, { outputDir: tmp("aq-wan-out-"), filter: (c) => allowed.includes(c.id) });
  const ms = performance.now() - t0;
  if (result.status !== "verified") throw new Error(`not verified: ${result.reason}`);
  // the critical path: the provider with the most round trips (the others are served in parallel)
  const perProvider = allowed.map(countOf);
  const detail = perProvider.reduce((a, b) => (total(b) > total(a) ? b : a));
  return { ms, roundTrips: total(detail), detail };
}

try {
  await timed(1, providers.direct.slice(0, 1)); // warm-up: offers, connections
  await timed(1, [providers.nat]);
  const k1: number[] = [];
  const k3: number[] = [];
  const nat: number[] = [];
  const trips: { k1: number[]; k3: number[]; nat: number[] } = { k1: [], k3: [], nat: [] };
  let k3Detail: RoundTripCount | undefined;
  for (let i = 0; i < runs; i++) {
    const one = await timed(1, providers.direct.slice(0, 1));
    const three = await timed(3, providers.direct);
    const relayed = await timed(1, [providers.nat]);
    k1.push(one.ms);
    k3.push(three.ms);
    nat.push(relayed.ms);
    trips.k1.push(one.roundTrips);
    trips.k3.push(three.roundTrips);
    trips.nat.push(relayed.roundTrips);
    k3Detail = three.detail;
  }
  process.stdout.write(
    `${JSON.stringify({
      k1Ms: round(median(k1), 1),
      k3Ms: round(median(k3), 1),
      natK1Ms: round(median(nat), 1),
      roundTrips: median(trips.k3),
      roundTripsK1: median(trips.k1),
      roundTripsNat: median(trips.nat),
      roundTripsDetail: k3Detail,
    })}\n`,
  );
} finally {
  requestor.close();
  await market.close();
}

/**
 * Clock checks between peers. Offers carry the provider's times (issued, expires), and a verifier rejects an
 * offer issued more than MAX_CLOCK_SKEW_MS in its future or expired on arrival: a provider whose clock is off
 * would announce forever and never be chosen, and nobody would tell it. So every node answers a tiny time
 * query, and a provider asks its connected peers now and then; when the median difference is beyond the
 * tolerance it knows its offers are being rejected, and says so to its operator.
 *
 * A peer may lie about its time: the median of several peers decides, and the only effect of a lie is a
 * warning in the provider's log (nothing is adjusted from it).
 */
import { peerIdFromString } from "@libp2p/peer-id";
import { z } from "zod";
import { isoTimeSchema } from "../../qube/index.js";
import type { AirqubeNode } from "../node.js";
import { Wire } from "../wire.js";
import {
  CLOCK_CHECK_INTERVAL_MS,
  CLOCK_CHECK_PEERS,
  CLOCK_MAX_RTT_MS,
  CLOCK_WARN_REPEAT_MS,
  MAX_CLOCK_SKEW_MS,
  MAX_QUERY_STREAMS,
  TIME_PROTOCOL,
} from "./constants.js";

const MAX_TIME_FRAME_BYTES = 256;
const timeAnswerSchema = z.strictObject({ type: z.literal("time"), now: isoTimeSchema });

/** The minimal part of a libp2p node that answers time queries. */
type Handler = Pick<AirqubeNode, "handle">;

/** Answers time queries with `now()` (registered by createNode on every Airqube node). */
export async function handleTimeQueries(node: Handler, now: () => Date): Promise<void> {
  await node.handle(
    TIME_PROTOCOL,
    async (stream) => {
      const wire = new Wire(stream, { maxFrameBytes: MAX_TIME_FRAME_BYTES });
      try {
        await wire.send({ type: "time", now: now().toISOString() }, { signal: AbortSignal.timeout(2_000) });
        await wire.close();
      } catch (error) {
        wire.abort(error as Error);
      }
    },
    { maxInboundStreams: MAX_QUERY_STREAMS, maxOutboundStreams: MAX_QUERY_STREAMS },
  );
}

export interface ClockSample {
  peer: string;
  /** Our clock minus the peer's, in ms (positive: ours is ahead), at the middle of the round trip. */
  skewMs: number;
  rttMs: number;
}

/** Asks one connected peer for its time; throws a typed error when it does not answer well. */
export async function askPeerClock(
  node: Pick<AirqubeNode, "dialProtocol">,
  peer: string,
  now: () => Date,
  options: { signal?: AbortSignal } = {},
): Promise<ClockSample> {
  const timeout = AbortSignal.timeout(CLOCK_MAX_RTT_MS);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  const started = now().getTime();
  const tick = performance.now();
  const stream = await node.dialProtocol(peerIdFromString(peer), TIME_PROTOCOL, { signal });
  const wire = new Wire(stream, { maxFrameBytes: MAX_TIME_FRAME_BYTES });
  try {
    const answer = await wire.receive(timeAnswerSchema, { signal });
    const rttMs = performance.now() - tick;
    await wire.close().catch(() => undefined);
    return { peer, skewMs: Math.round(started + rttMs / 2 - Date.parse(answer.now)), rttMs };
  } catch (error) {
    wire.abort(error as Error);
    throw error;
  }
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export interface ClockSkew {
  /** Median of our clock minus the peers' clocks, ms (positive: ours is ahead). */
  skewMs: number;
  /** Peers that answered. */
  peers: number;
}

/** One check: asks up to CLOCK_CHECK_PEERS connected peers; undefined when none answered. */
export async function measureClockSkew(
  node: Pick<AirqubeNode, "dialProtocol" | "getPeers">,
  now: () => Date,
  options: { signal?: AbortSignal } = {},
): Promise<ClockSkew | undefined> {
  const peers = node.getPeers().slice(0, CLOCK_CHECK_PEERS);
  const samples = await Promise.all(
    peers.map((peer) => askPeerClock(node, peer.toString(), now, options).catch(() => undefined)),
  );
  const good = samples.filter((s): s is ClockSample => s !== undefined && s.rttMs <= CLOCK_MAX_RTT_MS);
  if (good.length === 0) return undefined;
  return { skewMs: median(good.map((s) => s.skewMs)), peers: good.length };
}

/** The operator's warning for a skew beyond the tolerance. */
export function describeSkew(skew: ClockSkew): string {
  const seconds = Math.round(Math.abs(skew.skewMs) / 1000);
  const tolerance = MAX_CLOCK_SKEW_MS / 1000;
  return skew.skewMs > 0
    ? `this machine's clock is ${seconds} s ahead of its peers' (median of ${skew.peers}): peers reject offers issued more than ${tolerance} s in the future, so every offer of this provider is rejected and it gets no qubes; fix the system clock (NTP)`
    : `this machine's clock is ${seconds} s behind its peers' (median of ${skew.peers}): its offers reach peers already (nearly) expired and are rejected; fix the system clock (NTP)`;
}

/**
 * Checks the clock against the peers' every `intervalMs` (first after `firstCheckMs`) and calls `onSkew`
 * when the median difference is beyond MAX_CLOCK_SKEW_MS: on the first such check, then at most every
 * CLOCK_WARN_REPEAT_MS while it lasts; `onRecovered` once it is back within the tolerance. Returns a stop
 * function.
 */
export function watchClock(
  node: Pick<AirqubeNode, "dialProtocol" | "getPeers">,
  options: {
    now: () => Date;
    onSkew: (skew: ClockSkew) => void;
    onRecovered?: (skew: ClockSkew) => void;
    intervalMs?: number;
    firstCheckMs?: number;
  },
): () => void {
  const controller = new AbortController();
  let warnedAt: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  const check = async () => {
    const skew = await measureClockSkew(node, options.now, { signal: controller.signal }).catch(() => undefined);
    if (controller.signal.aborted || !skew) return;
    if (Math.abs(skew.skewMs) > MAX_CLOCK_SKEW_MS) {
      const at = Date.now();
      if (warnedAt === undefined || at - warnedAt >= CLOCK_WARN_REPEAT_MS) {
        warnedAt = at;
        options.onSkew(skew);
      }
    } else if (warnedAt !== undefined) {
      warnedAt = undefined;
      options.onRecovered?.(skew);
    }
  };
  const schedule = (ms: number) => {
    timer = setTimeout(() => {
      void check().finally(() => {
        if (!controller.signal.aborted) schedule(options.intervalMs ?? CLOCK_CHECK_INTERVAL_MS);
      });
    }, ms);
    timer.unref();
  };
  schedule(options.firstCheckMs ?? 5_000);
  return () => {
    controller.abort();
    clearTimeout(timer);
  };
}

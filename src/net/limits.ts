/**
 * Network limits of public mode: the circuit relay a bootnode runs and how often peers re-dial bootstrap
 * peers. Sized for Airqube's traffic: offers are small and gossiped, a qube's inputs and outputs cross a
 * relayed connection at most once each way per provider.
 */
import type { CircuitRelayServerInit } from "@libp2p/circuit-relay-v2";

/** How often a peer re-dials a bootstrap peer that went away (a restarted bootnode is found within this). */
export const BOOTSTRAP_REDIAL_MS = 3_000;

/** Largest amount of data one relayed connection may carry (a qube's sealed inputs plus its outputs). */
export const RELAY_DATA_LIMIT_BYTES = 1024n * 1024n * 1024n;

/** Longest a relayed connection may last (a long qube outlives it and is served over DCUtR's direct link). */
export const RELAY_DURATION_LIMIT_MS = 30 * 60_000;

/**
 * The circuit relay v2 server of `airqube bootnode`: enough reservations for a few hundred providers behind
 * NAT, each relayed connection bounded in time and bytes (`applyDefaultLimit`), a bounded number of hop
 * streams in flight.
 */
export const AIRQUBE_RELAY_LIMITS: CircuitRelayServerInit = {
  hopTimeout: 30_000,
  reservations: {
    maxReservations: 512,
    reservationTtl: 2 * 60 * 60_000,
    applyDefaultLimit: true,
    defaultDurationLimit: RELAY_DURATION_LIMIT_MS,
    defaultDataLimit: RELAY_DATA_LIMIT_BYTES,
  },
  maxInboundHopStreams: 64,
  maxOutboundHopStreams: 64,
  maxOutboundStopStreams: 64,
};

/**
 * The simulated providers of the loopback yagna: what each offers (the properties of its Offer, as a real
 * ya-provider publishes them for the `vm` runtime) and how it behaves, honestly or not.
 */
import { z } from "zod";

/** The payment platform every simulated provider and the requestor use. */
export const PLATFORM = "erc20-holesky-tglm";

/** A GVMI the providers can run: the Docker image that plays it and the VOLUMEs it declares. */
export interface SimImage {
  /** Docker image run by Airqube's container sandbox, e.g. `airqube/busybox:latest`. */
  docker: string;
  /** Absolute paths of the image's volumes; `/input` is mounted read-only into each run (see activity.ts). */
  volumes: string[];
  /** The downloaded task package exe-unit passes to an ExeUnit runtime (`--task-package`), e.g. a `docker save` tar. */
  archive?: string;
}

/**
 * An ExeUnit runtime binary that the provider's exe-unit drives (test/golem/runtime/exe-unit.ts: `deploy`,
 * `start`, ya-runtime-api over its pipes) instead of running each command in the sandbox itself.
 */
export interface SimRuntime {
  /** The runtime's command, e.g. `[process.execPath, "bin/ya-runtime-airqube.js"]`. */
  command: string[];
  /** Its environment (e.g. `AIRQUBE_RUNTIME_HOME`). */
  env?: NodeJS.ProcessEnv;
  /** What its `offer-template` printed: merged over the offer's properties, as ya-provider does. */
  properties: Record<string, unknown>;
}

/** One simulated provider and its behaviour. */
export interface SimProvider {
  /** Node id: 0x + 40 hex digits. */
  id: string;
  name?: string;
  /** Linear prices: GLM per CPU second, per second of the activity, and at start. */
  price?: [number, number, number];
  memGib?: number;
  threads?: number;
  /** Never answers a demand. */
  silent?: boolean;
  /** Rejects the requestor's counter-proposal with this reason. */
  rejectCounter?: string;
  /** Rejects the agreement with this reason. */
  rejectAgreement?: string;
  /**
   * Runs after every `run` command with the host directories of the activity's volumes (by container
   * path): a lying provider rewrites the outputs here.
   */
  tamper?: (volumes: ReadonlyMap<string, string>, argv: readonly string[]) => Promise<void>;
  /** Terminates the agreement when the n-th `run` command of an activity starts (1 = the first). */
  dieOnRun?: number;
  /** Announces a wrong SHA3-256 when it sends a file. */
  wrongHash?: boolean;
  /** Sends every chunk of a file at a wrong offset. */
  misplaceChunks?: boolean;
  /** Appends this many extra bytes to every file it sends (more than it packed). */
  extraBytes?: number;
  /** Sends a debit note this often while an activity runs (ms). */
  debitNoteEveryMs?: number;
  /** Sends the invoice this long after the agreement ended (ms, default 20). */
  invoiceDelayMs?: number;
  /** Bills this factor times what the usage costs (1 = honest). */
  overbill?: number;
  /** Runs activities through this ExeUnit runtime (its offer-template's properties in the offer). */
  runtime?: SimRuntime;
}

export const nodeIdSchema = z.string().regex(/^0x[0-9a-f]{40}$/, "a node id: 0x + 40 lower-case hex digits");

/** The properties of the provider's Offer for the `vm` runtime, or those its ExeUnit runtime's offer-template gave. */
export function offerProperties(p: SimProvider): Record<string, unknown> {
  const [cpu, env, start] = p.price ?? [0.00001, 0.00001, 0.001];
  return {
    "golem.activity.caps.transfer.protocol": ["gftp", "http", "https"],
    "golem.com.payment.debit-notes.accept-timeout?": 240,
    [`golem.com.payment.platform.${PLATFORM}.address`]: p.id,
    "golem.com.payment.protocol.version": 3,
    "golem.com.pricing.model": "linear",
    "golem.com.pricing.model.linear.coeffs": [cpu, env, start],
    "golem.com.scheme": "payu",
    "golem.com.scheme.payu.debit-note.interval-sec?": 120,
    "golem.com.scheme.payu.payment-timeout-sec?": 120,
    "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
    "golem.inf.cpu.architecture": "x86_64",
    "golem.inf.cpu.cores": 2,
    "golem.inf.cpu.threads": p.threads ?? 4,
    "golem.inf.mem.gib": p.memGib ?? 8,
    "golem.inf.storage.gib": 40,
    "golem.node.debug.subnet": "public",
    "golem.node.id.name": p.name ?? `sim-${p.id.slice(-4)}`,
    "golem.node.net.is-public": false,
    "golem.runtime.capabilities": ["inet", "vpn", "manifest-support", "start-entrypoint"],
    "golem.runtime.name": "vm",
    "golem.runtime.version": "0.4.2",
    "golem.srv.caps.multi-activity": true,
    ...p.runtime?.properties,
  };
}

/** The offer's constraints (a real provider asks for an expiration and its subnet). */
export const OFFER_CONSTRAINTS = "(&(golem.srv.comp.expiration>0)(golem.node.debug.subnet=public))";

/** What `usage` costs under the provider's linear prices: start + cpu_sec * cpu + duration_sec * env. */
export function costOf(p: SimProvider, usage: { cpuSec: number; durationSec: number }): number {
  const [cpu, env, start] = p.price ?? [0.00001, 0.00001, 0.001];
  return start + usage.cpuSec * cpu + usage.durationSec * env;
}

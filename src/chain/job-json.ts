/**
 * Escrow jobs as JSON-safe data (integers as decimal strings), for the wire and the journals.
 */
import { type EscrowJob, parseEscrowJob } from "./job.js";

/** An {@link EscrowJob} with its integers as decimal strings. */
export interface EscrowJobJson {
  requestor: string;
  qubeId: string;
  nonce: string;
  providers: string[];
  price: string;
  stake: string;
  quorum: number;
  commitDeadline: number;
  revealDeadline: number;
  finalDeadline: number;
}

/**
 * A job as JSON-safe data.
 *
 * @example
 * JSON.stringify(jobToJson(job));
 */
export function jobToJson(job: EscrowJob): EscrowJobJson {
  return {
    requestor: job.requestor,
    qubeId: job.qubeId,
    nonce: job.nonce.toString(),
    providers: [...job.providers],
    price: job.price.toString(),
    stake: job.stake.toString(),
    quorum: job.quorum,
    commitDeadline: job.commitDeadline,
    revealDeadline: job.revealDeadline,
    finalDeadline: job.finalDeadline,
  };
}

/**
 * The inverse of {@link jobToJson}; validates shape and ranges.
 *
 * @throws UserError `ESCROW_JOB_INVALID`.
 */
export function jobFromJson(value: EscrowJobJson): EscrowJob {
  const integer = (s: string) => (/^[0-9]{1,80}$/.test(s) ? BigInt(s) : -1n);
  return parseEscrowJob({
    requestor: value.requestor,
    qubeId: value.qubeId,
    nonce: integer(value.nonce),
    providers: value.providers,
    price: integer(value.price),
    stake: integer(value.stake),
    quorum: value.quorum,
    commitDeadline: value.commitDeadline,
    revealDeadline: value.revealDeadline,
    finalDeadline: value.finalDeadline,
  });
}

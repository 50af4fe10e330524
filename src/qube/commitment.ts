/**
 * Commit-reveal of a provider's result, after iExec PoCo's "seal": a commitment binds the qube, the
 * outputs root, a secret salt AND the provider, so one provider can never submit (or later reveal)
 * another's commitment as its own.
 *
 *   commitment = "sha256:" + hex(SHA-256( utf8("airqube/commitment/v1") || 0x00 || qube id digest (32)
 *                 || outputs root digest (32) || salt (32) || provider Ed25519 public key (32) ))
 *
 * All fields have fixed lengths, so the encoding is unambiguous. Commitments and reveals travel signed
 * by the provider (kinds "commitment" and "reveal").
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { bytesEqual, concatBytes, fromHex, toHex, utf8 } from "./bytes.js";
import { decodeEnvelope, type SignedEnvelope, signEnvelope } from "./envelope.js";
import { PeerError, UserError } from "./errors.js";
import { type Source, sourceError } from "./fault.js";
import { ed25519PublicKeyFromPeerId, type Identity } from "./identity.js";
import { qubeIdBytes } from "./qube-id.js";
import { digestSchema, peerIdSchema, qubeIdSchema, sha256HexSchema } from "./schemas.js";
import { validate } from "./validate.js";

const DOMAIN = utf8("airqube/commitment/v1");
/** Default byte limit of an encoded signed commitment or reveal. */
export const MAX_COMMITMENT_BYTES = 4096;
/** Salt length in bytes. */
export const SALT_BYTES = 32;

/**
 * A provider's commitment to a result: the qube, the provider's peer id and the commitment hash
 * ({@link commitmentHash}). Travels signed (kind "commitment").
 */
export const commitmentSchema = z.strictObject({
  version: z.literal(1),
  qubeId: qubeIdSchema,
  provider: peerIdSchema,
  commitment: digestSchema,
});
/** A commitment, as validated by {@link commitmentSchema}. */
export type Commitment = z.infer<typeof commitmentSchema>;

/**
 * The opening of a commitment: the outputs root and the salt that hash, with the qube id and the provider,
 * to the committed value. Travels signed (kind "reveal").
 */
export const revealSchema = z.strictObject({
  version: z.literal(1),
  qubeId: qubeIdSchema,
  provider: peerIdSchema,
  outputsRoot: digestSchema,
  /** The 32-byte salt, hex. */
  salt: sha256HexSchema,
});
/** A reveal, as validated by {@link revealSchema}. */
export type Reveal = z.infer<typeof revealSchema>;

/**
 * The commitment hash of a result.
 *
 * @example
 * commitmentHash({ qubeId, outputsRoot, salt: randomBytes(32), provider: me.peerId }); // "sha256:..."
 */
export function commitmentHash(input: {
  qubeId: string;
  outputsRoot: string;
  salt: Uint8Array;
  provider: string;
}): string {
  if (!(input.salt instanceof Uint8Array) || input.salt.byteLength !== SALT_BYTES) {
    throw new UserError("COMMITMENT_INVALID", "The salt must be 32 random bytes");
  }
  const digest = createHash("sha256")
    .update(
      concatBytes(
        DOMAIN,
        new Uint8Array([0]),
        qubeIdBytes(input.qubeId),
        digestBytes(input.outputsRoot),
        input.salt,
        ed25519PublicKeyFromPeerId(input.provider, "user"),
      ),
    )
    .digest("hex");
  return `sha256:${digest}`;
}

/**
 * The commitment and the matching reveal for a result (keep the reveal secret until the reveal phase).
 *
 * @example
 * const { commitment, reveal } = createCommitment({ qubeId, outputsRoot, salt: randomBytes(32), provider: me.peerId });
 */
export function createCommitment(input: { qubeId: string; outputsRoot: string; salt: Uint8Array; provider: string }): {
  commitment: Commitment;
  reveal: Reveal;
} {
  const commitment = commitmentHash(input);
  return {
    commitment: { version: 1, qubeId: input.qubeId, provider: input.provider, commitment },
    reveal: {
      version: 1,
      qubeId: input.qubeId,
      provider: input.provider,
      outputsRoot: input.outputsRoot,
      salt: toHex(input.salt),
    },
  };
}

/**
 * Checks a reveal against a commitment (both already validated, e.g. by `decodeCommitment` and
 * `decodeReveal`): same qube, same provider, and the recomputed hash equals the committed one.
 * Throws PeerError `REVEAL_MISMATCH` with the reason.
 *
 * @example
 * checkReveal(commitments.get(peer), reveal); // throws if the provider changed its answer
 */
export function checkReveal(commitment: Commitment, reveal: Reveal): void {
  const c = validate(commitmentSchema, commitment, { code: "COMMITMENT_INVALID", what: "commitment" });
  const r = validate(revealSchema, reveal, { code: "REVEAL_INVALID", what: "reveal" });
  if (c.qubeId !== r.qubeId) throw mismatch("the reveal is for another qube");
  if (c.provider !== r.provider) throw mismatch("the reveal is from another provider");
  const recomputed = commitmentHash({
    qubeId: r.qubeId,
    outputsRoot: r.outputsRoot,
    salt: fromHex(r.salt, SALT_BYTES),
    provider: r.provider,
  });
  if (!bytesEqual(digestBytes(recomputed), digestBytes(c.commitment))) {
    throw mismatch("outputs root and salt do not hash to the commitment");
  }
}

/** Signs a commitment as its provider (kind "commitment"). */
export function signCommitment(commitment: Commitment, identity: Identity): SignedEnvelope<Commitment> {
  checkSigner(commitment.provider, identity);
  return signEnvelope(
    "commitment",
    validate(commitmentSchema, commitment, { code: "COMMITMENT_INVALID", what: "commitment", source: "user" }),
    identity,
  );
}

/** Signs a reveal as its provider (kind "reveal"). */
export function signReveal(reveal: Reveal, identity: Identity): SignedEnvelope<Reveal> {
  checkSigner(reveal.provider, identity);
  return signEnvelope(
    "reveal",
    validate(revealSchema, reveal, { code: "REVEAL_INVALID", what: "reveal", source: "user" }),
    identity,
  );
}

/** Options of {@link decodeCommitment} and {@link decodeReveal}. */
export interface DecodeCommitOptions {
  /** If given, the qube it must be about. */
  qubeId?: string;
  /** Largest encoded envelope. Default `MAX_COMMITMENT_BYTES`. */
  maxBytes?: number;
  /** Who supplied the bytes: decides PeerError vs UserError. Default "peer". */
  source?: Source;
}

/** Decodes and verifies a signed commitment (signer must be its provider). Throws typed errors only. */
export function decodeCommitment(bytes: Uint8Array, options: DecodeCommitOptions = {}): Commitment {
  const env = decodeEnvelope(bytes, {
    kind: "commitment",
    schema: commitmentSchema,
    payloadCode: "COMMITMENT_INVALID",
    what: "commitment",
    maxBytes: options.maxBytes ?? MAX_COMMITMENT_BYTES,
    source: options.source,
  });
  return finish(env, options);
}

/** Decodes and verifies a signed reveal (signer must be its provider). Throws typed errors only. */
export function decodeReveal(bytes: Uint8Array, options: DecodeCommitOptions = {}): Reveal {
  const env = decodeEnvelope(bytes, {
    kind: "reveal",
    schema: revealSchema,
    payloadCode: "REVEAL_INVALID",
    what: "reveal",
    maxBytes: options.maxBytes ?? MAX_COMMITMENT_BYTES,
    source: options.source,
  });
  return finish(env, options);
}

function finish<T extends { qubeId: string; provider: string }>(
  env: SignedEnvelope<T>,
  options: DecodeCommitOptions,
): T {
  const source = options.source ?? "peer";
  if (env.signer !== env.payload.provider) {
    throw sourceError(source, "SIGNER_MISMATCH", `The ${env.kind} is not signed by its provider`, {
      details: `provider ${env.payload.provider}, signer ${env.signer}`,
    });
  }
  if (options.qubeId !== undefined && env.payload.qubeId !== options.qubeId) {
    throw sourceError(source, "QUBE_ID_MISMATCH", `The ${env.kind} is about another qube`, {
      details: `expected ${options.qubeId}, got ${env.payload.qubeId}`,
    });
  }
  return env.payload;
}

function checkSigner(provider: string, identity: Identity): void {
  if (provider !== identity.peerId) {
    throw new UserError("SIGNER_MISMATCH", "Only the provider may sign its commitment or reveal", {
      details: `provider ${provider}, signer ${identity.peerId}`,
    });
  }
}

function digestBytes(digest: string): Uint8Array {
  if (typeof digest !== "string" || !/^sha256:[0-9a-f]{64}$/.test(digest)) {
    throw new UserError("COMMITMENT_INVALID", 'A digest is "sha256:" and 64 lower-case hex');
  }
  return fromHex(digest.slice(7), 32);
}

function mismatch(details: string): PeerError {
  return new PeerError("REVEAL_MISMATCH", "The reveal does not match the commitment", { details });
}

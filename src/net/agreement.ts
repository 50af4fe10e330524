/**
 * Agreements: the terms of one qube between one requestor and one provider, signed by both. Both sign the
 * same canonical terms under the `agreement` kind, so either side can prove what the other accepted.
 */
import { z } from "zod";
import {
  canonicalBytes,
  type Identity,
  isoTimeSchema,
  PeerError,
  peerIdSchema,
  qubeIdSchema,
  type SignedEnvelope,
  sha256HexSchema,
  signEnvelope,
  verifyEnvelope,
  weiSchema,
} from "../qube/index.js";

export const agreementTermsSchema = z.strictObject({
  version: z.literal(1),
  qubeId: qubeIdSchema,
  requestor: peerIdSchema,
  provider: peerIdSchema,
  /** Most the requestor pays for this qube, wei. */
  price: weiSchema,
  currency: z.string().regex(/^[A-Z]{2,10}$/),
  /** The provider must have committed by then. */
  deadline: isoTimeSchema,
  /** Escrow job the payment is locked in, when a chain is used. */
  escrowJob: z.string().max(80).optional(),
  /** 16 random bytes (hex) from the requestor, so two agreements on one qube differ. */
  nonce: z.string().regex(/^[0-9a-f]{32}$/),
  /** The requestor's X25519 key (hex) that outputs are sealed to. */
  requestorSealingKey: sha256HexSchema,
});
export type AgreementTerms = z.infer<typeof agreementTermsSchema>;

/** An agreement: the terms and both signatures. */
export const agreementSchema = z.strictObject({
  requestor: z.unknown(),
  provider: z.unknown(),
});

export interface Agreement {
  requestor: SignedEnvelope<AgreementTerms>;
  provider: SignedEnvelope<AgreementTerms>;
}

/** The requestor's half. */
export function proposeAgreement(terms: AgreementTerms, requestor: Identity): SignedEnvelope<AgreementTerms> {
  return signEnvelope("agreement", agreementTermsSchema.parse(terms), requestor);
}

/** Checks a requestor's proposal: signature by the named requestor. */
export function verifyProposal(value: unknown): SignedEnvelope<AgreementTerms> {
  const envelope = verifyEnvelope(value, { kind: "agreement", schema: agreementTermsSchema, what: "agreement" });
  if (envelope.signer !== envelope.payload.requestor) {
    throw new PeerError("AGREEMENT_INVALID", "The proposal is not signed by its requestor");
  }
  return envelope;
}

/** The provider countersigns exactly the proposed terms. */
export function countersign(proposal: SignedEnvelope<AgreementTerms>, provider: Identity): Agreement {
  if (proposal.payload.provider !== provider.peerId) {
    throw new PeerError("AGREEMENT_INVALID", "The proposal names another provider", {
      details: proposal.payload.provider,
    });
  }
  return { requestor: proposal, provider: signEnvelope("agreement", proposal.payload, provider) };
}

/** Verifies a full agreement: both signatures over identical terms by the named parties. */
export function verifyAgreement(value: unknown): Agreement {
  const parsed = agreementSchema.safeParse(value);
  if (!parsed.success) throw new PeerError("AGREEMENT_INVALID", "Malformed agreement");
  const requestor = verifyProposal(parsed.data.requestor);
  const provider = verifyEnvelope(parsed.data.provider, {
    kind: "agreement",
    schema: agreementTermsSchema,
    signer: requestor.payload.provider,
    what: "agreement",
  });
  if (!Buffer.from(canonicalBytes(provider.payload)).equals(Buffer.from(canonicalBytes(requestor.payload)))) {
    throw new PeerError("AGREEMENT_INVALID", "The two halves of the agreement differ");
  }
  return { requestor, provider };
}

/**
 * The sealed qube format: spec, canonical encoding and id, identities and signatures, sealing, result
 * statements, commit-reveal and output manifests. Pure: no I/O, no clock, no randomness.
 * Other layers import from here; modules inside `src/qube/` import each other directly, never this barrel.
 */
export * from "./bytes.js";
export * from "./canonical.js";
export * from "./commitment.js";
export * from "./domains.js";
export * from "./envelope.js";
export * from "./errors.js";
export * from "./fault.js";
export * from "./identity.js";
export * from "./manifest.js";
export * from "./open.js";
export * from "./paths.js";
export * from "./qube-id.js";
export * from "./schemas.js";
export * from "./seal.js";
export * from "./seal-format.js";
export * from "./signed-spec.js";
export * from "./spec.js";
export * from "./statement.js";
export * from "./validate.js";

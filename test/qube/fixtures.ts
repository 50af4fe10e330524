/** Shared fixtures for the qube tests: fixed identities and a small valid spec. */
import { createHash } from "node:crypto";
import { Identity } from "../../src/qube/identity.js";
import { qubeIdOf } from "../../src/qube/qube-id.js";
import { createQubeSpec, type QubeSpec, type QubeSpecDraft } from "../../src/qube/spec.js";

export const seed = (byte: number) => new Uint8Array(32).fill(byte);
export const sha = (data: Uint8Array | string) => createHash("sha256").update(data).digest("hex");

export const requestor = Identity.fromSeed(seed(1));
export const provider = Identity.fromSeed(seed(2));
export const otherProvider = Identity.fromSeed(seed(3));

export const NOW = new Date("2026-11-20T00:00:00.000Z");

export function draft(overrides: Partial<QubeSpecDraft> = {}): QubeSpecDraft {
  return {
    image: { ref: "airqube/busybox:1", digest: `sha256:${sha("image")}` },
    command: ["sh", "-c", "wc -l < /in/data.csv > /out/count"],
    inputs: [{ path: "data.csv", size: 12, sha256: sha("a,b\n1,2\n3,4\n") }],
    outputs: ["count"],
    expiresAt: "2026-12-01T00:00:00.000Z",
    requestor: requestor.peerId,
    ...overrides,
  };
}

export const spec: QubeSpec = createQubeSpec(draft());
export const qubeId: string = qubeIdOf(spec);

/** Runs `fn` and returns the error it throws (fails the test if it does not throw). */
export function thrown(fn: () => unknown): Error & { code?: string; fault?: string } {
  try {
    fn();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error("expected an error");
}

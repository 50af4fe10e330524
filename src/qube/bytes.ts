/**
 * Small byte helpers shared by the qube format (hex, UTF-8, concatenation, constant-time compare).
 * Pure: no I/O, no clock, no randomness.
 */
import { timingSafeEqual } from "node:crypto";
import { PeerError } from "./errors.js";

const HEX_RE = /^(?:[0-9a-f]{2})*$/;

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/**
 * Bytes of a lower-case hex string; throws a PeerError `HEX_INVALID` on anything else
 * (odd length, upper case, other characters, or a length other than `expectedLength` when given).
 */
export function fromHex(hex: string, expectedLength?: number): Uint8Array {
  if (typeof hex !== "string" || !HEX_RE.test(hex)) {
    throw new PeerError("HEX_INVALID", "Expected lower-case hex", { details: `got ${describe(hex)}` });
  }
  if (expectedLength !== undefined && hex.length !== expectedLength * 2) {
    throw new PeerError("HEX_INVALID", "Hex value has the wrong length", {
      details: `expected ${expectedLength} bytes, got ${hex.length / 2}`,
    });
  }
  return new Uint8Array(Buffer.from(hex, "hex"));
}

/** UTF-8 bytes of a string. */
export function utf8(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "utf8"));
}

/** Concatenates byte arrays into a fresh Uint8Array. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.byteLength;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return out;
}

/** Constant-time equality of two byte arrays (false on different lengths). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  return timingSafeEqual(a, b);
}

/** A short, safe description of an untrusted value for error details. */
export function describe(value: unknown): string {
  if (typeof value === "string") return value.length > 40 ? `a string of ${value.length} chars` : JSON.stringify(value);
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value;
}

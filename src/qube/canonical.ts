/**
 * Canonical encoding of Airqube messages: RFC 8785 JSON Canonicalization Scheme (JCS).
 *
 * Why JCS rather than deterministic CBOR: every Airqube message is JSON on the wire and in users' hands
 * (specs are written and read as JSON), JCS is a few rules on top of JSON (sorted keys by UTF-16 code unit,
 * no whitespace, ECMAScript number formatting, minimal string escapes), and it has independent
 * implementations in many languages. Hashes and signatures are always computed over these bytes.
 *
 * The value model is plain JSON: objects, arrays, strings (well-formed UTF-16, no lone surrogates),
 * finite numbers, booleans and null. Anything else is rejected with a typed error instead of being
 * silently coerced the way `JSON.stringify` would.
 */
import { isUtf8 } from "node:buffer";
import jcs from "canonicalize";
import { describe } from "./bytes.js";
import { type Source, sourceError } from "./fault.js";

/** Deepest nesting accepted in canonical values (Airqube messages are shallow). */
export const MAX_CANONICAL_DEPTH = 32;

/** Options of {@link canonicalJson} and {@link canonicalBytes}. */
export interface CanonicalOptions {
  /** Who supplied the value: decides UserError vs PeerError. Default "user". */
  source?: Source;
}

/**
 * The RFC 8785 canonical JSON text of `value`.
 *
 * @example
 * canonicalJson({ b: 1, a: [true, "x"] }); // '{"a":[true,"x"],"b":1}'
 */
export function canonicalJson(value: unknown, options: CanonicalOptions = {}): string {
  const source = options.source ?? "user";
  checkJsonValue(value, source);
  const text = jcs(value);
  if (text === undefined) throw sourceError(source, "CANONICAL_INVALID", "Value has no JSON representation");
  return text;
}

/**
 * The UTF-8 bytes of the canonical JSON text of `value` (what Airqube hashes and signs).
 *
 * @example
 * canonicalBytes({ a: 1 }); // utf8('{"a":1}')
 */
export function canonicalBytes(value: unknown, options: CanonicalOptions = {}): Uint8Array {
  return new Uint8Array(Buffer.from(canonicalJson(value, options), "utf8"));
}

/** Options of {@link parseJsonBytes}. */
export interface ParseJsonOptions {
  /** Largest accepted input in bytes, checked before decoding. */
  maxBytes: number;
  /** What is being parsed, for error messages (e.g. "qube spec"). */
  what?: string;
  /** Who supplied the bytes. Default "peer". */
  source?: Source;
  /** Reject input that is not already in canonical form (byte for byte). */
  requireCanonical?: boolean;
}

/**
 * Parses JSON bytes into a plain JSON value, with the byte limit checked first.
 * Throws `TOO_LARGE`, `JSON_INVALID`, `CANONICAL_INVALID` or `NOT_CANONICAL` (PeerError by default).
 *
 * @example
 * parseJsonBytes(utf8('{"a":1}'), { maxBytes: 1024 }); // { a: 1 }
 */
export function parseJsonBytes(bytes: Uint8Array, options: ParseJsonOptions): unknown {
  const source = options.source ?? "peer";
  const what = options.what ?? "message";
  if (!(bytes instanceof Uint8Array)) {
    throw sourceError(source, "JSON_INVALID", `The ${what} is not a byte array`);
  }
  if (bytes.byteLength > options.maxBytes) {
    throw sourceError(source, "TOO_LARGE", `The ${what} is too large`, {
      details: `${bytes.byteLength} bytes, limit ${options.maxBytes}`,
    });
  }
  let value: unknown;
  try {
    // isUtf8 first: Buffer's decoder would replace invalid sequences instead of failing.
    if (!isUtf8(bytes)) throw new SyntaxError("invalid UTF-8");
    value = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"));
  } catch (error) {
    throw sourceError(source, "JSON_INVALID", `The ${what} is not valid UTF-8 JSON`, {
      details: error instanceof Error ? error.message : undefined,
      cause: error,
    });
  }
  if (options.requireCanonical) {
    const again = canonicalBytes(value, { source });
    if (!Buffer.from(again).equals(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))) {
      throw sourceError(source, "NOT_CANONICAL", `The ${what} is not in canonical (RFC 8785) form`);
    }
  } else {
    checkJsonValue(value, source);
  }
  return value;
}

/** Walks a value iteratively and throws CANONICAL_INVALID on anything outside the JSON value model. */
function checkJsonValue(root: unknown, source: Source): void {
  const stack: Array<{ value: unknown; depth: number; path: string }> = [{ value: root, depth: 0, path: "$" }];
  const invalid = (path: string, why: string) =>
    sourceError(source, "CANONICAL_INVALID", "Value cannot be canonically encoded", { details: `${path}: ${why}` });
  while (stack.length > 0) {
    const { value, depth, path } = stack.pop()!;
    switch (typeof value) {
      case "string":
        if (!value.isWellFormed()) throw invalid(path, "string has a lone surrogate");
        continue;
      case "number":
        if (!Number.isFinite(value)) throw invalid(path, `number ${value} is not finite`);
        continue;
      case "boolean":
        continue;
      case "object":
        break;
      default:
        throw invalid(path, `${typeof value} is not a JSON value`);
    }
    if (value === null) continue;
    if (depth >= MAX_CANONICAL_DEPTH) throw invalid(path, `nested deeper than ${MAX_CANONICAL_DEPTH}`);
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const item = value[i];
        if (item === undefined) throw invalid(path, `[${i}] is undefined`);
        stack.push({ value: item, depth: depth + 1, path: `${path}[${i}]` });
      }
      continue;
    }
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) throw invalid(path, `${describe(value)} is not a plain object`);
    if (typeof (value as { toJSON?: unknown }).toJSON === "function") throw invalid(path, "object has a toJSON method");
    for (const key of Object.keys(value)) {
      if (!key.isWellFormed()) throw invalid(path, "key has a lone surrogate");
      const item = (value as Record<string, unknown>)[key];
      if (item === undefined) continue; // dropped, as in JSON
      stack.push({ value: item, depth: depth + 1, path: `${path}.${key}` });
    }
  }
}

/**
 * Rules for the relative paths a qube spec and an outputs manifest may name (inputs, declared outputs,
 * output files). A valid path is relative POSIX: non-empty segments separated by "/", no "." or "..",
 * no leading or trailing "/", no backslash, no control characters, NFC-normalised Unicode,
 * at most 1024 UTF-8 bytes, segments at most 255 bytes, at most 32 segments.
 */

/** Longest relative path, in UTF-8 bytes. */
export const MAX_PATH_BYTES = 1024;
/** Longest path segment, in UTF-8 bytes. */
export const MAX_SEGMENT_BYTES = 255;
/** Most segments in a relative path. */
export const MAX_PATH_DEPTH = 32;

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what we reject
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

/**
 * Why `path` is not a valid relative qube path, or undefined when it is valid.
 *
 * @example
 * relativePathProblem("data/in.csv"); // undefined
 * relativePathProblem("../etc/passwd"); // 'segment ".." is not allowed'
 */
export function relativePathProblem(path: string): string | undefined {
  if (typeof path !== "string") return "not a string";
  if (path.length === 0) return "empty";
  if (!path.isWellFormed()) return "has a lone surrogate";
  if (Buffer.byteLength(path, "utf8") > MAX_PATH_BYTES) return `longer than ${MAX_PATH_BYTES} bytes`;
  if (CONTROL_RE.test(path)) return "has a control character";
  if (path.includes("\\")) return "has a backslash";
  if (path.normalize("NFC") !== path) return "is not NFC-normalised";
  if (path.startsWith("/")) return "is absolute";
  const segments = path.split("/");
  if (segments.length > MAX_PATH_DEPTH) return `deeper than ${MAX_PATH_DEPTH} segments`;
  for (const segment of segments) {
    if (segment === "") return "has an empty segment";
    if (segment === "." || segment === "..") return `segment "${segment}" is not allowed`;
    if (Buffer.byteLength(segment, "utf8") > MAX_SEGMENT_BYTES)
      return `a segment is longer than ${MAX_SEGMENT_BYTES} bytes`;
  }
  return undefined;
}

/** True when `path` equals `base` or lies below it ("a/b" is under "a", "ab" is not). */
export function isPathUnder(path: string, base: string): boolean {
  return path === base || path.startsWith(`${base}/`);
}

/** Orders paths by their UTF-8 bytes (the order every Airqube list of paths is kept in). */
export function comparePaths(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

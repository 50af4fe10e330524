/**
 * The dashboard's bounds: page sizes, response sizes, and how a page of a list is asked for (`?limit=&offset=`).
 */
import { UserError } from "../qube/errors.js";

/** Rows of a list when `limit` is not given. */
export const DEFAULT_PAGE_LIMIT = 50;
/** Most rows of a list in one response. */
export const MAX_PAGE_LIMIT = 200;
/** Largest offset accepted. */
export const MAX_PAGE_OFFSET = 1_000_000;
/** Largest JSON body the API sends; a larger one is refused (413) rather than sent. */
export const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
/** Most evidence records of one qube in an evidence download. */
export const MAX_EVIDENCE_RECORDS = 256;
/** Longest request target accepted, characters. */
export const MAX_URL_LENGTH = 2048;

/** One page of a list, with the total so that a client can page on. */
export interface Page<T> {
  items: T[];
  total: number;
  limit: number;
  offset: number;
}

/** Wraps rows of one page. */
export function pageOf<T>(items: T[], total: number, page: { limit: number; offset: number }): Page<T> {
  return { items, total, limit: page.limit, offset: page.offset };
}

/**
 * Reads `limit` and `offset` from a query string, within bounds.
 *
 * @throws UserError `DASHBOARD_BAD_QUERY` for a value that is not a whole number in range.
 * @example
 * parsePage(new URLSearchParams("limit=20")); // { limit: 20, offset: 0 }
 */
export function parsePage(query: URLSearchParams): { limit: number; offset: number } {
  const read = (name: string, fallback: number, min: number, max: number) => {
    const raw = query.get(name);
    if (raw === null) return fallback;
    if (!/^\d{1,7}$/.test(raw) || Number(raw) < min || Number(raw) > max)
      throw new UserError("DASHBOARD_BAD_QUERY", `The ${name} must be a whole number from ${min} to ${max}`);
    return Number(raw);
  };
  return {
    limit: read("limit", DEFAULT_PAGE_LIMIT, 1, MAX_PAGE_LIMIT),
    offset: read("offset", 0, 0, MAX_PAGE_OFFSET),
  };
}

/** True while the process `pid` (a value read from a status file) lives. */
export function isAlive(pid: unknown): boolean {
  if (typeof pid !== "number" || !Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

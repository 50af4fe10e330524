/** Parsers for human-friendly CLI values (sizes, durations), with clear errors. */
import { InvalidArgumentError } from "commander";

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
};
const TIME_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `256m` → 268435456. */
export function parseSize(value: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  const unit = match ? SIZE_UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined) throw new InvalidArgumentError(`"${value}" is not a size (e.g. 512k, 256m, 1g)`);
  return Math.round(Number(match[1]) * unit);
}

/** 3_221_225 → `3.1 MiB` (bytes as a person reads them: B, KiB, MiB, GiB, one decimal above bytes). */
export function formatBytes(bytes: number): string {
  const units = ["KiB", "MiB", "GiB", "TiB"];
  if (!Number.isFinite(bytes) || bytes < 1024) return `${Math.max(0, Math.floor(bytes) || 0)} B`;
  let value = bytes;
  let unit = "B";
  for (const next of units) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  return `${value.toFixed(1)} ${unit}`;
}

/** `30s` → 30000; a bare number is seconds. */
export function parseDuration(value: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/i.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`"${value}" is not a duration (e.g. 500ms, 30s, 5m)`);
  return Math.round(Number(match[1]) * TIME_UNITS[(match[2] ?? "s").toLowerCase()]!);
}

/** A positive number (cores, counts). */
export function parsePositive(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`"${value}" is not a positive number`);
  return n;
}

/** A positive integer. */
export function parseCount(value: string): number {
  const n = parsePositive(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`"${value}" is not a whole number`);
  return n;
}

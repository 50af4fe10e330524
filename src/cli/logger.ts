/**
 * The CLI's pino logger: JSON lines on stderr, level from AIRQUBE_LOG_LEVEL (default warn), for every command
 * (provider, requestor, probe, devnet). An unknown level is an error, not ignored.
 */
import { type Logger, pino } from "pino";
import { UserError } from "../qube/errors.js";

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** The level AIRQUBE_LOG_LEVEL asks for. Throws UserError `LOG_LEVEL_INVALID` for an unknown one. */
export function logLevel(env: Record<string, string | undefined> = process.env): string {
  const level = env.AIRQUBE_LOG_LEVEL?.trim().toLowerCase() || "warn";
  if (!(LOG_LEVELS as readonly string[]).includes(level))
    throw new UserError("LOG_LEVEL_INVALID", "AIRQUBE_LOG_LEVEL is not a log level", {
      details: `"${env.AIRQUBE_LOG_LEVEL}": use one of ${LOG_LEVELS.join(", ")}`,
    });
  return level;
}

/**
 * A logger named after the component.
 *
 * @example
 * const logger = cliLogger("requestor"); logger.info({ qubeId }, "qube sealed");
 */
export function cliLogger(name: string): Logger {
  return pino({ name, level: logLevel() }, pino.destination(2));
}

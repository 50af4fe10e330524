/** The CLI's pino logger: JSON lines on stderr, level from AIRQUBE_LOG_LEVEL (default warn). */
import { pino } from "pino";

export function cliLogger(name: string) {
  return pino({ name, level: process.env.AIRQUBE_LOG_LEVEL ?? "warn" }, pino.destination(2));
}

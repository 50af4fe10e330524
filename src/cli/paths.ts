/** Default locations: everything under AIRQUBE_HOME (default ~/.airqube). */
import { homedir } from "node:os";
import { join } from "node:path";

export function airqubeHome(): string {
  return process.env.AIRQUBE_HOME ?? join(homedir(), ".airqube");
}

export const defaultProviderDir = (): string => join(airqubeHome(), "provider");
export const defaultRequestorDir = (): string => join(airqubeHome(), "requestor");
export const defaultProbeCache = (): string => join(airqubeHome(), "probe-cache");

/**
 * Shared set-up of the HTTP tier: a loopback yagna (test/golem/http-yagna/) whose providers run busybox in
 * Airqube's container sandbox, and a GolemMarket connected to it by URL and app key only.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { GolemConfig } from "../../../src/golem/config.js";
import { GolemMarket } from "../../../src/golem/golem-market.js";
import { GVMI_HASH, testConfig } from "../helpers.js";
import type { SimProvider } from "../http-yagna/provider.js";
import { HttpYagna } from "../http-yagna/server.js";

/** The GVMI the simulated providers know: busybox with an /input and an /output volume. */
export const BUSYBOX = { docker: "airqube/busybox:latest", volumes: ["/input", "/output"] };

export function httpConfig(yagna: HttpYagna, overrides: Record<string, unknown> = {}): GolemConfig {
  const config = testConfig({
    timeouts: {
      scanMs: 1000,
      negotiationMs: 10_000,
      deployMs: 20_000,
      transferMs: 20_000,
      finalizeMs: 10_000,
      runGraceMs: 20_000,
    },
    ...overrides,
  });
  return { ...config, apiUrl: yagna.url, appKey: yagna.appKey };
}

export async function httpMarket(
  providers: SimProvider[],
  overrides: Record<string, unknown> = {},
): Promise<{ yagna: HttpYagna; market: GolemMarket; stagingDir: string }> {
  const yagna = await HttpYagna.start({ providers, images: { [GVMI_HASH]: BUSYBOX } });
  const stagingDir = await mkdtemp(join(tmpdir(), "airqube-golem-http-"));
  try {
    const logger = process.env.HY_DEBUG ? (await import("pino")).pino({ level: "debug" }, process.stderr) : undefined;
    const market = await GolemMarket.connect(httpConfig(yagna, overrides), {
      stagingDir,
      ...(logger ? { logger } : {}),
    });
    return { yagna, market, stagingDir };
  } catch (error) {
    await yagna.close();
    throw error;
  }
}

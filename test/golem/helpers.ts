/** Shared set-up of the Golem backend tests: a sealed qube, a config, a market over the fake network. */
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { type GolemConfig, loadGolemConfig } from "../../src/golem/config.js";
import { GolemMarket } from "../../src/golem/golem-market.js";
import { AirqubeError } from "../../src/qube/errors.js";
import { Identity } from "../../src/qube/identity.js";
import type { SealedQube } from "../../src/requestor/api.js";
import { type QubeRequest, sealQube } from "../../src/requestor/draft.js";
import { FakeGolem, type FakeProviderSpec } from "./fake-yagna.js";

export const IMAGE_DIGEST = `sha256:${"ab".repeat(32)}`;
export const GVMI_HASH = "c0".repeat(28);
export const requestor = Identity.fromSeed(new Uint8Array(32).fill(7));

/** A provider id: a Golem node id (0x + 40 hex). */
export const node = (n: number) => `0x${n.toString(16).padStart(40, "0")}`;

export function testConfig(overrides: Record<string, unknown> = {}): GolemConfig {
  return loadGolemConfig(
    { YAGNA_APPKEY: "test-key" },
    {
      images: { [IMAGE_DIGEST]: { hash: GVMI_HASH, url: "http://127.0.0.1:1/airqube-test.gvmi" } },
      timeouts: {
        scanMs: 300,
        negotiationMs: 5000,
        deployMs: 5000,
        transferMs: 5000,
        finalizeMs: 2000,
        runGraceMs: 500,
      },
      ...overrides,
    },
  );
}

export async function testQube(request: Partial<QubeRequest> = {}): Promise<SealedQube> {
  const inputDir = await mkdtemp(join(tmpdir(), "airqube-golem-in-"));
  await writeFile(join(inputDir, "data.csv"), "a,b\n1,2\n3,4\n");
  return sealQube(
    {
      image: "airqube/busybox:1",
      imageDigest: IMAGE_DIGEST,
      command: ["sh", "-c", "wc -l < /input/data.csv > /output/result.txt"],
      inputDir,
      outputs: ["result.txt"],
      limits: { wallTimeMs: 1000, outputBytes: 1024 * 1024, outputFiles: 10 },
      redundancy: { mode: "fixed", k: 3, quorum: 2 },
      ...request,
    },
    requestor,
  );
}

export async function fakeMarket(
  providers: FakeProviderSpec[],
  config: GolemConfig = testConfig(),
): Promise<{ fake: FakeGolem; market: GolemMarket; stagingDir: string }> {
  const fake = new FakeGolem(providers);
  const stagingDir = await mkdtemp(join(tmpdir(), "airqube-golem-staging-"));
  const market = await GolemMarket.connect(config, { override: fake.override(), stagingDir });
  return { fake, market, stagingDir };
}

/** The typed error a promise rejects with (the test fails when it resolves, or rejects with an untyped error). */
export async function rejection(promise: Promise<unknown>): Promise<AirqubeError> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(AirqubeError);
    return error as AirqubeError;
  }
  expect.fail("expected a rejection");
}

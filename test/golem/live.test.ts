/**
 * Opt-in: the same adapter against a real yagna daemon on this machine. Skipped unless YAGNA_APPKEY is set.
 *
 *   yagna service run &                      # yagna on 127.0.0.1:7465, funded on the testnet:
 *   yagna payment fund --network holesky
 *   export YAGNA_APPKEY=$(yagna app-key list --json | jq -r '.[0].key')
 *   export AIRQUBE_GOLEM_IMAGE_HASH=<sha3-224 of a busybox GVMI>   # gvmkit-build busybox:latest --push
 *   export AIRQUBE_GOLEM_IMAGE_URL=<its download URL>
 *   npx mocha --no-config -n import=tsx --timeout 900000 test/golem/live.test.ts
 *
 * It rents three providers on the testnet (tGLM), runs a tiny qube and checks the verified result.
 */
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { loadGolemConfig } from "../../src/golem/config.js";
import { GolemMarket } from "../../src/golem/golem-market.js";
import { Requestor } from "../../src/requestor/requestor.js";
import { IMAGE_DIGEST, testQube } from "./helpers.js";

const live = process.env.YAGNA_APPKEY && process.env.AIRQUBE_GOLEM_IMAGE_HASH ? describe : describe.skip;

live("golem live (YAGNA_APPKEY set: real yagna on loopback)", function () {
  this.timeout(900_000);

  it("runs a qube on three testnet providers and verifies it", async () => {
    const config = loadGolemConfig(process.env, {
      images: {
        [IMAGE_DIGEST]: {
          hash: process.env.AIRQUBE_GOLEM_IMAGE_HASH,
          ...(process.env.AIRQUBE_GOLEM_IMAGE_URL ? { url: process.env.AIRQUBE_GOLEM_IMAGE_URL } : {}),
        },
      },
    });
    const market = await GolemMarket.connect(config);
    const dataDir = await mkdtemp(join(tmpdir(), "airqube-golem-live-"));
    const requestor = new Requestor({ market, dataDir });
    try {
      const qube = await testQube({ limits: { wallTimeMs: 120_000, outputBytes: 1024 * 1024, outputFiles: 10 } });
      const result = await requestor.run(qube, { outputDir: join(dataDir, "out") });
      expect(result.status, JSON.stringify(result.failures)).to.equal("verified");
      expect((await readFile(join(dataDir, "out", "result.txt"), "utf8")).trim()).to.equal("3");
    } finally {
      requestor.close();
      await market.close();
    }
  });
});

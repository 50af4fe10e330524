import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "chai";
import Docker from "dockerode";
import { describeFailure } from "../../src/cli/run-command.js";
import { ImageCache } from "../../src/images/image-cache.js";
import { providerImagesConfigSchema } from "../../src/images/limits.js";
import { parseDigestRef } from "../../src/images/registry-pull.js";
import type { ProviderAgent } from "../../src/provider/agent.js";
import { AirqubeError } from "../../src/qube/errors.js";
import { connectRequestor, startAgents, tmp } from "../helpers/network.js";
import type { FixtureArchive } from "./archive-fixtures.js";
import { busyboxWithMarker, type LoopbackRegistry, pushToRegistry, startRegistry } from "./registry-fixture.js";

describe("images: pulling by digest from an allowlisted registry (Debian's docker-registry on 127.0.0.1) @docker", function () {
  this.timeout(90_000);
  const docker = new Docker();
  const marker = `pulled ${process.pid} ${Date.now()}`;
  let registry: LoopbackRegistry;
  let fixture: FixtureArchive;
  let manifestDigest: string;
  const removeFixture = () =>
    docker
      .getImage(fixture?.imageId ?? "none")
      .remove({ force: true })
      .catch(() => undefined);

  before(async () => {
    registry = await startRegistry();
    // a runnable image only the registry has: pushed, then removed from the engine
    fixture = await busyboxWithMarker(docker, marker);
    manifestDigest = await pushToRegistry(docker, registry, fixture, "aq/fixture");
  });
  after(async () => {
    registry?.stop();
    await removeFixture();
  });

  const config = () => providerImagesConfigSchema.parse({ registries: [registry.url] });

  it("pulls name@sha256 from the allowlisted registry, checks it like a shipped archive, and loads it", async () => {
    const cache = new ImageCache(tmp("aq-pull-cache-"), docker, config());
    const ref = `${registry.host}/aq/fixture@${manifestDigest}`;
    expect(await cache.plan({ ref, digest: fixture.imageId })).to.deep.equal({ kind: "pull", ref });
    // a manifest whose config is not the image the qube names is refused, nothing loaded
    const wrong = `sha256:${"1".repeat(64)}`;
    const error = await cache.pull({ ref, digest: wrong }).catch((e: unknown) => e);
    expect((error as AirqubeError).code).to.equal("IMAGE_DIGEST_MISMATCH");
    expect(cache.installed).to.equal(0);
    await cache.pull({ ref, digest: fixture.imageId });
    expect(cache.installed).to.equal(1);
    expect((await cache.plan({ ref, digest: fixture.imageId })).kind).to.equal("present");
  });

  it("refuses a tag and a registry that is not on the allowlist", async () => {
    expect(() => parseDigestRef(`${registry.host}/aq/fixture:t`)).to.throw(AirqubeError, /by digest only/);
    const cache = new ImageCache(tmp("aq-pull-cache-"), docker, config());
    const absent = `sha256:${"2".repeat(64)}`;
    const byTag = await cache.plan({ ref: `${registry.host}/aq/fixture:t`, digest: absent });
    expect(byTag).to.deep.include({ kind: "unavailable" });
    expect((byTag as { reason: string }).reason).to.match(/by digest only/);
    const elsewhere = await cache.plan({ ref: `127.0.0.2:5000/aq/fixture@${manifestDigest}`, digest: absent });
    expect((elsewhere as { reason: string }).reason).to.match(/not on this provider's allowlist/);
  });

  it("over the network: the requestor names host/name@sha256, providers that allowlist the registry pull it and agree (k = 2); one that does not refuses, and says why", async () => {
    await removeFixture(); // the first test loaded it: no provider has it now
    let agents: ProviderAgent[] = [];
    let client: Awaited<ReturnType<typeof connectRequestor>> | undefined;
    try {
      // providers 0 and 1 allowlist the loopback registry; provider 2 pulls from nowhere
      const started = await startAgents(3, (i) => ({
        images: providerImagesConfigSchema.parse(i < 2 ? { registries: [registry.url] } : {}),
      }));
      agents = started.agents;
      client = await connectRequestor(started.bootstrap);
      const market = client.market;
      for (let i = 0; i < 100 && !agents.every((a) => market.offerOf(a.identity.peerId)); i++) {
        await market.offers.queryConnected({});
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const offers = agents.map((a) => market.offerOf(a.identity.peerId));
      expect(offers.map((o) => o?.images?.pulls ?? [])).to.deep.equal([[registry.host], [registry.host], []]);
      const qube = await client.seal({
        image: `${registry.host}/aq/fixture@${manifestDigest}`,
        imageDigest: fixture.imageId,
        command: ["sh", "-c", "cat /marker > /output/result"],
        redundancy: { mode: "fixed", k: 2, quorum: 2 },
      });
      const outputDir = tmp("aq-pull-out-");
      const t0 = Date.now();
      // the provider without the registry is asked first: it must refuse, and the other two carry the run
      const report = await client.requestor.run(qube, { outputDir, prefer: [agents[2]!.identity.peerId] });
      console.log(`      pulled by 2 providers and verified at k = 2 in ${Date.now() - t0} ms`);
      expect(report.status, JSON.stringify(report.failures)).to.equal("verified");
      expect(report.verified).to.equal(true);
      expect([...report.agreeing].sort()).to.deep.equal(
        [agents[0]!.identity.peerId, agents[1]!.identity.peerId].sort(),
      );
      expect(readFileSync(join(outputDir, "result"), "utf8")).to.equal(marker);
      const refusal = report.failures.find((f) => f.provider === agents[2]!.identity.peerId);
      expect(refusal, JSON.stringify(report.failures)).to.not.equal(undefined);
      const line = describeFailure(refusal!);
      expect(line, line).to.match(/refused: IMAGE_UNAVAILABLE: .*not on this provider.s allowlist/);
      expect(agents[2]!.images.installed).to.equal(0);
      // both pulled into one shared engine here: at least one loaded it, the other may have found it loaded
      expect(agents[0]!.images.installed + agents[1]!.images.installed).to.be.at.least(1);
    } finally {
      await client?.close();
      for (const agent of agents) await agent.stop({ drainMs: 2000 });
    }
  });
});

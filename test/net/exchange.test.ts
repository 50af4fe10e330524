import { peerIdFromString } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import { expect } from "chai";
import { type AgreementTerms, proposeAgreement } from "../../src/net/agreement.js";
import { EXCHANGE_PROTOCOL, MAX_FRAME_BYTES } from "../../src/net/exchange/constants.js";
import { ExchangeSession } from "../../src/net/exchange/dialer.js";
import { Wire } from "../../src/net/wire.js";
import type { ProviderAgent } from "../../src/provider/agent.js";
import { toHex, verifyResultStatement } from "../../src/qube/index.js";
import { connectRequestor, startAgents, tmp } from "../helpers/network.js";

describe("net: qube exchange between real agents @docker", function () {
  this.timeout(120_000);
  let agents: ProviderAgent[];
  let bootstrap: string;
  let client: Awaited<ReturnType<typeof connectRequestor>>;

  before(async () => {
    ({ agents, bootstrap } = await startAgents(3, () => ({ maxConcurrent: 1 })));
    client = await connectRequestor(bootstrap);
  });
  after(async () => {
    await client?.close();
    for (const agent of agents ?? []) await agent.stop({ drainMs: 5000 });
  });

  const sessionTo = async (
    agent: ProviderAgent,
    qube: Awaited<ReturnType<typeof client.seal>>,
    terms: Partial<AgreementTerms> = {},
  ) => {
    const offer = agent.offer();
    const proposal = proposeAgreement(
      {
        version: 1,
        qubeId: qube.spec.id,
        requestor: client.identity.peerId,
        provider: offer.provider,
        price: "100000000000000000000",
        currency: "GLM",
        deadline: new Date(Date.now() + 60_000).toISOString(),
        nonce: "00".repeat(16),
        requestorSealingKey: toHex(client.identity.sealing.publicKey),
        ...terms,
      },
      client.identity,
    );
    return ExchangeSession.open(
      client.market.node,
      { provider: offer.provider, addrs: offer.addrs, sealingKey: Buffer.from(offer.sealingKey, "hex") },
      qube.spec,
      proposal,
      client.identity,
      qube.inputs,
    );
  };

  /** Proves a provider still serves: a full qube on it alone. */
  const stillServes = async (agent: ProviderAgent) => {
    const qube = await client.seal({
      command: ["sh", "-c", "echo alive > /output/result"],
      redundancy: { mode: "fixed", k: 1, quorum: 1 },
    });
    const session = await sessionTo(agent, qube);
    await session.awaitCommitment();
    const result = await session.reveal(tmp("aq-out-"));
    expect(result.files.map((f) => f.path)).to.deep.equal(["result"]);
  };

  it("runs a qube with redundancy 3 and returns three agreeing signed statements", async () => {
    const inputDir = tmp("aq-in-");
    await (await import("node:fs/promises")).writeFile(`${inputDir}/x.txt`, "12345");
    const qube = await client.seal({ command: ["sh", "-c", "wc -c < /input/x.txt > /output/result"], inputDir });
    const outputDir = tmp("aq-out-");
    const result = await client.requestor.run(qube, { outputDir });
    expect(result.status).to.equal("verified");
    expect(result.verified).to.equal(true);
    expect(new Set(result.agreeing).size).to.equal(3);
    for (const answer of result.answers) {
      const statement = verifyResultStatement(answer.statement, { provider: answer.provider, qubeId: qube.spec.id });
      expect(statement.outputsRoot).to.equal(result.outputsRoot);
      expect(statement.exitCode).to.equal(0);
      // metered from the container's cgroup, and the same figures in the provider's ledger
      expect(statement.usage.maxMemoryBytes, "peak memory metered").to.be.above(64 * 1024);
      expect(statement.usage.cpuMs).to.be.at.most(statement.usage.wallMs * 2);
      const ledger = agents.find((a) => a.offer().provider === answer.provider)!.ledger;
      const job = ledger.recent(50).find((row) => row.qubeId === qube.spec.id)!;
      const { cpuMs, wallMs, maxMemoryBytes } = statement.usage;
      expect(job.usage).to.deep.equal({ cpuMs, wallMs, maxMemoryBytes });
    }
    expect((await (await import("node:fs/promises")).readFile(`${outputDir}/result`, "utf8")).trim()).to.equal("5");
  });

  it("closes the stream on malformed, oversized and truncated frames and bad signatures, and keeps serving", async () => {
    const target = agents[1]!;
    const peer = peerIdFromString(target.identity.peerId);
    await client.market.node.peerStore.merge(peer, { multiaddrs: target.offer().addrs.map((a) => multiaddr(a)) });
    const open = async () =>
      new Wire(await client.market.node.dialProtocol(peer, EXCHANGE_PROTOCOL), { maxFrameBytes: MAX_FRAME_BYTES * 4 });
    const expectClosed = async (wire: Wire) => {
      const frame = await wire.receiveFrame({ signal: AbortSignal.timeout(10_000) }).catch((e) => e);
      // the provider answers with a "failed" message and aborts, or just aborts
      if (frame?.kind === "json") {
        expect(frame.value).to.have.property("type", "failed");
        const next = await wire.receiveFrame({ signal: AbortSignal.timeout(10_000) }).catch((e) => e);
        expect(next).to.be.instanceOf(Error);
      } else expect(frame).to.be.instanceOf(Error);
    };
    // malformed JSON
    let wire = await open();
    await (wire as unknown as { lp: { write(b: Uint8Array): Promise<void> } }).lp.write(
      new Uint8Array([0x4a, 0x7b, 0x22]),
    );
    await expectClosed(wire);
    // oversized frame (checked before it is buffered)
    wire = await open();
    await wire.sendBytes(new Uint8Array(MAX_FRAME_BYTES + 10)).catch(() => undefined);
    await expectClosed(wire);
    // truncated: a length prefix promising more than is sent, then the stream ends
    wire = await open();
    await (wire.stream as unknown as { send(b: Uint8Array): boolean }).send(new Uint8Array([0xff, 0x01, 0x4a]));
    await wire.close();
    await expectClosed(wire);
    // a spec whose signature does not verify
    const qube = await client.seal({ command: ["true"] });
    const tampered = { ...qube.spec.envelope, payload: { ...qube.spec.envelope.payload, command: ["false"] } };
    wire = await open();
    await wire.send({
      type: "propose",
      spec: tampered,
      proposal: { kind: "agreement", payload: {}, signer: client.identity.peerId, signature: "00".repeat(64) },
    });
    const answer = await wire.receiveFrame({ signal: AbortSignal.timeout(10_000) });
    expect(answer.kind === "json" && answer.value).to.deep.include({ type: "failed", code: "SIGNATURE_INVALID" });
    await stillServes(target);
  });

  it("reports a provider that fails on a proposal by the provider's own code (PROVIDER_FAILED), not as an invalid message", async () => {
    const target = agents[1]!;
    const offer = target.offer();
    const qube = await client.seal({ command: ["true"] });
    // a proposal whose signature does not verify: the provider answers `failed` with its reason
    const forged = { kind: "agreement", payload: {}, signer: client.identity.peerId, signature: "00".repeat(64) };
    const error = await ExchangeSession.open(
      client.market.node,
      { provider: offer.provider, addrs: offer.addrs, sealingKey: Buffer.from(offer.sealingKey, "hex") },
      qube.spec,
      forged as never,
      client.identity,
      qube.inputs,
    ).catch((e: unknown) => e);
    expect(error).to.have.property("code", "PROVIDER_FAILED");
    expect((error as { details?: string }).details).to.match(/^[A-Z_]+: /);
    expect((error as { details?: string }).details).not.to.match(/^MESSAGE_INVALID/);
    await stillServes(target);
  });

  it("refuses an image the provider does not have, by digest, before accepting", async () => {
    const qube = await client.seal({ command: ["true"], imageDigest: `sha256:${"ab".repeat(32)}` });
    const error = await sessionTo(agents[2]!, qube).catch((e) => e);
    expect(error.code).to.equal("PROPOSAL_REJECTED");
    expect(error.details).to.match(/^IMAGE_UNAVAILABLE/);
  });

  it("refuses work beyond capacity with its reason", async () => {
    const target = agents[0]!;
    const slow = await client.seal({ command: ["sh", "-c", "sleep 2; echo > /output/result"] });
    const busy = await sessionTo(target, slow);
    const second = await client.seal({ command: ["sh", "-c", "echo second > /output/result"] });
    const error = await sessionTo(target, second).catch((e) => e);
    expect(error.code).to.equal("PROPOSAL_REJECTED");
    expect(error.details).to.match(/^AT_CAPACITY: all 1 slots are busy/);
    await busy.awaitCommitment();
    await busy.reveal(tmp("aq-out-"));
  });

  it("refuses a price below the provider's minimum", async () => {
    const qube = await client.seal({ command: ["true"] });
    const error = await sessionTo(agents[1]!, qube, { price: "1" }).catch((e) => e);
    expect(error.details).to.match(/^PRICE_TOO_LOW/);
  });

  it("accepts a lone provider's self-consistent answer only at k = 1 (lies need redundancy to expose)", async () => {
    const { agents: liars, bootstrap: liarBoot } = await startAgents(1, () => ({ behaviour: "lie", devnet: true }));
    const liarClient = await connectRequestor(liarBoot);
    try {
      const qube = await liarClient.seal({
        command: ["sh", "-c", "echo truth > /output/result"],
        redundancy: { mode: "fixed", k: 1, quorum: 1 },
      });
      const result = await liarClient.requestor.run(qube, { outputDir: tmp("aq-out-") });
      // a lone liar is self-consistent: its root matches its archive; only redundancy exposes it
      expect(result.status).to.equal("verified");
      expect(result.outputs).to.have.length(1);
    } finally {
      await liarClient.close();
      for (const a of liars) await a.stop({ drainMs: 1000 });
    }
  });
});

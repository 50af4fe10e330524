// Run a verified qube on a devnet: three independent providers run it, a quorum must agree on its outputs,
// and the escrow pays them. Start the devnet first (`airqube devnet up`, or `npm run setup` in a checkout),
// then: node verified-qube.ts   (Node >= 22.18 runs TypeScript directly; or compile it with tsc)
import { Airqube, type AirqubeEvent, NoConsensusError } from "airqube";

const aq = new Airqube({ devnet: true });
await aq.connect();
const controller = new AbortController();
process.once("SIGINT", () => controller.abort(new Error("interrupted")));
try {
  const result = await aq.run(
    {
      image: "airqube/busybox:latest",
      command: ["sh", "-c", "tr a-z A-Z < /input/greeting.txt > /output/result.txt && wc -c < /input/greeting.txt"],
      inputs: { "greeting.txt": { data: "hello from an untrusted provider\n" } },
      outputs: ["result.txt"],
      redundancy: 3,
      limits: { timeoutMs: 30_000, memoryBytes: 64 * 1024 * 1024 },
    },
    {
      signal: controller.signal,
      onEvent: (event: AirqubeEvent) => {
        if (event.type === "resultReceived") process.stderr.write(`answer from ${event.provider.slice(-8)}\n`);
      },
    },
  );
  const text = await result.readText("result.txt");
  process.stdout.write(
    `${JSON.stringify({
      verified: result.verified,
      ok: result.ok,
      agreeing: result.evidence.agreeing.length,
      statements: result.evidence.statements.length,
      payments: result.evidence.payments.map((p) => p.status),
      outputsRoot: result.outputsRoot,
      result: text,
    })}\n`,
  );
  process.exitCode = result.ok ? 0 : 1;
} catch (error) {
  if (error instanceof NoConsensusError) process.stderr.write(`no consensus: ${error.report.reason}\n`);
  else process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
} finally {
  await aq.disconnect();
}

// Run a verified qube on providers rented from the Golem network. Needs a running yagna with a funded
// requestor (see golem-js's documentation): YAGNA_APPKEY set, and the image published for Golem's VM runtime
// (the `golem` section of the config names it). Redundancy and the quorum work as on the embedded network;
// payment goes through yagna, not the escrow.
//   YAGNA_APPKEY=... node golem.ts
import { Airqube } from "airqube";

const aq = new Airqube({ golem: true });
await aq.connect();
try {
  const result = await aq.run({
    image: "airqube/busybox:latest",
    command: ["sh", "-c", "echo 42 > /output/result"],
    redundancy: 2,
    limits: { timeoutMs: 120_000 },
  });
  process.stdout.write(`verified=${result.verified} result=${(await result.readText("result")).trim()}\n`);
} finally {
  await aq.disconnect();
}

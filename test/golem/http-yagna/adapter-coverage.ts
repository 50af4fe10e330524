/**
 * Which golem-js functions the HTTP tier runs: reads the V8 coverage a test run wrote (NODE_V8_COVERAGE) and
 * prints, for golem-js's yagna-facing classes, how many of their methods ran at least once, and which did not.
 *
 *   NODE_V8_COVERAGE=/tmp/cov npm run test:golem:http
 *   npx tsx test/golem/http-yagna/adapter-coverage.ts /tmp/cov
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const CLASSES = [
  "YagnaApi",
  "EventReader",
  "MarketApiAdapter",
  "ActivityApiAdapter",
  "PaymentApiAdapter",
  "InvoiceRepository",
  "DebitNoteRepository",
  "ActivityRepository",
  "AgreementRepository",
  "AgreementPaymentProcess",
  "ExeScriptExecutor",
  "WebSocketStorageProvider",
];

interface V8Function {
  functionName: string;
  ranges: { startOffset: number; endOffset: number; count: number }[];
}

async function main(dir: string): Promise<void> {
  const hits = new Map<string, { ran: boolean; name: string; start: number }>();
  let source = "";
  for (const name of await readdir(dir)) {
    if (!name.endsWith(".json")) continue;
    const data = JSON.parse(await readFile(join(dir, name), "utf8")) as {
      result: { url: string; functions: V8Function[] }[];
    };
    for (const script of data.result) {
      if (!/@golem-sdk\/golem-js\/dist\/shared-[^/]+\.mjs$/.test(script.url)) continue;
      source ||= await readFile(fileURLToPath(script.url), "utf8");
      for (const f of script.functions) {
        const range = f.ranges[0];
        if (!range || !f.functionName) continue;
        const key = `${range.startOffset}`;
        const seen = hits.get(key);
        hits.set(key, { name: f.functionName, start: range.startOffset, ran: (seen?.ran ?? false) || range.count > 0 });
      }
    }
  }
  if (!source) {
    process.stderr.write("no golem-js coverage found in that directory\n");
    process.exitCode = 1;
    return;
  }
  const report: Record<string, { ran: number; total: number; notRun: string[] }> = {};
  for (const cls of CLASSES) {
    const start = source.search(new RegExp(`\\nclass ${cls} (extends [A-Za-z$]+ )?\\{`));
    if (start < 0) continue;
    const end = source.indexOf("\n}\n", start);
    const methods = [...hits.values()].filter((h) => h.start > start && h.start < end);
    report[cls] = {
      ran: methods.filter((m) => m.ran).length,
      total: methods.length,
      notRun: methods.filter((m) => !m.ran).map((m) => m.name),
    };
  }
  const all = Object.values(report);
  process.stdout.write(
    `${JSON.stringify(
      { classes: report, ran: all.reduce((n, r) => n + r.ran, 0), total: all.reduce((n, r) => n + r.total, 0) },
      null,
      2,
    )}\n`,
  );
}

await main(process.argv[2] ?? "");

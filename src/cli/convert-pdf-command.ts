/**
 * `airqube convert-pdf untrusted.pdf safe.pdf`: renders an untrusted PDF to bitmaps in disposable qubes on
 * k providers, checks they agree bitwise, and rebuilds a PDF from the pixels locally (src/pdf/convert.ts).
 */
import { randomUUID } from "node:crypto";
import { join, resolve } from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import Docker from "dockerode";
import { shippableFromEngine } from "../images/ship.js";
import { loadOrCreateIdentity } from "../net/keys.js";
import { checkConvertPaths, convertPdf, PDF_IMAGE } from "../pdf/convert.js";
import { UserError } from "../qube/errors.js";
import { Libp2pMarket } from "../requestor/libp2p-market.js";
import { EscrowPayments } from "../requestor/payments.js";
import { Requestor } from "../requestor/requestor.js";
import { type DirLock, lockDataDir } from "../store/dir-lock.js";
import { convertProgress } from "./convert-pdf-progress.js";
import { shippedImageFrom, shippedImagesDir } from "./image-options.js";
import { interruptHandler, reportInterrupted } from "./interrupt.js";
import { cliLogger } from "./logger.js";
import { reportError } from "./output.js";
import { defaultRequestorDir } from "./paths.js";
import { addPaymentOptions, type PaymentFlags, paymentSettingsFrom } from "./payment-options.js";
import { describePayment } from "./payment-report.js";
import { useDevnetProfile } from "./profile-hook.js";
import { addNetworkOptions, type NetworkFlags, networkOptionsFrom } from "./run-command.js";
import { parseCount, parseDuration, parseSize } from "./units.js";

interface ConvertFlags extends PaymentFlags, NetworkFlags {
  allowPublicRpc?: boolean;
  maxPrice?: bigint;
  bootstrap?: string[];
  redundancy: number;
  tier: "container" | "microvm";
  dpi: number;
  maxPages: number;
  timeout: number;
  memory: number;
  image: string;
  imageArchive?: string;
  ship: boolean;
  dataDir: string;
  json?: boolean;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

function parseWei(value: string): bigint {
  if (!/^\d{1,78}$/.test(value.trim())) throw new InvalidArgumentError(`"${value}" is not an amount in wei`);
  return BigInt(value.trim());
}

export function registerConvertPdfCommand(program: Command): void {
  const command = program
    .command("convert-pdf")
    .hook("preAction", useDevnetProfile)
    .description(
      "make an untrusted PDF safe: render it to bitmaps in disposable qubes on k providers that must agree bitwise, then rebuild a PDF from the pixels here",
    )
    .argument("<input>", "the untrusted PDF")
    .argument("<output>", "the safe PDF to write (written only when complete)")
    .option("--bootstrap <multiaddr>", "bootstrap peer (repeatable; default $AIRQUBE_BOOTSTRAP)", collect)
    .addOption(new Option("--redundancy <k>", "independent providers that must agree").argParser(parseCount).default(3))
    .addOption(new Option("--tier <tier>", "isolation tier").choices(["container", "microvm"]).default("container"))
    .addOption(new Option("--dpi <n>", "rendering resolution").argParser(parseCount).default(100))
    .addOption(new Option("--max-pages <n>", "refuse a longer document").argParser(parseCount).default(200))
    .addOption(
      new Option("--timeout <duration>", "wall-clock limit of the rendering")
        .argParser(parseDuration)
        .default(120_000, "120s"),
    )
    .addOption(
      new Option("--memory <size>", "memory limit of the rendering (it holds the rendered pages)")
        .argParser(parseSize)
        .default(512 * 1024 * 1024, "512m"),
    )
    .option("--image <ref>", "the renderer image (built by npm run images:debian)", PDF_IMAGE)
    .option("--image-archive <file>", "ship this archive of the renderer image instead of the local one")
    .option("--no-ship", "do not ship the image: only providers that have it can convert")
    .option("--data-dir <dir>", "requestor identity and journal", defaultRequestorDir())
    .addOption(
      new Option("--max-price <wei>", "refuse providers asking more than this per qube, wei").argParser(parseWei),
    )
    .option("--json", "JSON lines: one per progress event, then the result")
    .addHelpText(
      "after",
      "\nPaid like `airqube run`: with a running `airqube devnet up` nothing is needed (its profile gives the\n" +
        "  bootstrap, the chain and the key); else --rpc-url, --escrow and --payment-key-file (or AIRQUBE_RPC_URL,\n" +
        "  AIRQUBE_ESCROW, AIRQUBE_PAYMENT_KEY_FILE). The rendering's budget is locked in the escrow before the qube\n" +
        "  is sent and settled once the providers agree on the pixels.",
    )
    .action(async (input: string, output: string, flags: ConvertFlags) => {
      process.exitCode = await convert(resolve(input), resolve(output), flags);
    });
  addPaymentOptions(command);
  addNetworkOptions(command);
}

async function convert(input: string, output: string, flags: ConvertFlags): Promise<number> {
  const controller = new AbortController();
  const onSignal = interruptHandler(controller);
  process.once("SIGINT", onSignal);
  let market: Libp2pMarket | undefined;
  let requestor: Requestor | undefined;
  let payments: EscrowPayments | undefined;
  let lock: DirLock | undefined;
  const json = Boolean(flags.json);
  const names = new Map<string | undefined, string>();
  const view = convertProgress({
    json,
    tty: Boolean(process.stderr.isTTY),
    ...(process.stderr.columns ? { columns: process.stderr.columns } : {}),
    out: process.stdout,
    err: process.stderr,
    names,
  });
  try {
    const logger = cliLogger("convert-pdf");
    const bootstrap =
      flags.bootstrap ?? (process.env.AIRQUBE_BOOTSTRAP ? process.env.AIRQUBE_BOOTSTRAP.split(",") : []);
    if (bootstrap.length === 0)
      throw new UserError("BOOTSTRAP_MISSING", "No bootstrap peer", {
        details: "pass --bootstrap MULTIADDR (printed by `airqube devnet up`) or set AIRQUBE_BOOTSTRAP",
      });
    // a missing input, one that is not a PDF, or an output that cannot be written: said before anything is paid
    await checkConvertPaths(input, output);
    // paid like `airqube run`: the chain must answer before anything else happens
    const settings = await paymentSettingsFrom(
      { ...flags, allowPublic: Boolean(flags.allowPublicRpc || flags.allowPublic) },
      process.env,
    );
    // one process per data directory, refused at once: before the chain, the image and the network (the
    // Requestor takes this process's lock again, re-entrantly)
    lock = lockDataDir(flags.dataDir, "airqube convert-pdf");
    if (settings)
      payments = await EscrowPayments.connect(
        { rpcUrl: settings.rpcUrl, escrow: settings.escrow, privateKey: settings.privateKey },
        { signal: controller.signal },
      );
    const identity = loadOrCreateIdentity(flags.dataDir);
    const image = flags.imageArchive
      ? await shippedImageFrom({ image: flags.image, imageArchive: flags.imageArchive }, flags.dataDir)
      : flags.ship
        ? await shippableFromEngine(new Docker(), flags.image, shippedImagesDir(flags.dataDir), {
            signal: controller.signal,
          })
        : undefined;
    market = await Libp2pMarket.connect({ identity, bootstrap, ...networkOptionsFrom(flags) });
    requestor = new Requestor({ market, dataDir: flags.dataDir, ...(payments ? { payments } : {}) });
    if (payments) {
      names.set(payments.account.toLowerCase(), "requestor (refund)");
      // settle or reclaim what an earlier run left open before locking anything new
      const recovered = await requestor.recoverPayments({ signal: controller.signal });
      if (json)
        process.stdout.write(
          `${JSON.stringify({ event: "paymentsRecovered", account: payments.account, escrow: payments.escrow, payments: recovered })}\n`,
        );
      else {
        process.stderr.write(`airqube: paying from ${payments.account} through escrow ${payments.escrow}\n`);
        if (recovered.length > 0)
          process.stderr.write(`recovered ${recovered.length} escrow job(s) an earlier run left open\n`);
        for (const report of recovered) writeLines(describePayment(report, names));
      }
    }
    const maxPrice = flags.maxPrice;
    const started = Date.now();
    const report = await convertPdf(requestor, identity, input, output, {
      dpi: flags.dpi,
      maxPages: flags.maxPages,
      redundancy: flags.redundancy,
      tier: flags.tier,
      wallTimeMs: flags.timeout,
      memoryBytes: flags.memory,
      imageRef: flags.image,
      ...(image ? { image } : {}),
      ...(maxPrice !== undefined ? { filter: (c) => c.price <= maxPrice } : {}),
      workDir: join(flags.dataDir, "convert", randomUUID()),
      signal: controller.signal,
      onProgress: (event) => {
        if (event.type !== "heartbeat") logger.debug({ event }, "progress");
        view.onProgress(event);
      },
    });
    view.stop();
    const ms = Date.now() - started;
    if (json) process.stdout.write(`${JSON.stringify({ event: "result", output, ms, ...report })}\n`);
    else
      process.stdout.write(
        `SAFE: ${output} (${report.pages} pages, ${report.bytes} bytes) rebuilt from pixels ${report.agreeing.length} providers agreed on, in ${(ms / 1000).toFixed(1)} s\n` +
          (report.dissenting.length ? `  outvoted: ${report.dissenting.join(", ")}\n` : ""),
      );
    return 0;
  } catch (error) {
    view.stop();
    if (controller.signal.aborted) return reportInterrupted(json);
    return reportError(error, json);
  } finally {
    process.off("SIGINT", onSignal);
    requestor?.close();
    payments?.dispose();
    try {
      await market?.close();
    } finally {
      lock?.release();
    }
  }
}

/** Payment lines go to stderr with the progress: stdout keeps the one SAFE line. */
function writeLines(lines: string[]): void {
  for (const line of lines) process.stderr.write(`${line}\n`);
}

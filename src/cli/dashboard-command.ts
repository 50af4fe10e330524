/**
 * `airqube dashboard`: a read-only web page on 127.0.0.1 showing the provider's ledger, the requestor's
 * journal and what is known of the network (src/dashboard/). The URL it prints carries the access token in its
 * fragment: it is printed once to stdout and never logged.
 */
import { spawn } from "node:child_process";
import type { Command } from "commander";
import { startDashboard } from "../dashboard/server.js";
import { UserError } from "../qube/errors.js";
import { cliLogger } from "./logger.js";
import { reportError } from "./output.js";
import { airqubeHome, defaultProbeCache, defaultProviderDir, defaultRequestorDir } from "./paths.js";

interface DashboardFlags {
  dataDir: string;
  providerDir: string;
  probeCache: string;
  port: string;
  open?: boolean;
  json?: boolean;
}

export function registerDashboardCommand(program: Command): void {
  program
    .command("dashboard")
    .description("serve a read-only dashboard of this machine's provider and requestor on 127.0.0.1")
    .option("--data-dir <dir>", "requestor data directory (journal, reputation)", defaultRequestorDir())
    .option("--provider-dir <dir>", "provider data directory (ledger, seats, status)", defaultProviderDir())
    .option("--probe-cache <dir>", "escape-suite report cache", defaultProbeCache())
    .option("--port <n>", "port on 127.0.0.1 (0: any free port)", "0")
    .option("--open", "open the page in the default browser (xdg-open)")
    .option("--json", "print { url } as one JSON line once listening")
    .addHelpText(
      "after",
      "\nThe printed URL carries a fresh access token (in its #fragment): anyone with it can read the page while\n" +
        "the command runs. The data directories are only read, never locked, so a running provider or requestor\n" +
        "is not disturbed. Stop with Ctrl-C.",
    )
    .action(async (flags: DashboardFlags) => {
      process.exitCode = await dashboard(flags);
    });
}

async function dashboard(flags: DashboardFlags): Promise<number> {
  const logger = cliLogger("dashboard");
  try {
    if (!/^\d{1,5}$/.test(flags.port) || Number(flags.port) > 65535)
      throw new UserError("USAGE", "The port must be a number from 0 to 65535", { details: `--port ${flags.port}` });
    const server = await startDashboard({
      requestorDir: flags.dataDir,
      providerDir: flags.providerDir,
      probeCache: flags.probeCache,
      home: airqubeHome(),
      port: Number(flags.port),
      logger,
    });
    // the URL (with its token) goes to stdout once; the log says where, never the token
    logger.info({ port: server.port }, "dashboard listening on 127.0.0.1");
    if (flags.json) process.stdout.write(`${JSON.stringify({ url: server.url })}\n`);
    else process.stdout.write(`dashboard: ${server.url}\n  read-only; press Ctrl-C to stop\n`);
    if (flags.open) openBrowser(server.url, logger);
    const signal = await new Promise<string>((resolve) => {
      process.once("SIGINT", () => resolve("SIGINT"));
      process.once("SIGTERM", () => resolve("SIGTERM"));
    });
    logger.info({ signal }, "stopping");
    await server.close();
    return 0;
  } catch (error) {
    return reportError(error, Boolean(flags.json));
  }
}

function openBrowser(url: string, logger: ReturnType<typeof cliLogger>): void {
  const child = spawn("xdg-open", [url], { stdio: "ignore", detached: true });
  child.on("error", () => logger.warn("could not start xdg-open: open the printed URL yourself"));
  child.unref();
}

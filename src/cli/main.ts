#!/usr/bin/env node
/**
 * The `airqube` command. Each sub-command lives in its own module; only the module of the command being run
 * is loaded (all of them for `--help`), so that a command starts without loading libp2p, ethers and Docker
 * clients it does not need.
 */
import { Command } from "commander";
import { packageVersion } from "../package-root.js";

const pkg = { version: packageVersion() };

const COMMANDS: Record<string, () => Promise<(program: Command) => void>> = {
  sandbox: async () => (await import("./sandbox-command.js")).registerSandboxCommand,
  probe: async () => (await import("./probe-command.js")).registerProbeCommand,
  provider: async () => (await import("./provider-command.js")).registerProviderCommand,
  run: async () => (await import("./run-command.js")).registerRunCommands,
  offers: async () => (await import("./run-command.js")).registerRunCommands,
  journal: async () => (await import("./run-command.js")).registerRunCommands,
  devnet: async () => (await import("./devnet-command.js")).registerDevnetCommands,
  demo: async () => (await import("./devnet-command.js")).registerDevnetCommands,
  "convert-pdf": async () => (await import("./convert-pdf-command.js")).registerConvertPdfCommand,
  bootnode: async () => (await import("./bootnode-command.js")).registerBootnodeCommand,
  dashboard: async () => (await import("./dashboard-command.js")).registerDashboardCommand,
  "golem-runtime": async () => (await import("./golem-runtime-command.js")).registerGolemRuntimeCommand,
};

export async function buildProgram(argv: string[]): Promise<Command> {
  const program = new Command("airqube")
    .description(
      "Offload disposable workloads (qubes) to untrusted providers and trust only results a quorum agrees on.",
    )
    .version(pkg.version)
    .showHelpAfterError()
    .enablePositionalOptions()
    .exitOverride((error) => {
      // usage errors exit 2; --help and --version exit 0
      process.exit(error.exitCode === 0 ? 0 : 2);
    });
  const wanted = argv[2];
  const loaders = wanted && COMMANDS[wanted] ? [COMMANDS[wanted]] : Object.values(COMMANDS);
  const registered = new Set<(program: Command) => void>();
  for (const load of loaders) {
    const register = await load();
    if (registered.has(register)) continue;
    registered.add(register);
    register(program);
  }
  return program;
}

// A closed pipe (`airqube probe | head`) ends the command quietly instead of crashing it.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw error;
  });
}

await (await buildProgram(process.argv)).parseAsync(process.argv);

#!/usr/bin/env node
/** The `airqube` command. Each sub-command lives in its own module and registers itself here. */
import { readFileSync } from "node:fs";
import { Command } from "commander";
import { registerDevnetCommands } from "./devnet-command.js";
import { registerProviderCommand } from "./provider-command.js";
import { registerRunCommands } from "./run-command.js";
import { registerSandboxCommand } from "./sandbox-command.js";

const pkg = JSON.parse(
  readFileSync(new URL("../../package.json", import.meta.url).pathname.replace("/dist/", "/"), "utf8"),
) as { version: string };

export function buildProgram(): Command {
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
  registerSandboxCommand(program);
  registerProviderCommand(program);
  registerRunCommands(program);
  registerDevnetCommands(program);
  return program;
}

await buildProgram().parseAsync(process.argv);

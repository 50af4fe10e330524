#!/usr/bin/env node
/**
 * The `ya-runtime-airqube` command: the Golem ExeUnit runtime that runs each process in a fresh Airqube sandbox.
 * exe-unit calls it as `ya-runtime-airqube [--workdir W] [--task-package P] [--cpu-cores N] [--mem-gib X]
 * [--storage-gib X] <offer-template|test|deploy|start|run>`.
 */
import { Command } from "commander";
import { pino } from "pino";
import { logLevel } from "../../cli/logger.js";
import {
  type CommandContext,
  deployCommand,
  offerTemplateCommand,
  runCommand,
  startCommand,
  testCommand,
} from "./commands.js";
import { RUNTIME_VERSION, type RuntimeFlags } from "./state.js";

/** Waits until everything written to stdout has left the process (exe-unit reads it to the end). */
function flushStdout(): Promise<void> {
  return new Promise((resolveFlush) => process.stdout.write("", () => resolveFlush()));
}

/**
 * Builds the program; each action stores its exit status in `exit`.
 *
 * @example
 * await buildRuntimeProgram().parseAsync(process.argv);
 */
export function buildRuntimeProgram(): Command {
  const program = new Command("ya-runtime-airqube")
    .description("Golem ExeUnit runtime: each process in a fresh, vetted Airqube sandbox")
    .version(RUNTIME_VERSION)
    .option("--workdir <dir>", "the activity's work directory (deploy, start, run)")
    .option("--task-package <path>", "the task package: a `docker save` archive (deploy)")
    .option("--cpu-cores <n>", "CPU cores per process")
    .option("--mem-gib <n>", "memory per process, GiB")
    .option("--storage-gib <n>", "storage: the output cap per process, GiB")
    .exitOverride((error) => {
      process.exit(error.exitCode === 0 ? 0 : 2);
    });
  const controller = new AbortController();
  const context = (): CommandContext => {
    const level = logLevel();
    return {
      flags: program.opts<RuntimeFlags>(),
      env: process.env,
      logger: pino({ name: "ya-runtime-airqube", level }, pino.destination(2)),
      stdout: process.stdout,
      stderr: process.stderr,
    };
  };
  const finish = async (status: number) => {
    await flushStdout();
    process.exit(status);
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.once(signal, () => controller.abort());
  program
    .command("offer-template")
    .description("print the offer template JSON")
    .action(async () => finish(await offerTemplateCommand(context())));
  program
    .command("test")
    .description("run the escape suite in this runtime's sandbox; fails unless 0 fail and 0 inconclusive")
    .action(async () => finish(await testCommand(context())));
  program
    .command("deploy")
    .description("check and load the task package, print the DeployResult JSON")
    .action(async () => finish(await deployCommand(context())));
  program
    .command("start")
    .description("service mode: ya-runtime-api over stdin/stdout")
    .action(async () => finish(await startCommand({ ...context(), stdin: process.stdin, signal: controller.signal })));
  program
    .command("run")
    .description("command mode: run one process")
    .requiredOption("--entrypoint <bin>", "the program to run (an absolute path in the image)")
    .argument("[args...]", "its arguments")
    .action(async (args: string[], options: { entrypoint: string }) =>
      finish(await runCommand({ ...context(), entrypoint: options.entrypoint, args, signal: controller.signal })),
    );
  return program;
}

await buildRuntimeProgram().parseAsync(process.argv);

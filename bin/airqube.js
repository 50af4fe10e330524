#!/usr/bin/env node
// Entry point of the `airqube` command: runs the TypeScript sources through tsx, so what runs is always
// what is checked out (no stale build can shadow it).
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { register } from "tsx/esm/api";

register();
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
await import(pathToFileURL(join(root, "src", "cli", "main.ts")).href);

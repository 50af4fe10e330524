#!/usr/bin/env node
// Entry point of the `airqube` command: the CLI (src/cli/main.ts, compiled to dist/cli/main.js).
import { launch } from "./launch.js";

await launch("airqube", "cli/main");

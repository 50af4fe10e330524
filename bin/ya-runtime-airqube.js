#!/usr/bin/env node
// Entry point of the `ya-runtime-airqube` command, the Golem ExeUnit runtime (src/golem/runtime/main.ts,
// compiled to dist/golem/runtime/main.js).
import { launch } from "./launch.js";

await launch("ya-runtime-airqube", "golem/runtime/main");

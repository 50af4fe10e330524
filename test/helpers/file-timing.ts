/**
 * Mocha root hooks (loaded by `npm test` with `--require`): the wall time of each test file, appended as one
 * line `<ms> <file>` to the file named by AIRQUBE_TEST_TIMINGS, so that `npm test` can print the slowest files
 * of a run (and the order of its slow list can follow measurements). In parallel mode each file runs in a
 * worker with its own root suite, so the root hooks run once per file. Does nothing without the variable.
 */
import { appendFileSync } from "node:fs";
import { relative } from "node:path";
import type { Context } from "mocha";

let started = 0;

export const mochaHooks = {
  beforeAll() {
    started = Date.now();
  },
  afterAll(this: Context) {
    const out = process.env.AIRQUBE_TEST_TIMINGS;
    const file = this.test?.parent?.suites[0]?.file;
    if (!out || !file) return;
    appendFileSync(out, `${Date.now() - started} ${relative(process.cwd(), file)}\n`);
  },
};

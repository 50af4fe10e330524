/** Debian's chromium, headless, for the dashboard's browser tests (puppeteer-core; scripts/setup.sh installs it). */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import puppeteer, { type Browser } from "puppeteer-core";

export const CHROMIUM = process.env.AIRQUBE_CHROMIUM ?? "/usr/bin/chromium";
/** Where screenshots go, for people to look at (git-ignored). */
export const ARTIFACTS = join(process.cwd(), "test-artifacts");

/** Launches chromium headless; only loopback resolves, so no request could leave the machine. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    throw new Error(`chromium is missing (${CHROMIUM}): run scripts/setup.sh, or set AIRQUBE_CHROMIUM`);
  mkdirSync(ARTIFACTS, { recursive: true });
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      // root in CI: chromium's own sandbox needs user namespaces it cannot have here (the test browser only)
      "--no-sandbox",
      // nothing but loopback resolves, so a request to any other host could not even leave the machine
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
      "--disable-gpu",
      "--disable-dev-shm-usage",
    ],
  });
}

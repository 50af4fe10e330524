/**
 * Commander `preAction` hook that fills a command's missing options from the profile of a running
 * `airqube devnet up` (see src/devnet/profile.ts): flags first, then the environment, then the profile.
 */
import type { Command } from "commander";
import { devnetProfilePath, profileFill, readDevnetProfile } from "../devnet/profile.js";
import { reportError } from "./output.js";
import { airqubeHome } from "./paths.js";

/**
 * Install with `.hook("preAction", useDevnetProfile)` on `run`, `offers`, `probe` and `journal`. Says on
 * stderr which settings it took from the profile; an invalid profile ends the command with its error (125).
 */
export function useDevnetProfile(_command: Command, action: Command): void {
  // the local escape suite needs no network
  if (action.name() === "probe" && !action.opts().provider) return;
  const home = airqubeHome();
  const json = Boolean(action.opts().json);
  let profile: ReturnType<typeof readDevnetProfile>;
  try {
    profile = readDevnetProfile(home);
  } catch (error) {
    process.exit(reportError(error, json));
  }
  if (!profile) return;
  const has = new Set(action.options.map((option) => option.attributeName()));
  const given = new Set(
    [...has].filter((key) => {
      const source = action.getOptionValueSource(key);
      return source !== undefined && source !== "default";
    }),
  );
  const fill = profileFill(profile, { given, has, env: process.env });
  const keys = Object.keys(fill) as (keyof typeof fill)[];
  for (const key of keys) action.setOptionValueWithSource(key, fill[key], "config");
  if (keys.length > 0 && !json)
    process.stderr.write(
      `airqube: using the running devnet's profile ${devnetProfilePath(home)} (${keys.join(", ")})\n`,
    );
}

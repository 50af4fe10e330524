/**
 * `npm run sim:verify -- --providers 100 --saboteurs 0.2 --qubes 100000 --policy fixed:2|fixed:3|quorum:3:2|adaptive
 * [--collude] [--error-rate S] [--exclude N] [--seed N] --json`: the verification simulator (src/requestor/simulate.ts).
 * Prints { policy, saboteurFraction, qubes, wrongAccepted, errorRate, costFactor, ... } and, for fixed:m, the
 * analytic error of m-first majority voting for comparison.
 */
import { majorityVotingError, simulate } from "../src/requestor/simulate.js";

const arg = (name: string, fallback: string) => {
  const at = process.argv.indexOf(name);
  return at >= 0 && process.argv[at + 1] ? process.argv[at + 1]! : fallback;
};
const policies = arg("--policy", "fixed:2").split("|");
for (const policy of policies) {
  const options = {
    providers: Number(arg("--providers", "100")),
    saboteurs: Number(arg("--saboteurs", "0.2")),
    qubes: Number(arg("--qubes", "100000")),
    policy,
    collude: process.argv.includes("--collude"),
    saboteurErrorRate: Number(arg("--error-rate", "1")),
    ...(process.argv.includes("--exclude") ? { excludeQubes: Number(arg("--exclude", "1000")) } : {}),
    seed: Number(arg("--seed", "1")),
  };
  const result = simulate(options);
  const analytic = policy.startsWith("fixed:")
    ? {
        analyticErrorRate: majorityVotingError(
          Number(policy.split(":")[1]),
          options.saboteurs,
          options.saboteurErrorRate,
        ),
        analyticCostFactor: Number(policy.split(":")[1]) / (1 - options.saboteurs),
      }
    : {};
  console.log(JSON.stringify({ ...result, ...analytic }));
}

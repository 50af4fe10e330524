/**
 * The escape regression suite: run it (`runProbeSuite`), weaken the sandbox on purpose to prove each probe can
 * fail (`listWeakenings`), and render or hash the report (`toJUnit`, `reportHash`, `exitStatus`).
 *
 * @packageDocumentation
 */
export { PROBES, type ProbeCategory, type ProbeInfo, type ProbeSeverity, probeInfo } from "./catalog.js";
export { type ParsedOutput, type ProbeLine, parseProbeOutput, type Verdict } from "./protocol.js";
export {
  exitStatus,
  type ProbeReport,
  type ProbeResult,
  type ProbeSummary,
  reportHash,
  summarize,
  TIMING_FIELDS,
  toJUnit,
} from "./report.js";
export {
  DEADLINE_MS,
  PROBE_IMAGE,
  type ProbeProgress,
  type ProbeSuiteOptions,
  runProbeSuite,
  type SandboxHooks,
  SUITE,
  SUITE_LIMITS,
  SUITE_VERSION,
} from "./runner.js";
export { composeWeakenings, listWeakenings, MUTATION_WEAKENINGS, type Weakening, weakening } from "./weakenings.js";

import { expect } from "chai";
import fc from "fast-check";
import type { RedundancyPolicy } from "../../src/qube/index.js";
import {
  distinctFrom,
  type EngineCandidate,
  type EngineCommand,
  type EngineEvent,
  type EngineOutcome,
  RoundEngine,
} from "../../src/requestor/engine.js";
import { fixedMaxReplicas } from "../../src/requestor/policy.js";
import { seededRandom } from "../../src/requestor/simulate.js";

/** How a simulated provider behaves at each step. */
type Behaviour =
  | "honest"
  | "liar"
  | "colluder"
  | "crash-dispatch"
  | "crash-reveal"
  | "lost-reveal"
  | "refuse"
  | "lock-fail"
  /** Admits the qube, then will not sign its seat of the escrow batch (escrow v2's Accept). */
  | "accept-refuse";

interface SimProvider extends EngineCandidate {
  behaviour: Behaviour;
}

interface Trace {
  outcome: EngineOutcome | undefined;
  steps: number;
  dispatched: string[];
  admitted: Set<string>;
  locked: Set<string>;
  committed: Set<string>;
  revealAsked: string[];
  violations: string[];
  engine: RoundEngine;
  /** Every simulated provider by id. */
  all: ReadonlyMap<string, SimProvider>;
}

const failure = (code: string) => ({ code, message: code });

/**
 * Drives the engine against simulated providers, delivering pending answers in an order chosen by `seed`, and
 * records every protocol violation the engine commits (dispatching an unlocked seat, revealing an uncommitted
 * one, ...).
 */
function drive(
  policy: RedundancyPolicy,
  providers: SimProvider[],
  options: {
    paid: boolean;
    seed: number;
    extra?: SimProvider[];
    allowFewer?: boolean;
    /** Consecutive valid results of trusted providers (default: nobody has a record). */
    trusted?: ReadonlyMap<string, number>;
  },
): Trace {
  const random = seededRandom(options.seed);
  const all = new Map([...providers, ...(options.extra ?? [])].map((p) => [p.id, p]));
  const engine = new RoundEngine({
    policy,
    paid: options.paid,
    allowFewer: options.allowFewer ?? false,
    random,
    reputation: (id) => {
      const count = options.trusted?.get(id);
      return count === undefined ? undefined : { consecutiveValid: count, wrong: 0 };
    },
  });
  const trace: Trace = {
    outcome: undefined,
    steps: 0,
    dispatched: [],
    admitted: new Set(),
    locked: new Set(),
    committed: new Set(),
    revealAsked: [],
    all,
    violations: [],
    engine,
  };
  const pending: EngineEvent[] = [];
  let extraGiven = false;
  const run = (commands: EngineCommand[]) => {
    for (const command of commands) {
      if (trace.outcome) trace.violations.push(`command after finish: ${command.type}`);
      switch (command.type) {
        case "findMore":
          pending.push({ type: "found", candidates: extraGiven ? [] : (options.extra ?? []) });
          extraGiven = true;
          break;
        case "admit":
          for (const id of command.providers) {
            const p = all.get(id)!;
            pending.push(
              p.behaviour === "refuse"
                ? { type: "refused", provider: id, failure: failure("REFUSED") }
                : { type: "admitted", provider: id },
            );
          }
          break;
        case "lock": {
          for (const id of command.providers)
            if (!trace.admitted.has(id)) trace.violations.push(`lock before admission: ${id}`);
          const fails = command.providers.some((id) => all.get(id)!.behaviour === "lock-fail");
          const refusing = command.providers.filter((id) => all.get(id)!.behaviour === "accept-refuse");
          pending.push(
            refusing.length > 0
              ? {
                  type: "seatsRefused",
                  providers: command.providers,
                  refused: refusing.map((provider) => ({ provider, failure: failure("ESCROW_ACCEPT_REFUSED") })),
                }
              : fails
                ? { type: "lockFailed", providers: command.providers, failure: failure("LOCK"), chainDown: false }
                : { type: "locked", providers: command.providers },
          );
          break;
        }
        case "dispatch": {
          const p = all.get(command.provider)!;
          if (options.paid && !trace.locked.has(p.id)) trace.violations.push(`dispatch before lock: ${p.id}`);
          if (trace.dispatched.includes(p.id)) trace.violations.push(`dispatched twice: ${p.id}`);
          trace.dispatched.push(p.id);
          pending.push(
            p.behaviour === "crash-dispatch"
              ? { type: "failed", provider: p.id, failure: failure("CRASHED") }
              : { type: "committed", provider: p.id },
          );
          break;
        }
        case "reveal":
          for (const id of command.providers) {
            if (!trace.committed.has(id)) trace.violations.push(`reveal asked of an uncommitted provider: ${id}`);
            trace.revealAsked.push(id);
            const p = all.get(id)!;
            const vote = p.behaviour === "liar" ? `lie-${id}` : p.behaviour === "colluder" ? "collusion" : "right";
            pending.push(
              p.behaviour === "crash-reveal"
                ? { type: "revealFailed", provider: id, failure: failure("NO_REVEAL") }
                : p.behaviour === "lost-reveal"
                  ? { type: "revealFailed", provider: id, failure: failure("STREAM_CLOSED"), notReceived: true }
                  : { type: "revealed", provider: id, vote },
            );
          }
          break;
        case "finished":
          trace.outcome = command.outcome;
          break;
      }
    }
  };
  run(engine.start(providers));
  while (pending.length > 0 && trace.steps < 10_000) {
    trace.steps++;
    const [event] = pending.splice(Math.floor(random() * pending.length), 1);
    if (event!.type === "admitted") trace.admitted.add(event!.provider);
    if (event!.type === "locked") for (const id of event!.providers) trace.locked.add(id);
    if (event!.type === "committed") trace.committed.add(event!.provider);
    run(engine.handle(event!));
  }
  return trace;
}

/** An engine for a hand-driven test: a fixed policy, no reputation, seeded. */
function fixedEngine(k: number, quorum: number, options: { paid: boolean; allowFewer?: boolean }): RoundEngine {
  return new RoundEngine({
    policy: { mode: "fixed", k, quorum },
    paid: options.paid,
    allowFewer: options.allowFewer ?? false,
    random: seededRandom(1),
    reputation: () => undefined,
  });
}

const behaviours: Behaviour[] = [
  "honest",
  "honest",
  "honest",
  "liar",
  "colluder",
  "crash-dispatch",
  "crash-reveal",
  "lost-reveal",
  "refuse",
  "lock-fail",
  "accept-refuse",
];

const providerArb = (prefix: string) =>
  fc
    .array(
      fc.record({
        behaviour: fc.constantFrom(...behaviours),
        operator: fc.option(fc.constantFrom("op-a", "op-b", "op-c", "op-d"), { nil: undefined }),
        payout: fc.option(fc.constantFrom("0xa", "0xb", "0xc", "0xd", "0xe"), { nil: undefined }),
      }),
      { minLength: 0, maxLength: 9 },
    )
    .map((list) => list.map((p, i) => ({ ...p, id: `${prefix}${i}` }) as SimProvider));

const policyArb: fc.Arbitrary<RedundancyPolicy> = fc.oneof(
  fc
    .integer({ min: 1, max: 5 })
    .chain((k) => fc.integer({ min: 1, max: k }).map((quorum) => ({ mode: "fixed" as const, k, quorum }))),
  fc.record({
    mode: fc.constant("adaptive" as const),
    quorum: fc.integer({ min: 1, max: 3 }),
    maxReplicas: fc.integer({ min: 1, max: 6 }),
    trustAfter: fc.integer({ min: 1, max: 3 }),
    spotCheckPermille: fc.integer({ min: 0, max: 1000 }),
  }),
);

describe("requestor: round engine (pure)", () => {
  it("properties: terminates, a quorum behind every verified result, distinct operators, replica bound, protocol order", () => {
    fc.assert(
      fc.property(
        policyArb,
        providerArb("p"),
        providerArb("x"),
        fc.boolean(),
        fc.boolean(),
        fc.integer(),
        fc.array(fc.integer({ min: 0, max: 12 }), { maxLength: 9 }),
        (policy, providers, extra, paid, allowFewer, seed, counts) => {
          // some providers have a record (adaptive policies trust them to run alone, except for spot checks)
          const trusted = new Map(counts.map((count, i) => [`p${i}`, count]));
          const trace = drive(policy, providers, { paid, seed, extra, allowFewer, trusted });
          expect(trace.violations).to.deep.equal([]);
          expect(trace.outcome, "the engine always finishes").to.not.equal(undefined);
          expect(trace.steps).to.be.below(10_000);
          // never two seats of one operator, payout address or id
          const seated = trace.engine.chosen;
          seated.forEach((c, i) => {
            expect(distinctFrom(seated.slice(0, i))(c), `seat ${c.id} shares an operator`).to.equal(true);
          });
          // the replica bound
          const bound =
            policy.mode === "fixed" ? fixedMaxReplicas(policy.k) : Math.max(policy.quorum, policy.maxReplicas) * 2 + 1;
          expect(seated.length).to.be.at.most(bound);
          const outcome = trace.outcome!;
          if (outcome.kind === "decided" && outcome.decision.status === "verified") {
            const { root, agreeing, dissenting } = outcome.decision;
            const quorum = trace.engine.replication.quorum;
            const votes = trace.engine.votes;
            expect(agreeing.length).to.be.at.least(quorum);
            for (const p of agreeing) expect(votes.find((v) => v.provider === p)?.root).to.equal(root);
            if (dissenting.length > 0) expect(agreeing.length).to.be.at.least(quorum + dissenting.length);
            // no other answer has as many votes
            const others = votes.filter((v) => v.root !== root);
            const counts = new Map<string, number>();
            for (const v of others) counts.set(String(v.root), (counts.get(String(v.root)) ?? 0) + 1);
            for (const count of counts.values()) expect(count).to.be.below(agreeing.length);
            // everyone who voted otherwise or revealed invalidly is marked; agreeing ones are not, nor those whose
            // reveal was lost in transport (no proof against them)
            const lost = (v: { provider: string }) => trace.all.get(v.provider)?.behaviour === "lost-reveal";
            expect(outcome.marked.map((m) => m.provider).sort()).to.deep.equal(
              others
                .filter((v) => !lost(v))
                .map((v) => v.provider)
                .sort(),
            );
          }
          if (policy.mode === "fixed" && outcome.kind === "failed" && outcome.code === "NOT_ENOUGH_PROVIDERS") {
            expect(allowFewer).to.equal(false);
            expect(trace.dispatched).to.deep.equal([]);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("all honest and enough distinct providers: verified with the honest answer, k seats, nothing marked", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.boolean(), fc.integer(), (k, paid, seed) => {
        const providers = Array.from({ length: k + 2 }, (_, i) => ({ id: `h${i}`, behaviour: "honest" as const }));
        const trace = drive({ mode: "fixed", k, quorum: Math.ceil(k / 2) }, providers, { paid, seed });
        expect(trace.outcome).to.deep.include({ kind: "decided" });
        const outcome = trace.outcome as Extract<EngineOutcome, { kind: "decided" }>;
        expect(outcome.decision).to.deep.include({ status: "verified", root: "right" });
        expect(trace.dispatched).to.have.length(k);
        expect(outcome.marked).to.deep.equal([]);
      }),
      { numRuns: 300 },
    );
  });

  it("replaces a crashed provider, outvotes a liar with a tie-breaker and marks it", () => {
    const providers: SimProvider[] = [
      { id: "a", behaviour: "honest" },
      { id: "b", behaviour: "liar" },
      { id: "c", behaviour: "crash-dispatch" },
      { id: "d", behaviour: "honest" },
      { id: "e", behaviour: "honest" },
    ];
    const trace = drive({ mode: "fixed", k: 3, quorum: 2 }, providers, { paid: false, seed: 7 });
    const outcome = trace.outcome as Extract<EngineOutcome, { kind: "decided" }>;
    expect(outcome.decision).to.deep.include({ status: "verified", root: "right" });
    expect(trace.dispatched).to.have.members(["a", "b", "c", "d", "e"]); // c failed and was replaced; e broke the tie
    expect(outcome.marked).to.deep.equal([{ provider: "b", reason: "dissent" }]);
    expect(outcome.valid).to.have.members(["a", "d", "e"]);
  });

  it("a commitment without a valid reveal counts against consensus and is marked", () => {
    const providers: SimProvider[] = [
      { id: "a", behaviour: "honest" },
      { id: "b", behaviour: "crash-reveal" },
      { id: "c", behaviour: "honest" },
      { id: "d", behaviour: "honest" },
    ];
    const trace = drive({ mode: "fixed", k: 3, quorum: 2 }, providers, { paid: true, seed: 3 });
    const outcome = trace.outcome as Extract<EngineOutcome, { kind: "decided" }>;
    expect(outcome.decision).to.deep.include({ status: "verified", root: "right" });
    expect(outcome.marked).to.deep.equal([{ provider: "b", reason: "no-valid-reveal" }]);
  });

  it("a reveal lost in transport counts against consensus but is not marked (nothing proves the provider wrong)", () => {
    const providers: SimProvider[] = [
      { id: "a", behaviour: "honest" },
      { id: "b", behaviour: "lost-reveal" },
      { id: "c", behaviour: "honest" },
      { id: "d", behaviour: "honest" },
    ];
    const trace = drive({ mode: "fixed", k: 3, quorum: 2 }, providers, { paid: true, seed: 3 });
    const outcome = trace.outcome as Extract<EngineOutcome, { kind: "decided" }>;
    expect(outcome.decision).to.deep.include({ status: "verified", root: "right" });
    expect(outcome.valid).to.not.include("b");
    expect(outcome.marked).to.deep.equal([]);
  });

  it("paid: a refusal costs nothing, the first round locks its admitted seats in one job, a failed first lock ends the run", () => {
    const engine = fixedEngine(2, 2, { paid: true });
    const ids = ["a", "b", "c"].map((id) => ({ id }));
    expect(engine.start(ids)).to.deep.equal([{ type: "admit", providers: ["a", "b"] }]);
    expect(engine.handle({ type: "refused", provider: "a", failure: failure("IMAGE_UNAVAILABLE") })).to.deep.equal([
      { type: "admit", providers: ["c"] },
    ]);
    expect(engine.handle({ type: "admitted", provider: "b" })).to.deep.equal([]);
    expect(engine.handle({ type: "admitted", provider: "c" })).to.deep.equal([
      { type: "lock", providers: ["b", "c"], quorum: 2 },
    ]);
    const down = failure("CHAIN_UNREACHABLE");
    const [finished] = engine.handle({ type: "lockFailed", providers: ["b", "c"], failure: down, chainDown: true });
    expect(finished).to.deep.equal({
      type: "finished",
      outcome: { kind: "failed", code: "LOCK_FAILED", failure: down },
    });
  });

  it("paid, escrow v2: a seat that will not sign its Accept is replaced and the first lock made again with the others", () => {
    const engine = fixedEngine(2, 2, { paid: true });
    expect(engine.start(["a", "b", "c"].map((id) => ({ id })))).to.deep.equal([
      { type: "admit", providers: ["a", "b"] },
    ]);
    engine.handle({ type: "admitted", provider: "a" });
    expect(engine.handle({ type: "admitted", provider: "b" })).to.deep.equal([
      { type: "lock", providers: ["a", "b"], quorum: 2 },
    ]);
    const refused = failure("ESCROW_ACCEPT_REFUSED");
    // b would not sign: nothing was locked; c is asked in its place, a waits
    expect(
      engine.handle({ type: "seatsRefused", providers: ["a", "b"], refused: [{ provider: "b", failure: refused }] }),
    ).to.deep.equal([{ type: "admit", providers: ["c"] }]);
    expect(engine.handle({ type: "admitted", provider: "c" })).to.deep.equal([
      { type: "lock", providers: ["a", "c"], quorum: 2 },
    ]);
    expect(engine.handle({ type: "locked", providers: ["a", "c"] })).to.deep.equal([
      { type: "dispatch", provider: "a" },
      { type: "dispatch", provider: "c" },
    ]);
  });

  it("too few distinct providers is an error before anything is sent, unless allowFewer", () => {
    const same = [{ id: "a", operator: "op" }, { id: "b", operator: "op" }, { id: "c" }];
    const strict = fixedEngine(3, 2, { paid: false });
    expect(strict.start(same)).to.deep.equal([
      { type: "finished", outcome: { kind: "failed", code: "NOT_ENOUGH_PROVIDERS", available: 2, wanted: 3 } },
    ]);
    const lenient = fixedEngine(3, 2, { paid: false, allowFewer: true });
    expect(lenient.start(same)).to.deep.equal([
      { type: "fewerProviders", wanted: 3, available: 2 },
      { type: "dispatch", provider: "a" },
      { type: "dispatch", provider: "c" },
      { type: "findMore", wanted: 3 },
    ]);
  });
  describe("adaptive replication", () => {
    const adaptive = { mode: "adaptive" as const, quorum: 2, maxReplicas: 4, trustAfter: 3, spotCheckPermille: 1 };
    const others = (n: number): SimProvider[] =>
      Array.from({ length: n }, (_, i) => ({ id: `o${i}`, behaviour: "honest" as const }));
    const trustT = new Map([["t", 10]]);
    /** Seeds whose first draw skips the 1 in 1000 spot check: the trusted provider runs alone. */
    const solo = (seed: number) => seededRandom(seed)() >= 0.001;

    it("a trusted honest provider runs alone: one seat, verified", () => {
      for (const paid of [false, true]) {
        const trace = drive(adaptive, [{ id: "t", behaviour: "honest" }, ...others(3)], {
          paid,
          seed: 5,
          trusted: trustT,
        });
        expect(solo(5)).to.equal(true);
        expect(trace.violations).to.deep.equal([]);
        expect(trace.dispatched).to.deep.equal(["t"]);
        expect(trace.outcome).to.deep.include({ kind: "decided" });
        expect((trace.outcome as Extract<EngineOutcome, { kind: "decided" }>).decision).to.deep.include({
          status: "verified",
          root: "right",
        });
      }
    });

    it("an untrusted first provider, or a spot check, replicates to the quorum", () => {
      const untrusted = drive(adaptive, [{ id: "t", behaviour: "honest" }, ...others(3)], {
        paid: false,
        seed: 5,
        trusted: new Map([["t", 2]]),
      });
      expect(untrusted.dispatched).to.have.length(2);
      const checked = new RoundEngine({
        policy: { ...adaptive, spotCheckPermille: 1000 },
        paid: false,
        allowFewer: false,
        random: seededRandom(5),
        reputation: () => ({ consecutiveValid: 10, wrong: 0 }),
      });
      const commands = checked.start([{ id: "t" }, { id: "o0" }, { id: "o1" }]);
      expect(commands.filter((c) => c.type === "dispatch")).to.have.length(2);
      expect(checked.replication.solo).to.equal(false);
    });

    it("a trusted provider without a valid reveal: falls back to replication, verified by a quorum of others", () => {
      const trace = drive(adaptive, [{ id: "t", behaviour: "crash-reveal" }, ...others(3)], {
        paid: true,
        seed: 5,
        trusted: trustT,
      });
      expect(trace.violations).to.deep.equal([]);
      const outcome = trace.outcome as Extract<EngineOutcome, { kind: "decided" }>;
      expect(outcome.decision).to.deep.include({ status: "verified", root: "right" });
      // the missing reveal counts against consensus: the quorum plus one
      expect(outcome.valid).to.have.length(3);
      expect(outcome.marked).to.deep.equal([{ provider: "t", reason: "no-valid-reveal" }]);
    });

    for (const behaviour of ["crash-dispatch", "refuse"] as const) {
      it(`a trusted provider that ${behaviour === "refuse" ? "refuses the qube" : "fails before committing"}: falls back to replication, not NO_PROVIDER`, () => {
        for (const paid of behaviour === "refuse" ? [true] : [false, true]) {
          const trace = drive(adaptive, [{ id: "t", behaviour }, ...others(3)], { paid, seed: 5, trusted: trustT });
          expect(trace.violations).to.deep.equal([]);
          expect(trace.outcome, JSON.stringify(trace.outcome)).to.deep.include({ kind: "decided" });
          const outcome = trace.outcome as Extract<EngineOutcome, { kind: "decided" }>;
          expect(outcome.decision).to.deep.include({ status: "verified", root: "right" });
          expect(outcome.valid).to.have.length(2);
          expect(trace.engine.replication).to.deep.include({ solo: false, quorum: 2 });
        }
      });
    }
  });
});

/**
 * fromGolemError over every error class golem-js exports (found by enumerating its module, so a class a new
 * golem-js adds fails here until it is mapped), with their module codes: each becomes a typed Airqube error
 * with a stable code, the golem-js class and code in `details`, the original as `cause`.
 */
import * as golem from "@golem-sdk/golem-js";
import { ReputationSystem } from "@golem-sdk/golem-js/experimental";
import { expect } from "chai";
import { fromGolemError, GOLEM_ERROR_FAULTS } from "../../src/golem/errors.js";
import { InternalError, PeerError, PlatformError, TimeoutError, UserError } from "../../src/qube/errors.js";

/** Every Error subclass golem-js exports. */
type AnyClass = abstract new (...args: never[]) => unknown;

function exportedErrorClasses(): Array<[string, AnyClass]> {
  return (Object.entries(golem) as Array<[string, unknown]>).filter(
    (e): e is [string, AnyClass] =>
      typeof e[1] === "function" && (e[1] as { prototype?: unknown }).prototype instanceof Error,
  );
}

/** One instance of `name`, built as golem-js builds it (module errors take a code). */
function instanceOf(name: string): Error {
  const g = golem;
  switch (name) {
    case "GolemMarketError":
      return new g.GolemMarketError("no offer", g.MarketErrorCode.NoProposalAvailable);
    case "GolemWorkError":
      return new g.GolemWorkError("yagna said 500", g.WorkErrorCode.ActivityCreationFailed);
    case "GolemPaymentError":
      return new g.GolemPaymentError("cannot release", g.PaymentErrorCode.AllocationReleaseFailed);
    case "GolemNetworkError":
      return new g.GolemNetworkError("no address", g.NetworkErrorCode.NoAddressesAvailable);
    default: {
      const cls = (g as unknown as Record<string, new (message: string) => Error>)[name]!;
      return new cls(`a ${name}`);
    }
  }
}

const EXPECTED: Record<string, [AnyClass, string]> = {
  GolemAbortError: [TimeoutError, "STEP_ABORTED"],
  GolemTimeoutError: [TimeoutError, "STEP_TIMEOUT"],
  GolemConfigError: [UserError, "STEP"],
  GolemUserError: [UserError, "STEP"],
  GolemMarketError: [PeerError, "STEP"],
  GolemWorkError: [PeerError, "STEP"],
  GolemPaymentError: [PlatformError, "STEP"],
  GolemNetworkError: [PlatformError, "STEP"],
  GolemPlatformError: [PlatformError, "STEP"],
  GolemInternalError: [PlatformError, "STEP"],
};

describe("golem-js errors to Airqube errors", () => {
  it("maps every error class golem-js exports to a typed error with a stable code", () => {
    const classes = exportedErrorClasses();
    const concrete = classes.filter(([name]) => name !== "GolemError" && name !== "GolemModuleError");
    expect(concrete.map(([n]) => n).sort()).to.deep.equal(Object.keys(EXPECTED).sort());
    for (const [name, cls] of classes)
      expect(
        GOLEM_ERROR_FAULTS.some(([c]) => (c as unknown) === cls),
        `${name} in GOLEM_ERROR_FAULTS`,
      ).to.equal(true);
    for (const [name] of concrete) {
      const original = instanceOf(name);
      const mapped = fromGolemError(original, "STEP", "The step failed");
      const [airqubeClass, code] = EXPECTED[name]!;
      expect(mapped, name).to.be.instanceOf(airqubeClass);
      expect(mapped.code, name).to.equal(code);
      expect(mapped.cause, name).to.equal(original);
      expect(mapped.details, name).to.include(name).and.to.include(original.message);
    }
    const work = fromGolemError(instanceOf("GolemWorkError"), "GOLEM_DEPLOY_FAILED", "Could not deploy");
    expect(work.details).to.equal("GolemWorkError ActivityCreationFailed: yagna said 500");
  });

  it("maps golem-js's unexported GolemReputationError, plain errors, non-errors and the caller's abort", () => {
    let reputation: unknown;
    try {
      new ReputationSystem({ paymentNetwork: "holesky" }).usePreset("nope" as never);
    } catch (error) {
      reputation = error;
    }
    expect(reputation).to.be.instanceOf(golem.GolemModuleError);
    const mapped = fromGolemError(reputation, "REP", "Reputation failed");
    expect(mapped).to.be.instanceOf(PlatformError);
    expect(mapped.code).to.equal("REP");
    expect(fromGolemError(new TypeError("x is not a function"), "S", "m")).to.be.instanceOf(PlatformError);
    const domTimeout = new DOMException("timed out", "TimeoutError");
    expect(fromGolemError(domTimeout, "S", "m").code).to.equal("S_TIMEOUT");
    expect(fromGolemError("a string", "S", "m")).to.be.instanceOf(InternalError);
    const aborted = AbortSignal.abort();
    const byCaller = fromGolemError(instanceOf("GolemMarketError"), "S", "m", aborted);
    expect(byCaller).to.be.instanceOf(TimeoutError);
    expect(byCaller.code).to.equal("ABORTED");
    const already = new PeerError("KEEP", "kept");
    expect(fromGolemError(already, "S", "m")).to.equal(already);
  });
});

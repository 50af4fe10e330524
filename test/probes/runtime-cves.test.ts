/**
 * Row 42's data and judgement: dpkg's version order, upstream fixes per branch, Debian backports (only for the
 * upstream version they were made for), the versions the engine reports, and the verdicts per tier. The data's
 * backports are checked against this machine's own Debian changelogs when the packages are installed.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { expect } from "chai";
import { PROBES } from "../../src/probes/catalog.js";
import { sharedWritableMounts } from "../../src/probes/runner.js";
import {
  compareVersions,
  cveStatus,
  judgeRuntimeCves,
  RUNTIME_CVES,
  type RuntimeVersions,
  runtimeVersionsFrom,
} from "../../src/probes/runtime-cves.js";
import { composeWeakenings } from "../../src/probes/weakenings.js";

const cve = (id: string) => RUNTIME_CVES.find((c) => c.id === id)!;
/** What Debian 12's engine reports (docker version), as on the machines the suite runs on. */
const BOOKWORM = {
  Version: "20.10.24+dfsg1",
  Components: [
    { Name: "Engine", Version: "20.10.24+dfsg1", Details: { GitCommit: "5d6db84" } },
    { Name: "containerd", Version: "1.6.20~ds1", Details: { GitCommit: "1.6.20~ds1-1+deb12u3" } },
    { Name: "runc", Version: "1.1.5+ds1", Details: { GitCommit: "1.1.5+ds1-1+deb12u1" } },
  ],
};
const closed = { sharedWritableMount: false };

describe("row 42: runtime versions against escape CVEs (data)", () => {
  it("orders versions as dpkg does (~ before anything, numbers by value, revisions after upstream)", () => {
    expect(compareVersions("1.1.5+ds1-1+deb12u1", "1.1.12")).to.be.below(0);
    expect(compareVersions("1.1.5+ds1-1+deb12u1", "1.1.5+ds1-1")).to.be.above(0);
    expect(compareVersions("1.0.0~rc95", "1.0.0")).to.be.below(0);
    expect(compareVersions("1.0.0~rc10", "1.0.0~rc9")).to.be.above(0);
    expect(compareVersions("1:0.1", "9.9")).to.be.above(0);
    expect(compareVersions("1.2.8", "1.2.8")).to.equal(0);
    if (existsSync("/usr/bin/dpkg"))
      for (const [a, b] of [
        ["1.1.5+ds1-1+deb12u1", "1.1.12"],
        ["1.0.0~rc94+ds1-2", "1.0.0~rc95"],
        ["20.10.24+dfsg1-1+deb12u1+b6", "20.10.24+dfsg1-1+deb12u1"],
        ["1.4.0~rc3", "1.4.0"],
      ] as const) {
        const dpkgSaysLess = (() => {
          try {
            execFileSync("dpkg", ["--compare-versions", a, "lt", b]);
            return true;
          } catch {
            return false;
          }
        })();
        expect(compareVersions(a, b) < 0, `${a} < ${b} as dpkg says`).to.equal(dpkgSaysLess);
      }
  });

  it("counts a Debian backport only for its own upstream version (CVE-2024-21626 in runc 1.1.5+ds1-1+deb12u1)", () => {
    const c = cve("CVE-2024-21626");
    expect(cveStatus(c, { version: "1.1.5+ds1", debian: "1.1.5+ds1-1+deb12u1" })).to.equal("fixed-by-backport");
    expect(cveStatus(c, { version: "1.1.5+ds1", debian: "1.1.5+ds1-1" }), "before the security upload").to.equal(
      "vulnerable",
    );
    expect(cveStatus(c, { version: "1.1.5" }), "a static 1.1.5: upstream only").to.equal("vulnerable");
    expect(cveStatus(c, { version: "1.1.11" })).to.equal("vulnerable");
    expect(cveStatus(c, { version: "1.1.12" })).to.equal("fixed");
    expect(cveStatus(c, { version: "1.1.7+ds1", debian: "1.1.7+ds1-1" }), "another upstream: no backport").to.equal(
      "vulnerable",
    );
    expect(cveStatus(cve("CVE-2019-5736"), { version: "1.0.0~rc6" })).to.equal("vulnerable");
    expect(cveStatus(cve("CVE-2019-5736"), { version: "1.1.5+ds1" })).to.equal("fixed");
  });

  it("judges a fix per release branch (CVE-2025-31133: 1.2.8, 1.3.3, 1.4.0-rc.3)", () => {
    const c = cve("CVE-2025-31133");
    expect(cveStatus(c, { version: "1.2.7" })).to.equal("vulnerable");
    expect(cveStatus(c, { version: "1.2.8" })).to.equal("fixed");
    expect(cveStatus(c, { version: "1.3.2" })).to.equal("vulnerable");
    expect(cveStatus(c, { version: "1.3.3" })).to.equal("fixed");
    expect(cveStatus(c, { version: "1.1.15" }), "a branch with no fix").to.equal("vulnerable");
    expect(cveStatus(c, { version: "1.5.0" })).to.equal("fixed");
  });

  it("reads the versions the engine reports, Debian's package version from GitCommit", () => {
    const versions = runtimeVersionsFrom(BOOKWORM);
    expect(versions).to.deep.equal({
      engine: { version: "20.10.24+dfsg1" },
      containerd: { version: "1.6.20~ds1", debian: "1.6.20~ds1-1+deb12u3" },
      runc: { version: "1.1.5+ds1", debian: "1.1.5+ds1-1+deb12u1" },
    });
    expect(runtimeVersionsFrom({ Version: "fake" })).to.deep.equal({});
    expect(
      runtimeVersionsFrom({ Components: [{ Name: "runc", Version: "1.1.12", Details: { GitCommit: "51d5e94" } }] }),
    )
      .to.have.property("runc")
      .that.deep.equals({ version: "1.1.12" });
  });

  it("passes Debian 12's stack (CVE-2024-21626 by backport, the 2025 races need a shared writable mount)", () => {
    const { verdict, evidence } = judgeRuntimeCves(runtimeVersionsFrom(BOOKWORM), "container", closed);
    expect(verdict, evidence).to.equal("pass");
    expect(evidence).to.include("by Debian backport: CVE-2024-21626");
    expect(evidence).to.include(
      "CVE-2025-31133, CVE-2025-52565, CVE-2025-52881 unfixed in this version, not reachable",
    );
  });

  it("fails an unpatched runc, a stack without the backport, and the 2025 races once a writable host bind exists", () => {
    const old: RuntimeVersions = { ...runtimeVersionsFrom(BOOKWORM), runc: { version: "1.0.0~rc6" } };
    const oldVerdict = judgeRuntimeCves(old, "container", closed);
    expect(oldVerdict.verdict).to.equal("fail");
    expect(oldVerdict.evidence).to.include("has CVE-2019-5736");
    const unpatched: RuntimeVersions = {
      ...runtimeVersionsFrom(BOOKWORM),
      runc: { version: "1.1.5+ds1", debian: "1.1.5+ds1-1" },
    };
    expect(judgeRuntimeCves(unpatched, "container", closed).evidence).to.include("has CVE-2024-21626");
    const bound = sharedWritableMounts(composeWeakenings(["mount:docker-socket"]).weaken);
    expect(bound).to.deep.equal(["/var/run/docker.sock:/var/run/docker.sock"]);
    const open = judgeRuntimeCves(runtimeVersionsFrom(BOOKWORM), "container", {
      sharedWritableMount: true,
      sharedMounts: bound,
    });
    expect(open.verdict).to.equal("fail");
    expect(open.evidence).to.include("has CVE-2025-31133").and.include("docker.sock");
  });

  it("reads the sandbox's writable shared mounts from the hardening itself: none unweakened, read-only binds not", () => {
    expect(sharedWritableMounts()).to.deep.equal([]);
    expect(sharedWritableMounts(composeWeakenings(["mount:host-root-ro"]).weaken)).to.deep.equal([]);
    expect(sharedWritableMounts(composeWeakenings(["mount:host-cgroup"]).weaken)).to.deep.equal([
      "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    ]);
  });

  it("applies runc's CVEs to the container tier only, skips the micro-VM, is inconclusive without versions", () => {
    const old: RuntimeVersions = { ...runtimeVersionsFrom(BOOKWORM), runc: { version: "1.0.0~rc6" } };
    expect(judgeRuntimeCves(old, "gvisor", closed).verdict, "runsc replaces runc").to.equal("pass");
    const microvm = judgeRuntimeCves(old, "microvm", closed);
    expect(microvm.verdict).to.equal("skipped");
    expect(microvm.evidence).to.match(/tier/);
    const blind = judgeRuntimeCves({}, "container", closed);
    expect(blind.verdict).to.equal("inconclusive");
    expect(blind.evidence).to.include("did not report the version of runc, containerd, engine");
  });

  it("lists every CVE of the data in the catalog's row 42, and each Debian backport is in the installed changelog", () => {
    expect(PROBES[41]!.cves).to.deep.equal(RUNTIME_CVES.map((c) => c.id));
    const changelog = "/usr/share/doc/runc/changelog.Debian.gz";
    if (!existsSync(changelog)) return;
    const text = execFileSync("zcat", [changelog], { encoding: "utf8", maxBuffer: 16 * 1024 * 1024 });
    for (const c of RUNTIME_CVES.filter((x) => x.component === "runc"))
      for (const b of c.backports ?? []) {
        const entry = text.split(/\n(?=runc \()/).find((e) => e.startsWith(`runc (${b.version})`));
        expect(entry, `runc ${b.version} in ${changelog}`).to.be.a("string");
        expect(entry, `${c.id} named in runc ${b.version}'s entry`).to.include(c.id);
      }
  });
});

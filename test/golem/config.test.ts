/** loadGolemConfig: golem-js's environment names, the config file section, defaults, and the loopback rule. */
import { expect } from "chai";
import { isLoopbackHost, loadGolemConfig } from "../../src/golem/config.js";
import { AirqubeError } from "../../src/qube/errors.js";

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(AirqubeError);
    return (error as AirqubeError).code;
  }
  return "no error";
}

describe("golem config", () => {
  it("reads golem-js's environment names and fills defaults (testnet holesky)", () => {
    const config = loadGolemConfig({ YAGNA_APPKEY: "k" });
    expect(config.appKey).to.equal("k");
    expect(config.apiUrl).to.equal("http://127.0.0.1:7465");
    expect(config.paymentNetwork).to.equal("holesky");
    expect(config.subnet).to.equal("public");
    expect(config.runtime).to.deep.equal({ name: "vm" });
    expect(config.layout).to.deep.equal({ input: "/input", output: "/output" });
  });

  it("lets the environment override the file", () => {
    const config = loadGolemConfig(
      {
        YAGNA_APPKEY: "env",
        YAGNA_API_URL: "http://localhost:7466/",
        PAYMENT_NETWORK: "polygon",
        YAGNA_SUBNET: "norbert",
      },
      { appKey: "file", paymentNetwork: "holesky", subnet: "public", pricing: { maxStartPrice: 0.1 } },
    );
    expect(config).to.include({
      appKey: "env",
      apiUrl: "http://localhost:7466",
      paymentNetwork: "polygon",
      subnet: "norbert",
    });
    expect(config.pricing).to.deep.equal({ maxStartPrice: 0.1, maxCpuPerHourPrice: 1, maxEnvPerHourPrice: 0.5 });
  });

  it("requires an app key", () => {
    expect(codeOf(() => loadGolemConfig({}))).to.equal("YAGNA_APPKEY_MISSING");
  });

  it("refuses a non-loopback yagna unless allowRemote is set", () => {
    expect(codeOf(() => loadGolemConfig({ YAGNA_APPKEY: "k", YAGNA_API_URL: "http://10.0.0.5:7465" }))).to.equal(
      "YAGNA_URL_REMOTE",
    );
    expect(codeOf(() => loadGolemConfig({ YAGNA_APPKEY: "k", YAGNA_API_URL: "http://yagna.example:7465" }))).to.equal(
      "YAGNA_URL_REMOTE",
    );
    const config = loadGolemConfig({ YAGNA_APPKEY: "k", YAGNA_API_URL: "http://10.0.0.5:7465" }, { allowRemote: true });
    expect(config.apiUrl).to.equal("http://10.0.0.5:7465");
    expect(isLoopbackHost("[::1]")).to.equal(true);
    expect(isLoopbackHost("127.1.2.3")).to.equal(true);
    expect(isLoopbackHost("128.0.0.1")).to.equal(false);
  });

  it("rejects invalid settings with the failing field", () => {
    expect(codeOf(() => loadGolemConfig({ YAGNA_APPKEY: "k", PAYMENT_NETWORK: "moon" }))).to.equal(
      "GOLEM_CONFIG_INVALID",
    );
    expect(codeOf(() => loadGolemConfig({ YAGNA_APPKEY: "k" }, { images: { "sha256:zz": { hash: "x" } } }))).to.equal(
      "GOLEM_CONFIG_INVALID",
    );
    expect(codeOf(() => loadGolemConfig({ YAGNA_APPKEY: "k" }, { surprise: 1 }))).to.equal("GOLEM_CONFIG_INVALID");
  });
});

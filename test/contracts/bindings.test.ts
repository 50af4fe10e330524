import { expect } from "chai";
import { airqubeEscrowAbi, airqubeEscrowBytecode } from "../../src/chain/abi/airqube-escrow.js";
import { airqubeEscrowV2Abi, airqubeEscrowV2Bytecode } from "../../src/chain/abi/airqube-escrow-v2.js";
import { testGLMAbi, testGLMBytecode } from "../../src/chain/abi/test-glm.js";
import { connection } from "./helpers.js";

describe("src/chain/abi bindings", () => {
  it("match the current compile (run `npm run chain:bindings` after changing a contract)", async () => {
    const { artifacts } = await import("hardhat");
    const escrow = await artifacts.readArtifact("AirqubeEscrow");
    const glm = await artifacts.readArtifact("TestGLM");
    const v2 = await artifacts.readArtifact("AirqubeEscrowV2");
    expect(airqubeEscrowV2Abi).to.deep.equal(v2.abi);
    expect(airqubeEscrowAbi).to.deep.equal(escrow.abi);
    expect(testGLMAbi).to.deep.equal(glm.abi);
    // `--coverage` compiles instrumented bytecode: compare bytecode only on a plain run.
    if (process.env.HARDHAT_COVERAGE !== "true") {
      expect(airqubeEscrowBytecode).to.equal(escrow.bytecode);
      expect(testGLMBytecode).to.equal(glm.bytecode);
      expect(airqubeEscrowV2Bytecode).to.equal(v2.bytecode);
    }
    expect(connection).to.not.equal(undefined);
  });
});

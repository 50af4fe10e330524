/**
 * One name per concept: across the package's public entry points, a name always means the same declaration
 * (re-exporting one symbol from two entries is fine; two different symbols under one name are not).
 */
import { join } from "node:path";
import { expect } from "chai";
import ts from "typescript";

const ROOT = join(import.meta.dirname, "..", "..");
const ENTRIES = [
  "index",
  "requestor/index",
  "provider/index",
  "sandbox/index",
  "probes/index",
  "chain/index",
  "golem/index",
  "devnet/index",
];

describe("package: one name per concept across the public entry points", function () {
  this.timeout(60_000);

  it("no name exported by two entries stands for two different declarations", () => {
    const files = ENTRIES.map((e) => join(ROOT, "src", `${e}.ts`));
    const program = ts.createProgram(files, {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2023,
      strict: true,
      skipLibCheck: true,
      noEmit: true,
    });
    const checker = program.getTypeChecker();
    const seen = new Map<string, { entry: string; declaration: ts.Declaration }>();
    const clashes: string[] = [];
    for (const [i, file] of files.entries()) {
      const source = program.getSourceFile(file);
      expect(source, file).to.not.equal(undefined);
      const module = checker.getSymbolAtLocation(source!);
      for (const exported of checker.getExportsOfModule(module!)) {
        const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
        const declaration = symbol.declarations?.[0];
        if (!declaration) continue;
        const previous = seen.get(exported.name);
        if (previous && previous.declaration !== declaration) {
          const where = (d: ts.Declaration) => d.getSourceFile().fileName.replace(`${ROOT}/`, "");
          clashes.push(
            `${exported.name}: ${previous.entry} (${where(previous.declaration)}) vs ${ENTRIES[i]} (${where(declaration)})`,
          );
        } else if (!previous) seen.set(exported.name, { entry: ENTRIES[i]!, declaration });
      }
    }
    expect(clashes).to.deep.equal([]);
    expect(seen.size).to.be.greaterThan(150);
  });
});

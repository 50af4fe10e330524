/**
 * Every public symbol has a TSDoc comment: the eight entry files are loaded with the TypeScript compiler API,
 * every export is followed through re-exports to its declarations, and a declaration without a JSDoc summary
 * fails the test, as do the public methods, getters and function-typed properties of exported classes and
 * interfaces (a class member may take its comment from the interface or class it implements or extends,
 * as TypeDoc does). A quick stand-in for `npx typedoc` (about 40 s), which is the reference.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { expect } from "chai";
import ts from "typescript";

const ROOT = join(import.meta.dirname, "..", "..");
const ENTRIES = [
  "src/index.ts",
  "src/requestor/index.ts",
  "src/provider/index.ts",
  "src/sandbox/index.ts",
  "src/probes/index.ts",
  "src/chain/index.ts",
  "src/golem/index.ts",
  "src/devnet/index.ts",
];

/**
 * A program over `entries` and the relative imports they reach (`./x.js` is `./x.ts`). Packages are not
 * resolved: their documentation is not ours, and leaving them out keeps the load well under a second.
 */
function loadProgram(entries: string[]): ts.Program {
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2023,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    noLib: true,
    types: [],
    noEmit: true,
  };
  const host = ts.createCompilerHost(options, true);
  host.resolveModuleNameLiterals = (literals, containingFile) =>
    literals.map((literal) => {
      if (!literal.text.startsWith(".")) return { resolvedModule: undefined };
      const file = resolve(dirname(containingFile), literal.text.replace(/\.js$/, ".ts"));
      if (!file.endsWith(".ts") || !host.fileExists(file)) return { resolvedModule: undefined };
      return { resolvedModule: { resolvedFileName: file, extension: ts.Extension.Ts, isExternalLibraryImport: false } };
    });
  return ts.createProgram({ rootNames: entries, options, host });
}

/** True when the node carries a JSDoc comment with a summary (or a tag with text, e.g. `@deprecated use x`). */
function documented(node: ts.Node): boolean {
  return ts.getJSDocCommentsAndTags(node).some((doc) => {
    if (!ts.isJSDoc(doc)) return false;
    if (ts.getTextOfJSDocComment(doc.comment)?.trim()) return true;
    return (doc.tags ?? []).some((tag) => ts.getTextOfJSDocComment(tag.comment)?.trim());
  });
}

function memberName(member: ts.ClassElement | ts.TypeElement): string | undefined {
  const name = member.name;
  if (!name || ts.isPrivateIdentifier(name)) return undefined;
  return ts.isIdentifier(name) || ts.isStringLiteral(name) || ts.isNumericLiteral(name) ? name.text : name.getText();
}

/** Members TypeDoc wants documented: public methods, getters, and properties whose type is a function. */
function checkedMember(member: ts.ClassElement | ts.TypeElement): boolean {
  const modifiers = ts.canHaveModifiers(member) ? (ts.getModifiers(member) ?? []) : [];
  if (modifiers.some((m) => m.kind === ts.SyntaxKind.PrivateKeyword || m.kind === ts.SyntaxKind.ProtectedKeyword))
    return false;
  if (ts.isMethodDeclaration(member) || ts.isMethodSignature(member) || ts.isGetAccessorDeclaration(member))
    return true;
  if (ts.isPropertyDeclaration(member) || ts.isPropertySignature(member)) {
    const type = member.type;
    return (
      type !== undefined &&
      (ts.isFunctionTypeNode(type) || (ts.isParenthesizedTypeNode(type) && ts.isFunctionTypeNode(type.type)))
    );
  }
  return false;
}

/** Whether a class or interface this one extends or implements documents a member of that name. */
function inheritsDoc(
  checker: ts.TypeChecker,
  owner: ts.ClassDeclaration | ts.InterfaceDeclaration,
  name: string,
): boolean {
  for (const clause of owner.heritageClauses ?? []) {
    for (const expression of clause.types) {
      const property = checker.getTypeAtLocation(expression).getProperty(name);
      if (property?.declarations?.some(documented)) return true;
    }
  }
  return false;
}

/**
 * Lists every exported symbol of `entries` (and checked member of an exported class or interface) whose
 * declarations have no JSDoc comment, as `Name (file:line)` or `Owner.member (file:line)`.
 */
function undocumentedExports(entries: string[], root: string): string[] {
  const program = loadProgram(entries);
  const checker = program.getTypeChecker();
  const where = (node: ts.Node) => {
    const file = node.getSourceFile();
    return `${relative(root, file.fileName)}:${file.getLineAndCharacterOfPosition(node.getStart()).line + 1}`;
  };
  const missing = new Set<string>();
  const seen = new Set<ts.Symbol>();
  for (const entry of entries) {
    const source = program.getSourceFile(entry);
    const module = source && checker.getSymbolAtLocation(source);
    if (!module) {
      missing.add(`${relative(root, entry)}: not a module`);
      continue;
    }
    for (const exported of checker.getExportsOfModule(module)) {
      const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      if (seen.has(symbol)) continue;
      seen.add(symbol);
      const declarations = symbol.declarations ?? [];
      if (declarations.length === 0) {
        missing.add(`${exported.name} (${relative(root, entry)}: cannot be followed to a declaration)`);
        continue;
      }
      if (!declarations.some(documented)) missing.add(`${exported.name} (${where(declarations[0]!)})`);
      for (const owner of declarations) {
        if (!ts.isClassDeclaration(owner) && !ts.isInterfaceDeclaration(owner)) continue;
        const members = new Map<string, (ts.ClassElement | ts.TypeElement)[]>();
        for (const member of owner.members as ts.NodeArray<ts.ClassElement | ts.TypeElement>) {
          const name = memberName(member);
          if (name === undefined || !checkedMember(member)) continue;
          members.set(name, [...(members.get(name) ?? []), member]);
        }
        for (const [name, overloads] of members) {
          if (overloads.some(documented) || inheritsDoc(checker, owner, name)) continue;
          missing.add(`${exported.name}.${name} (${where(overloads[0]!)})`);
        }
      }
    }
  }
  return [...missing].sort();
}

describe("package documentation", () => {
  it("gives every public symbol of the eight entry points a TSDoc comment", function () {
    this.timeout(20_000);
    const missing = undocumentedExports(
      ENTRIES.map((entry) => join(ROOT, entry)),
      ROOT,
    );
    expect(missing, `undocumented public symbols:\n  ${missing.join("\n  ")}\n`).to.deep.equal([]);
  });

  it("finds what is undocumented, through re-exports, export * and inherited members", async () => {
    const dir = await mkdtemp(join(tmpdir(), "airqube-docs-test-"));
    try {
      await writeFile(
        join(dir, "index.ts"),
        'export { Documented, type Port } from "./port.js";\nexport * from "./star.js";\n',
      );
      await writeFile(
        join(dir, "port.ts"),
        [
          "/** A documented constant. */",
          "export const Documented = 1;",
          "/** A port. */",
          "export interface Port {",
          "  /** Documented. */",
          "  open(): void;",
          "  close(): void;",
          "  onEvent?: (event: string) => void;",
          "  plain: string;",
          "}",
        ].join("\n"),
      );
      await writeFile(
        join(dir, "star.ts"),
        [
          'import type { Port } from "./port.js";',
          "export function bare(): void {}",
          "// a line comment is not documentation",
          "export type Alias = string;",
          "/** An adapter. */",
          "export class Adapter implements Port {",
          "  plain = '';",
          "  open(): void {}",
          "  close(): void {}",
          "  private hidden(): void {}",
          "  /** Its own. */",
          "  extra(): void {}",
          "}",
        ].join("\n"),
      );
      expect(undocumentedExports([join(dir, "index.ts")], dir)).to.deep.equal([
        "Adapter.close (star.ts:9)",
        "Alias (star.ts:4)",
        "Port.close (port.ts:7)",
        "Port.onEvent (port.ts:8)",
        "bare (star.ts:2)",
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

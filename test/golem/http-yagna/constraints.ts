/**
 * Golem's constraint language (an LDAP-style filter over flat properties), as yagna's market matches a demand
 * against an offer: `(&A B)`, `(|A B)`, `(!A)`, `(key=value)`, `(key=*)` (present), `(key>=n)`, `(key<=n)`,
 * `(key>n)`, `(key<n)`. A list-valued property matches when one element does. Whitespace between terms is
 * ignored. Throws `ConstraintError` on a malformed filter.
 */

export class ConstraintError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConstraintError";
  }
}

type Node =
  | { kind: "and" | "or"; terms: Node[] }
  | { kind: "not"; term: Node }
  | { kind: "cmp"; key: string; op: "=" | ">=" | "<=" | ">" | "<"; value: string };

/** True when `properties` satisfy `filter` (an empty filter or `(&)` matches everything). */
export function matches(filter: string, properties: Record<string, unknown>): boolean {
  const text = filter.trim();
  if (text === "") return true;
  const [node, rest] = parse(text, 0);
  if (text.slice(rest).trim() !== "") throw new ConstraintError(`trailing text in ${JSON.stringify(filter)}`);
  return evaluate(node, properties);
}

function skip(text: string, at: number): number {
  while (at < text.length && /\s/.test(text[at]!)) at++;
  return at;
}

function parse(text: string, at: number): [Node, number] {
  at = skip(text, at);
  if (text[at] !== "(") throw new ConstraintError(`expected ( at ${at}`);
  at = skip(text, at + 1);
  const head = text[at];
  if (head === "&" || head === "|") {
    const terms: Node[] = [];
    at = skip(text, at + 1);
    while (text[at] === "(") {
      const [term, next] = parse(text, at);
      terms.push(term);
      at = skip(text, next);
    }
    if (text[at] !== ")") throw new ConstraintError(`expected ) at ${at}`);
    return [{ kind: head === "&" ? "and" : "or", terms }, at + 1];
  }
  if (head === "!") {
    const [term, next] = parse(text, at + 1);
    const end = skip(text, next);
    if (text[end] !== ")") throw new ConstraintError(`expected ) at ${end}`);
    return [{ kind: "not", term }, end + 1];
  }
  const close = text.indexOf(")", at);
  if (close < 0) throw new ConstraintError("unclosed term");
  const body = text.slice(at, close);
  const match = /^([^=<>()\s]+)\s*(>=|<=|=|>|<)\s*(.*)$/.exec(body);
  if (!match) throw new ConstraintError(`bad term ${JSON.stringify(body)}`);
  return [{ kind: "cmp", key: match[1]!, op: match[2] as "=", value: match[3]!.trim() }, close + 1];
}

function evaluate(node: Node, properties: Record<string, unknown>): boolean {
  switch (node.kind) {
    case "and":
      return node.terms.every((t) => evaluate(t, properties));
    case "or":
      return node.terms.some((t) => evaluate(t, properties));
    case "not":
      return !evaluate(node.term, properties);
    case "cmp": {
      const actual = properties[node.key];
      if (node.op === "=" && node.value === "*") return actual !== undefined;
      if (actual === undefined) return false;
      const values = Array.isArray(actual) ? actual : [actual];
      return values.some((v) => compare(v, node.op, node.value));
    }
  }
}

function compare(actual: unknown, op: string, expected: string): boolean {
  const a = typeof actual === "number" ? actual : Number.NaN;
  const e = Number(expected);
  if (op === "=") return Number.isFinite(a) && Number.isFinite(e) ? a === e : String(actual) === expected;
  if (!Number.isFinite(a) || !Number.isFinite(e)) return false;
  if (op === ">=") return a >= e;
  if (op === "<=") return a <= e;
  if (op === ">") return a > e;
  return a < e;
}

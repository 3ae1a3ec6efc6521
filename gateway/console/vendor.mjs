// Copies the console's third-party libraries from node_modules (installed from package-lock.json
// by `npm ci`) into vendor/, the only place the console loads them from. The vendored files are
// committed, so a clean clone, the Python package and the Docker image need no Node.
//
// Run: cd gateway/console && npm ci && node vendor.mjs   (or `make console-vendor`)
// Bare module specifiers ("preact") are rewritten to relative paths: browsers resolve no bare
// names without an import map, and an import map is an inline script the CSP would have to allow.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync, rmSync } from "node:fs";

const FILES = [
  // [source under node_modules, name in vendor/, rewrite bare imports?]
  ["preact/dist/preact.module.js", "preact.mjs", false],
  ["preact/hooks/dist/hooks.module.js", "preact-hooks.mjs", true],
  ["htm/dist/htm.module.js", "htm.mjs", false],
  ["uplot/dist/uPlot.esm.js", "uplot.mjs", false],
  ["uplot/dist/uPlot.min.css", "uplot.css", false],
  ["preact/LICENSE", "LICENSE.preact", false],
  ["htm/LICENSE", "LICENSE.htm", false],
  ["uplot/LICENSE", "LICENSE.uplot", false],
];

rmSync("vendor", { recursive: true, force: true });
mkdirSync("vendor");
const versions = {};
for (const [source, target, rewrite] of FILES) {
  const from = `node_modules/${source}`;
  if (target.endsWith(".mjs")) {
    let text = readFileSync(from, "utf8").replaceAll(/\n?\/\/# sourceMappingURL=\S+/g, "");
    if (rewrite) text = text.replaceAll(/from\s*"preact"/g, 'from"./preact.mjs"');
    writeFileSync(`vendor/${target}`, text);
  } else {
    copyFileSync(from, `vendor/${target}`);
  }
  const name = source.split("/")[0];
  versions[name] = JSON.parse(readFileSync(`node_modules/${name}/package.json`, "utf8")).version;
}
writeFileSync("vendor/VERSIONS.json", JSON.stringify(versions, null, 2) + "\n");
console.log("vendored", versions);

// The package as a user gets it: declarations that type-check, and a tarball with the
// sources, the declarations and the README (and nothing else).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

describe("the package", () => {
  it("has declarations that pass tsc --noEmit", async () => {
    const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc");
    try {
      await run(process.execPath, [tsc, "--noEmit", "-p", root], { cwd: root });
    } catch (error) {
      assert.fail(`tsc --noEmit failed:\n${error.stdout}${error.stderr}`);
    }
  });

  it("packs the sources, the declarations and the README only", async () => {
    const { stdout } = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
      cwd: root,
    });
    const files = JSON.parse(stdout)[0]
      .files.map((file) => file.path)
      .sort();
    assert.deepEqual(files, [
      "README.md",
      "package.json",
      "src/index.d.ts",
      "src/index.js",
      "src/react.d.ts",
      "src/react.js",
      "src/view.d.ts",
      "src/view.js",
    ]);
  });

  it("exports at run time what its declarations declare", async () => {
    const core = await import("pts-client");
    const react = await import("pts-client/react");
    assert.deepEqual(Object.keys(core).sort(), [
      "PtsClient",
      "PtsError",
      "StreamView",
      "TERMINAL_STATUSES",
    ]);
    assert.deepEqual(Object.keys(react), ["useStream"]);
    assert.deepEqual([...core.TERMINAL_STATUSES], ["done", "error", "cancelled", "timeout"]);
  });

  it("has no runtime dependency, and React only as an optional peer", async () => {
    const manifest = JSON.parse(await readFile(path.join(root, "package.json"), "utf8"));
    assert.equal(manifest.type, "module");
    assert.equal(manifest.dependencies, undefined);
    assert.deepEqual(Object.keys(manifest.peerDependencies), ["react"]);
    assert.equal(manifest.peerDependenciesMeta.react.optional, true);
    assert.deepEqual(Object.keys(manifest.exports), [".", "./react", "./package.json"]);
    // The core never imports React: it loads where React is not installed.
    const core = await readFile(path.join(root, "src", "index.js"), "utf8");
    assert.doesNotMatch(core, /from "react"/);
  });
});

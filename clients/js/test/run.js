// `npm test`: every test file under Node's test runner. Node 20 has a global WebSocket only
// with --experimental-websocket; newer versions have it by default.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const files = readdirSync(here)
  .filter((name) => name.endsWith(".test.js"))
  .sort()
  .map((name) => path.join(here, name));
const flags = typeof WebSocket === "function" ? [] : ["--experimental-websocket"];
const { status } = spawnSync(process.execPath, [...flags, "--test", ...files], {
  stdio: "inherit",
});
process.exit(status ?? 1);

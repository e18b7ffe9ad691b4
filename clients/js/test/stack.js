// The real local stack (`pts dev`) on ephemeral ports, for the tests that need a server.
// PTS_REPO names the repository (default: two levels up); PTS_BIN the `pts` command
// (default: the repository's .venv/bin/pts).

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = process.env.PTS_REPO ?? path.resolve(here, "../../..");

/** Fast demo replies and batches, as the Python suite uses. */
const ENVIRONMENT = {
  PTS_HTTP_PORT: "0",
  PTS_WS_PORT: "0",
  PTS_DEMO_TOKENS_PER_SECOND: "400",
  PTS_DEMO_REPLY_TOKENS: "120",
  PTS_BATCH_MAX_DELAY_SECONDS: "0.2",
  PTS_SWEEP_INTERVAL_SECONDS: "5",
};

/**
 * Start `pts dev`, wait until it prints its URLs and answers GET /healthz.
 * @returns {Promise<{httpUrl: string, wsUrl: string, stop: () => Promise<void>, output: () => string}>}
 */
export async function startStack({ timeoutMs = 60_000, env = {} } = {}) {
  const pts = process.env.PTS_BIN ?? path.join(repo, ".venv", "bin", "pts");
  if (!existsSync(pts)) throw new Error(`${pts} is missing: run make dev or make test once`);
  const pythonPath = [path.join(repo, "src"), process.env.PYTHONPATH].filter(Boolean).join(":");
  // In memory: the tests never touch (nor see) the developer's .pts-local/.
  const child = spawn(pts, ["dev", "--in-memory"], {
    cwd: repo,
    env: { ...process.env, ...ENVIRONMENT, ...env, PYTHONPATH: pythonPath },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    log += chunk;
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  // Never leave the stack behind, even when the test process ends abruptly.
  const orphanGuard = () => child.kill("SIGKILL");
  process.once("exit", orphanGuard);

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(killer);
    }
    process.removeListener("exit", orphanGuard);
  };

  try {
    const urls = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("pts dev did not start in time")), timeoutMs);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`pts dev exited with ${code}`));
      });
      let out = "";
      child.stdout.on("data", (chunk) => {
        out += chunk;
        log += chunk;
        const http = /HTTP API and chat page\s+(\S+)/.exec(out);
        const ws = /WebSocket\s+(ws\S+)/.exec(out);
        if (http && ws && out.includes("ready")) {
          clearTimeout(timer);
          resolve({ httpUrl: http[1], wsUrl: ws[1] });
        }
      });
    });
    const health = await fetch(`${urls.httpUrl}/healthz`);
    if (health.status !== 200) throw new Error(`GET /healthz answered ${health.status}`);
    return { ...urls, stop, output: () => log };
  } catch (error) {
    await stop();
    throw new Error(`${error.message}\n--- pts dev output ---\n${log}`);
  }
}

/** Resolve after `ms` milliseconds. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

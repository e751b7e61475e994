// Modal's own JS SDK (npm `modal`, pinned by scripts/install-modal-js-sdk)
// judges the fake Modal server: it starts tests/plugins/modal's
// fake_modal_server, points the SDK at it through MODAL_SERVER_URL /
// MODAL_TOKEN_ID / MODAL_TOKEN_SECRET, as a new user of Modal would, and
// drives the flows sandrun relies on. Every flow checks values (output text,
// exit codes, file contents and tags read back), never just "did not throw".
// If the SDK cannot use the fake, the fake is wrong.
//
//   node judge.mjs --fake PATH/fake_modal_server --sdk DIR_WITH_node_modules
//
// The SDK uses V2 sandboxes unless MODAL_SANDBOX_V2=0 is in the environment
// (SandboxService.create in the SDK); the judge checks the fake was spoken to
// in the version asked for. Exit 0: every flow passed; 1: a flow failed (its
// name and what differed on stderr); 2: bad usage or the fake would not start.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { pathToFileURL } from "node:url";

function usage(message) {
  console.error(`judge: ${message}\nusage: node judge.mjs --fake FAKE_MODAL_SERVER --sdk SDK_DIR`);
  process.exit(2);
}

const args = process.argv.slice(2);
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : undefined;
};
const fakeBinary = option("--fake") ?? usage("--fake is required");
const sdkDir = option("--sdk") ?? usage("--sdk is required");
const wantV2 = !["0", "false"].includes((process.env.MODAL_SANDBOX_V2 ?? "").toLowerCase());
const version = wantV2 ? "V2" : "V1";

// ---- the fake server, as a child process that prints its URL ----

const tokenId = "ak-judge-" + randomBytes(6).toString("hex");
const tokenSecret = "as-judge-" + randomBytes(12).toString("hex");
// A variable of this process that must not reach commands in a sandbox.
const hostMarker = "SANDRUN_JUDGE_HOST_ONLY";

function startFake() {
  return new Promise((resolve, reject) => {
    // The router answers only a while after a sandbox starts, as a worker
    // that is still starting: the SDK's own retries must cover that.
    // --process: host processes, as the judge was written against; container
    // mode is judged by sandrun's own suites (conformance, adapters).
    const fakeArgs = ["--strict", "--process", "--port", "0", "--token-id", tokenId, "--token-secret", tokenSecret,
                      "--router-ready-delay-ms", "1000"];
    const child = spawn(fakeBinary, fakeArgs, {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, [hostMarker]: "leaked" },
    });
    let out = "";
    const timer = setTimeout(() => reject(new Error("the fake printed no MODAL_SERVER_URL within 20 s")), 20000);
    child.on("error", reject);
    child.on("exit", (code) => reject(new Error(`the fake exited early (code ${code})`)));
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const match = /MODAL_SERVER_URL=(\S+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1] });
      }
    });
  });
}

let fake;
try {
  fake = await startFake();
} catch (err) {
  console.error(`judge: cannot start ${fakeBinary}: ${err.message}`);
  process.exit(2);
}
const stopFake = () => {
  fake.child.removeAllListeners("exit");
  fake.child.kill("SIGTERM");
};
process.on("exit", stopFake);

// The SDK reads its profile when the module loads: set the environment first,
// and keep a user's ~/.modal.toml out of it.
Object.assign(process.env, {
  MODAL_SERVER_URL: fake.url,
  MODAL_TOKEN_ID: tokenId,
  MODAL_TOKEN_SECRET: tokenSecret,
  MODAL_CONFIG_PATH: "/nonexistent/sandrun-judge.modal.toml",
  MODAL_LOGLEVEL: process.env.MODAL_LOGLEVEL ?? "error",
});
delete process.env.MODAL_PROFILE;
delete process.env.MODAL_ENVIRONMENT;
delete process.env[hostMarker];
const modal = await import(pathToFileURL(path.join(sdkDir, "node_modules/modal/dist/index.js")).href);

// ---- flows ----

class Mismatch extends Error {}
function expectEqual(what, actual, expected) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) {
    const shorten = (s) => (s && s.length > 300 ? s.slice(0, 300) + `… (${s.length} chars)` : s);
    throw new Mismatch(`${what}: got ${shorten(a)}, expected ${shorten(e)}`);
  }
}
function expectTrue(what, condition, detail = "") {
  if (!condition) throw new Mismatch(`${what}${detail ? ": " + detail : ""}`);
}
async function expectRejects(what, promise, errorClass) {
  try {
    await promise;
  } catch (err) {
    if (errorClass && !(err instanceof errorClass)) {
      throw new Mismatch(`${what}: threw ${err?.constructor?.name}: ${err?.message}, expected ${errorClass.name}`);
    }
    return err;
  }
  throw new Mismatch(`${what}: succeeded, expected an error`);
}
// Runs a command to the end; returns its stdout, stderr and exit code.
async function run(sb, argv, params) {
  const p = await sb.exec(argv, params);
  const [stdout, stderr, code] = await Promise.all([p.stdout.readText(), p.stderr.readText(), p.wait()]);
  return { stdout, stderr, code };
}
const isV1SandboxId = (id) => /^sb-[0-9A-Za-z]{22}$/.test(id);

const results = [];
async function flow(name, body) {
  const started = Date.now();
  try {
    await body();
    results.push({ name, ok: true });
    console.log(`[ PASS ] ${version} ${name} (${Date.now() - started} ms)`);
  } catch (err) {
    const detail = err instanceof Mismatch ? err.message : `${err?.constructor?.name}: ${err?.message}`;
    results.push({ name, ok: false, detail });
    console.log(`[ FAIL ] ${version} ${name}: ${detail}`);
  }
}

const client = new modal.ModalClient();
const appName = "sandrun-judge-" + randomBytes(4).toString("hex");
let app, image, sb;

await flow("app lookup (fromName, createIfMissing)", async () => {
  await expectRejects("a missing App without createIfMissing", client.apps.fromName(appName), modal.NotFoundError);
  app = await client.apps.fromName(appName, { createIfMissing: true });
  expectTrue("the App id starts with ap-", app.appId.startsWith("ap-"), app.appId);
  const again = await client.apps.fromName(appName);
  expectEqual("the App id on a second lookup", again.appId, app.appId);
});

await flow("image from a registry (ImageGetOrCreate, join)", async () => {
  image = await client.images.fromRegistry("debian:bookworm-slim").build(app);
  expectTrue("the Image id starts with im-", image.imageId.startsWith("im-"), image.imageId);
  const again = await client.images.fromRegistry("debian:bookworm-slim").build(app);
  expectEqual("the Image id for the same definition (a cached image)", again.imageId, image.imageId);
});

await flow("sandbox create with cpu, memory, blockNetwork, env and tags", async () => {
  sb = await client.sandboxes.create(app, image, {
    cpu: 0.5,
    memoryMiB: 256,
    blockNetwork: true,
    timeoutMs: 600000,
    env: { JUDGE_SANDBOX_VAR: "from create" },
    tags: { role: "judge" },
  });
  expectTrue(
    `the sandbox id has the ${version} shape (the SDK picks the RPCs by it)`,
    isV1SandboxId(sb.sandboxId) === !wantV2,
    sb.sandboxId,
  );
  expectEqual("poll() of a running sandbox", await sb.poll(), null);
});
if (!sb) {
  console.log(`judge: ${version}: no sandbox, the remaining flows cannot run`);
}

const sandboxFlows = async () => {
  await flow("exec: stdout, stderr and exit code", async () => {
    const r = await run(sb, ["sh", "-c", "echo out; echo err >&2; exit 3"]);
    expectEqual("stdout", r.stdout, "out\n");
    expectEqual("stderr", r.stderr, "err\n");
    expectEqual("exit code", r.code, 3);
  });

  await flow("exec: stdin", async () => {
    const p = await sb.exec(["cat"]);
    await p.stdin.writeText("line one\n");
    await p.stdin.writeText("line two\n");
    await p.stdin.close();
    const [stdout, code] = await Promise.all([p.stdout.readText(), p.wait()]);
    expectEqual("stdout echoed from stdin", stdout, "line one\nline two\n");
    expectEqual("exit code", code, 0);
  });

  await flow("exec: env and workdir", async () => {
    const made = await run(sb, ["mkdir", "-p", "/sandrun/judge-wd"]);
    expectEqual("mkdir exit code", made.code, 0);
    const r = await run(sb, ["sh", "-c", 'printf "%s|%s|%s" "$JUDGE_A" "$JUDGE_B" "$JUDGE_SANDBOX_VAR" | tee relative.txt'], {
      env: { JUDGE_A: "alpha", JUDGE_B: "two words" },
      workdir: "/sandrun/judge-wd",
    });
    expectEqual("env of the exec and of the sandbox seen by the command", r.stdout, "alpha|two words|from create");
    expectEqual("exit code", r.code, 0);
    const back = await run(sb, ["cat", "/sandrun/judge-wd/relative.txt"]);
    expectEqual("a file written to a relative path lands in the workdir", back.stdout, r.stdout);
  });

  await flow("exec: a minimal environment, not the host's", async () => {
    const r = await run(sb, ["sh", "-c", `printf "%s" "\${${hostMarker}:-unset}"`]);
    expectEqual(`${hostMarker} (set only in the fake's own environment)`, r.stdout, "unset");
  });

  await flow("exec: timeout", async () => {
    const started = Date.now();
    const p = await sb.exec(["sleep", "60"], { timeoutMs: 2000 });
    const code = await p.wait();
    const elapsed = Date.now() - started;
    expectTrue("a timed-out command has a non-zero exit code", code !== 0, `code ${code}`);
    expectTrue("the command was stopped near its timeout", elapsed < 15000, `${elapsed} ms`);
  });

  await flow("exec: large output", async () => {
    const count = 200000;
    const r = await run(sb, ["seq", "1", String(count)]);
    let expected = "";
    for (let i = 1; i <= count; ++i) expected += i + "\n";
    expectEqual("stdout length", r.stdout.length, expected.length);
    expectTrue("stdout is seq's output, in order", r.stdout === expected);
    expectEqual("exit code", r.code, 0);
  });

  await flow("exec: network blocked", async () => {
    const port = new URL(fake.url).port;
    const r = await run(sb, ["bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/${port} && echo connected`]);
    expectEqual("stdout of a connection attempt", r.stdout, "");
    expectTrue("the connection attempt fails", r.code !== 0, `code ${r.code}`);
  });

  await flow("filesystem: write and read back", async () => {
    const content = new Uint8Array([...Buffer.from("judge\0bytes\n"), 0, 0, 255, 0]);
    await sb.filesystem.writeBytes(content, "/sandrun/judge/sub/data.bin");
    const back = await sb.filesystem.readBytes("/sandrun/judge/sub/data.bin");
    expectEqual("bytes read back", Array.from(back), Array.from(content));
    await sb.filesystem.writeText("hello from the judge\n", "/sandrun/judge/hello.txt");
    expectEqual("text read back", await sb.filesystem.readText("/sandrun/judge/hello.txt"), "hello from the judge\n");
    const r = await run(sb, ["cat", "/sandrun/judge/hello.txt"]);
    expectEqual("the file seen by a command", r.stdout, "hello from the judge\n");
    await expectRejects(
      "reading a missing file",
      sb.filesystem.readText("/sandrun/judge/missing.txt"),
      modal.SandboxFilesystemNotFoundError,
    );
  });

  await flow("tags: set, get, list by tag", async () => {
    expectEqual("tags given at creation", await sb.getTags(), { role: "judge" });
    await sb.setTags({ role: "judge", run: "sdk" });
    expectEqual("tags read back", await sb.getTags(), { role: "judge", run: "sdk" });
    const found = [];
    for await (const s of client.sandboxes.list({ appId: app.appId, tags: { run: "sdk" } })) found.push(s.sandboxId);
    expectEqual("sandboxes listed by tag", found, [sb.sandboxId]);
    const none = [];
    for await (const s of client.sandboxes.list({ appId: app.appId, tags: { run: "other" } })) none.push(s.sandboxId);
    expectEqual("sandboxes listed by another tag value", none, []);
  });

  await flow("terminate and wait", async () => {
    await sb.terminate();
    const code = await sb.wait();
    expectEqual("exit code of a terminated sandbox (GENERIC_STATUS_TERMINATED)", code, 137);
    expectEqual("poll() after terminate", await sb.poll(), 137);
    const listed = [];
    for await (const s of client.sandboxes.list({ appId: app.appId })) listed.push(s.sandboxId);
    expectEqual("running sandboxes listed after terminate", listed, []);
  });
};
if (sb) await sandboxFlows();

const failed = results.filter((r) => !r.ok);
console.log(`${results.length - failed.length} passed, ${failed.length} failed`);
for (const f of failed) console.error(`judge: ${version}: FAILED ${f.name}: ${f.detail}`);
stopFake();
process.exit(failed.length === 0 && sb ? 0 : 1);

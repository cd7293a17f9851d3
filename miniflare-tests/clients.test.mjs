// Real clients through Airlock: each is pointed at Airlock by changing only
// its base URL and putting the session token where it puts its key, against
// a local stand-in for the vendor API that checks the credential the way the
// real API does (fixtures/api-origins.mjs).
//
//   Python (.venv-sdks/, clients/python/requirements-sdks.txt, driven by
//   fixtures/sdk_calls.py): requests, httpx, openai, anthropic, google-genai,
//   stripe, PyGithub.
//   Node: built-in fetch, Octokit (@octokit/rest).
//   curl --anyauth (needs the 401 challenge), git clone/fetch/push over smart
//   HTTP to `git http-backend`.
//
// Every case asserts that the call worked, that the origin saw the real
// credential in the scheme the real API uses, that nothing the origin received
// (headers, target, body) holds the session token, and that nothing the client
// printed holds the credential. The controls call the origins directly: the
// real credential works, a session token does not.

import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Octokit } from "@octokit/rest";
import { everythingReceived, startApiOrigin, startGitOrigin } from "./fixtures/api-origins.mjs";
import { REPO_ROOT, assertError, secretWindows, startAirlock, testPolicy } from "./helpers.mjs";

const VENV_PYTHON = join(REPO_ROOT, ".venv-sdks", "bin", "python");
const SDK_CALLS = join(REPO_ROOT, "miniflare-tests", "fixtures", "sdk_calls.py");
const RUN_TIMEOUT_MS = 90_000;
const HAVE_CURL = spawnSync("curl", ["--version"], { stdio: "ignore" }).status === 0;

const hex = (n) => randomBytes(n).toString("hex");

// Credentials shaped like the vendors' own.
const SECRETS = {
  OPENAI_KEY: `sk-proj-${hex(24)}`,
  ANTHROPIC_KEY: `sk-ant-api03-${hex(24)}`,
  GOOGLE_KEY: `AIza${hex(18)}`,
  STRIPE_KEY: `sk_test_${hex(24)}`,
  GITHUB_TOKEN: `ghp_${hex(18)}`,
  GIT_TOKEN: `ghs_${hex(18)}`,
};

// Which origin each tool (and preset) stands for, and its secret.
const TOOLS = {
  openai: { preset: "openai", origin: "openai", secret: "OPENAI_KEY" },
  anthropic: { preset: "anthropic", origin: "anthropic", secret: "ANTHROPIC_KEY" },
  gemini: { preset: "google-genai", origin: "google", secret: "GOOGLE_KEY" },
  stripe: { preset: "stripe", origin: "stripe", secret: "STRIPE_KEY" },
  github: { preset: "github", origin: "github", secret: "GITHUB_TOKEN" },
};

/** How the origin must have received the credential: the real API's scheme, and only that. */
const SAW_CREDENTIAL = {
  openai: (rec, cred) => {
    assert.equal(rec.headers.authorization, `Bearer ${cred}`);
  },
  anthropic: (rec, cred) => {
    assert.equal(rec.headers["x-api-key"], cred);
    assert.equal(rec.headers.authorization, undefined, "no Authorization next to x-api-key");
    assert.match(rec.headers["anthropic-version"] ?? "", /^\d{4}-\d{2}-\d{2}$/, "anthropic-version forwarded");
  },
  google: (rec, cred) => {
    assert.equal(rec.headers["x-goog-api-key"], cred);
    assert.equal(rec.headers.authorization, undefined);
    assert.equal(rec.query.get("key"), null);
  },
  stripe: (rec, cred) => {
    assert.equal(rec.headers.authorization, `Bearer ${cred}`);
  },
  github: (rec, cred) => {
    assert.equal(rec.headers.authorization, `Bearer ${cred}`);
  },
  git: (rec, cred) => {
    assert.equal(rec.headers.authorization, `Basic ${Buffer.from(`x-access-token:${cred}`).toString("base64")}`);
  },
};

// A session token's shape, for the controls that need no Airlock.
const fakeSessionToken = () =>
  `al1.k1.${randomBytes(180).toString("base64url")}.${randomBytes(32).toString("base64url")}`;

let origins; // kind -> origin
let gitRoot; // temp dir: the origin's bare repositories, and the clients' HOME and work trees
let closedProxy; // a proxy URL where nothing listens
let git; // the git origin
let gitEnv; // the environment of every git command

async function closedPortUrl() {
  const s = http.createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return `http://127.0.0.1:${port}`;
}

/** The environment of every client process: no inherited keys, proxies that go nowhere except for loopback. */
function clientEnv(extra = {}) {
  return {
    PATH: process.env.PATH,
    LANG: "C.UTF-8",
    HOME: join(gitRoot, "home"),
    PYTHONUNBUFFERED: "1",
    PYTHONDONTWRITEBYTECODE: "1",
    http_proxy: closedProxy,
    https_proxy: closedProxy,
    HTTP_PROXY: closedProxy,
    HTTPS_PROXY: closedProxy,
    ALL_PROXY: closedProxy,
    all_proxy: closedProxy,
    no_proxy: "127.0.0.1,localhost",
    NO_PROXY: "127.0.0.1,localhost",
    ...extra,
  };
}

/** Run a program; resolves { code, stdout, stderr } (never rejects on a non-zero exit). */
function run(file, args, { env = clientEnv(), cwd = gitRoot, input } = {}) {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { cwd, env, timeout: RUN_TIMEOUT_MS, killSignal: "SIGKILL", maxBuffer: 16 * 1024 * 1024, encoding: "utf8" },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== "number") {
          reject(new Error(`${file} ${args.join(" ")}: ${err.killed ? "timed out" : err.message}\n${stdout}\n${stderr}`));
          return;
        }
        resolve({ code: err ? err.code : 0, stdout, stderr });
      },
    );
    child.stdin.end(input); // no client waits on a terminal or a pipe
  });
}

/** Run one Python client (fixtures/sdk_calls.py) with `key` in its key slot; resolves its JSON summary. */
async function runSdk(client, baseUrl, key) {
  const out = await run(VENV_PYTHON, [SDK_CALLS, client, baseUrl], { env: clientEnv({ AIRLOCK_SDK_KEY: key }) });
  let summary = null;
  try {
    summary = JSON.parse(out.stdout.trim().split("\n").at(-1) || "null");
  } catch {}
  assert.ok(summary, `${client}: no JSON summary (exit ${out.code}):\n${out.stdout}\n${out.stderr}`);
  return { ...out, summary };
}

/** Nothing a client printed or returned holds the credential (nor any 16-character piece of it). */
function assertNoCredential(text, cred, label) {
  assert.ok(!text.includes(cred), `${label}: holds the credential`);
  for (const w of secretWindows(cred)) assert.ok(!text.includes(w), `${label}: holds part of the credential`);
}

/** The origin's requests since `since`: all answered 2xx (or `status`), none holding the session token. */
function originRequests(origin, since, token, { status } = {}) {
  const recs = origin.requests.slice(since);
  for (const rec of recs) {
    const good = status === undefined ? rec.status >= 200 && rec.status < 300 : rec.status === status;
    assert.ok(good, `${origin.kind} answered ${rec.status} to ${rec.method} ${rec.url}${rec.error ? `: ${rec.error}` : ""}`);
    const all = everythingReceived(rec);
    assert.ok(!all.includes(token), `${origin.kind} received the session token (${rec.method} ${rec.url})`);
    for (const w of secretWindows(token, 24)) {
      assert.ok(!all.includes(w), `${origin.kind} received part of the session token (${rec.method} ${rec.url})`);
    }
  }
  return recs;
}

const summaryOf = (recs) => recs.map((r) => `${r.method} ${r.path}`);

/** Run git with the clients' environment (and extra env). */
const runGit = (args, { cwd = gitRoot, env = {} } = {}) => run("git", args, { cwd, env: { ...gitEnv, ...env } });

const originHead = async () =>
  (await runGit(["--git-dir", join(git.root, "acme", "app.git"), "rev-parse", "main"])).stdout.trim();

before(async () => {
  gitRoot = mkdtempSync(join(tmpdir(), "airlock-clients-"));
  closedProxy = await closedPortUrl();
  origins = {};
  for (const [tool, t] of Object.entries(TOOLS)) {
    origins[t.origin] = await startApiOrigin(t.origin, { credential: SECRETS[t.secret] });
    origins[t.origin].tool = tool;
  }
  // The git origin: acme/app.git with `main` and 24 topic branches (distinct
  // commits, so a clone's fetch request is over 1 KiB and git gzips it).
  const reposDir = join(gitRoot, "repos");
  gitEnv = clientEnv({
    GIT_TERMINAL_PROMPT: "0",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_AUTHOR_NAME: "Agent",
    GIT_AUTHOR_EMAIL: "agent@example.com",
    GIT_COMMITTER_NAME: "Agent",
    GIT_COMMITTER_EMAIL: "agent@example.com",
  });
  const bare = join(reposDir, "acme", "app.git");
  let r = await run("git", ["init", "--quiet", "--bare", "--initial-branch=main", bare], { env: gitEnv });
  assert.equal(r.code, 0, r.stderr);
  let stream = "";
  const blob = (text) => `data ${Buffer.byteLength(text)}\n${text}\n`;
  stream += `commit refs/heads/main\nmark :1\ncommitter Origin <origin@example.com> 1767225600 +0000\n${blob("initial")}M 644 inline README.md\n${blob("hello from the origin")}\n`;
  for (let i = 0; i < 24; i++) {
    stream += `commit refs/heads/topic-${String(i).padStart(2, "0")}\ncommitter Origin <origin@example.com> ${1767225600 + i + 1} +0000\n${blob(`topic ${i}`)}from :1\nM 644 inline topic.txt\n${blob(`topic ${i}`)}\n`;
  }
  mkdirSync(join(gitRoot, "home"));
  r = await run("git", ["fast-import", "--quiet"], { cwd: bare, env: gitEnv, input: stream });
  assert.equal(r.code, 0, r.stderr);
  git = await startGitOrigin({ credential: SECRETS.GIT_TOKEN, root: reposDir });
  origins.git = git;
});

after(async () => {
  for (const o of Object.values(origins ?? {})) await o.close();
  if (gitRoot) rmSync(gitRoot, { recursive: true, force: true });
});

// ------------------------------------------------------------------ clients

/**
 * The Python cases: client (fixtures/sdk_calls.py), the tool it goes through,
 * the calls the origin must see, and what the SDK must have parsed.
 */
const PY_CASES = [
  {
    client: "openai",
    tool: "openai",
    slot: "Authorization: Bearer",
    calls: ["GET /v1/models", "POST /v1/chat/completions"],
    result: { models: ["gpt-test", "gpt-test-mini"], id: "chatcmpl-airlocktest", content: "pong", total_tokens: 6 },
  },
  {
    // pass_server_errors (openai preset): the SDK sees the origin's 503 and its error body, not a 502
    client: "openai-overloaded",
    tool: "openai",
    slot: "Authorization: Bearer",
    calls: ["POST /v1/chat/completions"],
    originStatus: 503,
    result: { status: 503, type: "InternalServerError", error_type: "server_error" },
  },
  {
    client: "httpx",
    tool: "openai",
    slot: "Authorization: Bearer",
    calls: ["POST /v1/chat/completions"],
    result: { status: 200, content: "pong" },
  },
  {
    client: "anthropic",
    tool: "anthropic",
    slot: "api_key= (Authorization: Bearer in anthropic 2.x)",
    calls: ["POST /v1/messages"],
    result: { id: "msg_airlocktest", text: "pong", stop_reason: "end_turn", output_tokens: 1 },
  },
  {
    client: "anthropic-legacy",
    tool: "anthropic",
    slot: "api_key= (x-api-key in anthropic before 2.x)",
    calls: ["POST /v1/messages"],
    result: { id: "msg_airlocktest", text: "pong", stop_reason: "end_turn", output_tokens: 1 },
  },
  {
    client: "anthropic-bearer",
    tool: "anthropic",
    slot: "auth_token= (Authorization: Bearer)",
    calls: ["POST /v1/messages"],
    result: { id: "msg_airlocktest", text: "pong", stop_reason: "end_turn", output_tokens: 1 },
  },
  {
    client: "google-genai",
    tool: "gemini",
    slot: "x-goog-api-key",
    calls: ["POST /v1/models/gemini-test:generateContent"],
    result: { text: "pong", model_version: "gemini-test" },
  },
  {
    client: "httpx-goog",
    tool: "gemini",
    slot: "x-goog-api-key",
    calls: ["POST /v1/models/gemini-test:generateContent"],
    result: { status: 200, text: "pong" },
  },
  {
    client: "stripe",
    tool: "stripe",
    slot: "Authorization: Bearer",
    calls: ["GET /v1/customers", "POST /v1/customers"],
    result: {
      list_object: "list",
      emails: ["a@example.com", "b@example.com"],
      created_id: "cus_test_new",
      created_email: "new@example.com",
      created_metadata: { via: "stripe-python" },
    },
    body: (recs) => assert.equal(recs[1].body.toString(), "email=new%40example.com&metadata[via]=stripe-python"),
  },
  {
    client: "requests-basic",
    tool: "stripe",
    slot: "Basic user name, empty password",
    calls: ["POST /v1/customers"],
    result: { status: 200, object: "customer", email: "basic@example.com", metadata: { via: "requests" } },
  },
  {
    client: "pygithub",
    tool: "github",
    slot: "Authorization: token",
    calls: ["GET /user", "GET /repos/acme/app"],
    result: { login: "octocat", full_name: "acme/app", default_branch: "main" },
  },
  {
    client: "requests",
    tool: "github",
    slot: "Authorization: token",
    calls: ["GET /repos/acme/app"],
    result: { status: 200, full_name: "acme/app", private: true },
  },
];

describe("controls: each origin checks the credential like the real API (no Airlock)", () => {
  before(() => {
    if (!existsSync(VENV_PYTHON)) {
      throw new Error(`${VENV_PYTHON} is missing: run bash scripts/setup (it builds the SDK venv)`);
    }
  });

  for (const c of PY_CASES) {
    test(`${c.client} -> ${TOOLS[c.tool].origin} directly: the real credential works, a session token is refused`, async () => {
      const origin = origins[TOOLS[c.tool].origin];
      const cred = origin.credential;
      const ok = await runSdk(c.client, origin.url, cred);
      assert.equal(ok.summary.ok, true, `${ok.stdout}\n${ok.stderr}`);
      assert.deepEqual(ok.summary.result, c.result);

      const since = origin.requests.length;
      const refused = await runSdk(c.client, origin.url, fakeSessionToken());
      assert.equal(refused.summary.ok, false, refused.stdout);
      assert.ok([400, 401].includes(refused.summary.error.status), JSON.stringify(refused.summary.error));
      assert.ok(origin.requests.slice(since).every((r) => r.status === 400 || r.status === 401));
    });
  }

  test("Octokit -> github directly: the real credential works, a session token is refused", async () => {
    const origin = origins.github;
    const ok = new Octokit({ auth: origin.credential, baseUrl: origin.url, request: { retries: 0 } });
    const { data } = await ok.rest.users.getAuthenticated();
    assert.equal(data.login, "octocat");
    const quiet = { debug() {}, info() {}, warn() {}, error() {} };
    const bad = new Octokit({ auth: fakeSessionToken(), baseUrl: origin.url, log: quiet });
    await assert.rejects(bad.rest.repos.get({ owner: "acme", repo: "app" }), (e) => e.status === 401);
  });

  test("git -> git origin directly: x-access-token:<credential> clones (gzip request included) and pushes, a session token is refused", async () => {
    const url = (password) => {
      const u = new URL(`${git.url}/acme/app.git`);
      u.username = "x-access-token";
      u.password = password;
      return u.href;
    };
    const dir = join(gitRoot, "control-clone");
    const since = git.requests.length;
    let out = await runGit(["clone", "--quiet", url(git.credential), dir]);
    assert.equal(out.code, 0, `${out.stdout}\n${out.stderr}`);
    assert.ok(git.requests.slice(since).some((r) => r.headers["content-encoding"] === "gzip"), "a gzip request body was unpacked");
    writeFileSync(join(dir, "control.txt"), "control\n");
    await runGit(["-C", dir, "add", "control.txt"]);
    await runGit(["-C", dir, "commit", "--quiet", "-m", "control push"]);
    out = await runGit(["-C", dir, "push", "--quiet", "origin", "main"]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(await originHead(), (await runGit(["-C", dir, "rev-parse", "HEAD"])).stdout.trim());

    out = await runGit(["clone", "--quiet", url(fakeSessionToken()), join(gitRoot, "control-refused")]);
    assert.notEqual(out.code, 0);
    assert.match(out.stderr, /Authentication failed|401/, out.stderr);
  });

  test("curl --anyauth -> git origin directly: answers the origin's Basic challenge", { skip: !HAVE_CURL && "curl is not installed" }, async () => {
    const out = await run("curl", [
      "-sS", "--fail-with-body", "--anyauth", "-u", `x-access-token:${git.credential}`,
      `${git.url}/acme/app.git/info/refs?service=git-upload-pack`,
    ]);
    assert.equal(out.code, 0, `${out.stdout}\n${out.stderr}`);
    assert.match(out.stdout, /# service=git-upload-pack/);
  });
});

describe("real clients through Airlock", () => {
  let h;
  let api; // write on every API tool, read on git
  let gitRead;
  let gitWrite;

  const toolUrl = (tool) => new URL(`/t/${tool}`, h.url).href;

  before(async () => {
    h = await startAirlock({
      policy: (echoUrl) =>
        testPolicy(echoUrl, {
          limits: { max_request_body_bytes: 1024 * 1024, upstream_timeout_ms: 30_000 },
          extraTools: {
            ...Object.fromEntries(
              Object.entries(TOOLS).map(([tool, t]) => [
                tool,
                {
                  preset: t.preset,
                  origin: origins[t.origin].url,
                  allow_http: true,
                  credential: { secret: t.secret },
                },
              ]),
            ),
            // Google's ?key= as the tool's own token place
            gemini_key: {
              preset: "google-genai",
              origin: origins.google.url,
              allow_http: true,
              credential: { secret: "GOOGLE_KEY" },
              session_token: { query: ["key"] },
            },
            git: { preset: "git", origin: git.url, allow_http: true, credential: { secret: "GIT_TOKEN" } },
          },
        }),
      secrets: SECRETS,
    });
    api = await h.mint(
      { openai: "write", anthropic: "write", gemini: "write", gemini_key: "write", stripe: "write", github: "read", git: "read" },
      { agent: "agent-clients", user: "user-clients" },
    );
    gitRead = await h.mint({ git: "read" }, { agent: "agent-git-read" });
    gitWrite = await h.mint({ git: "write" }, { agent: "agent-git-write" });
  });

  after(async () => {
    await h?.close();
    await git?.close();
  });

  for (const c of PY_CASES) {
    test(`Python ${c.client}: session token in the ${c.slot} slot`, async () => {
      const t = TOOLS[c.tool];
      const origin = origins[t.origin];
      const since = origin.requests.length;
      const out = await runSdk(c.client, toolUrl(c.tool), api.token);
      assert.equal(out.summary.ok, true, `${out.stdout}\n${out.stderr}\n${JSON.stringify(h.audit.slice(-3))}`);
      assert.deepEqual(out.summary.result, c.result);

      const recs = originRequests(origin, since, api.token, { status: c.originStatus });
      assert.deepEqual(summaryOf(recs), c.calls);
      for (const rec of recs) SAW_CREDENTIAL[t.origin](rec, origin.credential);
      c.body?.(recs);
      assertNoCredential(out.stdout + out.stderr, origin.credential, `${c.client} output`);
    });
  }

  test("Node fetch: session token in x-api-key (Anthropic's header)", async () => {
    const origin = origins.anthropic;
    const since = origin.requests.length;
    const resp = await fetch(`${toolUrl("anthropic")}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": api.token, "anthropic-version": "2023-06-01", "content-type": "application/json" },
      body: JSON.stringify({ model: "claude-test", max_tokens: 8, messages: [{ role: "user", content: "ping" }] }),
    });
    const text = await resp.text();
    assert.equal(resp.status, 200, text);
    assert.equal(JSON.parse(text).content[0].text, "pong");
    const recs = originRequests(origin, since, api.token);
    assert.deepEqual(summaryOf(recs), ["POST /v1/messages"]);
    SAW_CREDENTIAL.anthropic(recs[0], origin.credential);
    assert.equal(recs[0].headers["anthropic-version"], "2023-06-01");
    assertNoCredential(text, origin.credential, "response");
  });

  test("Node fetch: session token in api-key (Azure OpenAI's header)", async () => {
    const origin = origins.openai;
    const since = origin.requests.length;
    const resp = await fetch(`${toolUrl("openai")}/v1/models`, { headers: { "api-key": api.token } });
    const text = await resp.text();
    assert.equal(resp.status, 200, text);
    assert.deepEqual(JSON.parse(text).data.map((m) => m.id), ["gpt-test", "gpt-test-mini"]);
    const recs = originRequests(origin, since, api.token);
    assert.deepEqual(summaryOf(recs), ["GET /v1/models"]);
    SAW_CREDENTIAL.openai(recs[0], origin.credential);
    assert.equal(recs[0].headers["api-key"], undefined);
    assertNoCredential(text, origin.credential, "response");
  });

  test("Node fetch: session token in ?key= (a tool's own session_token query parameter)", async () => {
    const origin = origins.google;
    const since = origin.requests.length;
    const resp = await fetch(`${toolUrl("gemini_key")}/v1beta/models/gemini-test:generateContent?key=${api.token}&alt=json`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "ping" }] }] }),
    });
    const text = await resp.text();
    assert.equal(resp.status, 200, text);
    assert.equal(JSON.parse(text).candidates[0].content.parts[0].text, "pong");
    const recs = originRequests(origin, since, api.token);
    assert.deepEqual(summaryOf(recs), ["POST /v1beta/models/gemini-test:generateContent"]);
    SAW_CREDENTIAL.google(recs[0], origin.credential);
    assert.equal(recs[0].query.toString(), "alt=json", "the key parameter is not forwarded; the others are");
    assertNoCredential(text, origin.credential, "response");
  });

  test("Octokit (@octokit/rest): auth token sends `authorization: token …`", async () => {
    const origin = origins.github;
    const since = origin.requests.length;
    const octokit = new Octokit({ auth: api.token, baseUrl: toolUrl("github"), request: { retries: 0 } });
    const user = await octokit.rest.users.getAuthenticated();
    const repo = await octokit.rest.repos.get({ owner: "acme", repo: "app" });
    assert.equal(user.data.login, "octocat");
    assert.equal(repo.data.full_name, "acme/app");
    const recs = originRequests(origin, since, api.token);
    assert.deepEqual(summaryOf(recs), ["GET /user", "GET /repos/acme/app"]);
    for (const rec of recs) SAW_CREDENTIAL.github(rec, origin.credential);
    assertNoCredential(JSON.stringify([user, repo]), origin.credential, "Octokit results");
  });

  test("curl --anyauth -u x:TOKEN: answers the 401 challenge with Basic", { skip: !HAVE_CURL && "curl is not installed" }, async () => {
    const origin = origins.github;
    const since = origin.requests.length;
    const out = await run("curl", [
      "-sS", "--fail-with-body", "--anyauth", "-u", `x:${api.token}`,
      "-H", "accept: application/vnd.github+json",
      `${toolUrl("github")}/user`,
    ]);
    assert.equal(out.code, 0, `${out.stdout}\n${out.stderr}`);
    assert.equal(JSON.parse(out.stdout).login, "octocat");
    // the unauthenticated probe stopped at Airlock; only the answer reached the origin
    const recs = originRequests(origin, since, api.token);
    assert.deepEqual(summaryOf(recs), ["GET /user"]);
    SAW_CREDENTIAL.github(recs[0], origin.credential);
    assertNoCredential(out.stdout + out.stderr, origin.credential, "curl output");
  });

  // ---------------------------------------------------------------- git

  const gitUrl = (token) => {
    const u = new URL(`${toolUrl("git")}/acme/app.git`);
    if (token) {
      u.username = "x";
      u.password = token;
    }
    return u.href;
  };
  // The helper reads the token from the environment, so it is not on the command line.
  const HELPER = ["-c", 'credential.helper=!f() { echo username=x; echo "password=$AIRLOCK_TOKEN"; }; f'];

  /** A commit in the origin's repository, made behind Airlock's back (for fetch). */
  async function originCommit(message) {
    const work = join(gitRoot, `origin-work-${hex(4)}`);
    const bare = join(git.root, "acme", "app.git");
    let r = await runGit(["clone", "--quiet", bare, work]);
    assert.equal(r.code, 0, r.stderr);
    writeFileSync(join(work, "ORIGIN.md"), `${message}\n`);
    r = await runGit(["-C", work, "add", "ORIGIN.md"]);
    r = await runGit(["-C", work, "commit", "--quiet", "-m", message]);
    assert.equal(r.code, 0, r.stderr);
    r = await runGit(["-C", work, "push", "--quiet", "origin", "main"]);
    assert.equal(r.code, 0, r.stderr);
    return (await runGit(["-C", work, "rev-parse", "HEAD"])).stdout.trim();
  }

  /** Git output and every origin request of a git case, checked for the credential and the token. */
  function checkGitCase(out, since, token) {
    const recs = originRequests(git, since, token);
    assert.ok(recs.length > 0, "the git origin was reached");
    for (const rec of recs) SAW_CREDENTIAL.git(rec, git.credential);
    assertNoCredential(out.stdout + out.stderr, git.credential, "git output");
    return recs;
  }

  test("git clone + fetch, token as the URL password (Basic after the 401 challenge)", async () => {
    const dir = join(gitRoot, "clone-url");
    let since = git.requests.length;
    let out = await runGit(["clone", gitUrl(gitRead.token), dir]);
    assert.equal(out.code, 0, `${out.stdout}\n${out.stderr}`);
    assert.equal(readFileSync(join(dir, "README.md"), "utf8"), "hello from the origin");
    const branches = (await runGit(["-C", dir, "branch", "-r"])).stdout;
    assert.match(branches, /origin\/topic-23/);
    let recs = checkGitCase(out, since, gitRead.token);
    assert.ok(recs.some((r) => r.method === "GET" && r.path === "/acme/app.git/info/refs" && r.query.get("service") === "git-upload-pack"));
    const packs = recs.filter((r) => r.method === "POST" && r.path === "/acme/app.git/git-upload-pack");
    assert.ok(packs.length > 0, summaryOf(recs).join("\n"));
    assert.ok(
      packs.some((r) => r.headers["content-encoding"] === "gzip"),
      "a gzip-encoded upload-pack request went through (25 wants are over git's 1 KiB threshold)",
    );

    const newHead = await originCommit("made at the origin");
    since = git.requests.length;
    out = await runGit(["-C", dir, "fetch", "origin"]);
    assert.equal(out.code, 0, `${out.stdout}\n${out.stderr}`);
    assert.equal((await runGit(["-C", dir, "rev-parse", "origin/main"])).stdout.trim(), newHead);
    recs = checkGitCase(out, since, gitRead.token);
    assert.ok(recs.some((r) => r.path.endsWith("/git-upload-pack")));
  });

  test("git clone over protocol v2 with the token from a credential helper", async () => {
    const dir = join(gitRoot, "clone-helper");
    const since = git.requests.length;
    const out = await runGit([...HELPER, "-c", "protocol.version=2", "clone", gitUrl(), dir], {
      env: { AIRLOCK_TOKEN: gitRead.token },
    });
    assert.equal(out.code, 0, `${out.stdout}\n${out.stderr}`);
    assert.equal((await runGit(["-C", dir, "rev-parse", "HEAD"])).stdout.trim(), await originHead());
    const recs = checkGitCase(out, since, gitRead.token);
    for (const rec of recs) assert.equal(rec.headers["git-protocol"], "version=2", `${rec.method} ${rec.url}`);
    // the remote URL git keeps holds no token
    assert.ok(!readFileSync(join(dir, ".git", "config"), "utf8").includes(gitRead.token));
  });

  test("git push with a read session is refused at the advertisement, with Airlock's message shown by git", async (t) => {
    const dir = join(gitRoot, "clone-read-push");
    let out = await runGit([...HELPER, "clone", "--quiet", gitUrl(), dir], { env: { AIRLOCK_TOKEN: gitRead.token } });
    assert.equal(out.code, 0, out.stderr);
    writeFileSync(join(dir, "agent.txt"), "from a read session\n");
    await runGit(["-C", dir, "add", "agent.txt"]);
    await runGit(["-C", dir, "commit", "--quiet", "-m", "read session push"]);
    const before = await originHead();
    const since = git.requests.length;
    out = await runGit([...HELPER, "-C", dir, "push", "origin", "main"], { env: { AIRLOCK_TOKEN: gitRead.token } });
    assert.notEqual(out.code, 0, "push must fail");
    assert.match(out.stderr, /airlock: level_insufficient/, out.stderr);
    t.diagnostic(`git: ${out.stderr.trim().split("\n").join(" | ")}`);
    assert.deepEqual(summaryOf(git.requests.slice(since)), [], "no receive-pack request reached the origin");
    assert.equal(await originHead(), before);
    assertNoCredential(out.stdout + out.stderr, git.credential, "git output");
    assert.ok(!(out.stdout + out.stderr).includes(gitRead.token), "git printed the session token");
  });

  test("git push with a write session lands at the origin", async () => {
    const dir = join(gitRoot, "clone-write-push");
    let out = await runGit([...HELPER, "clone", "--quiet", gitUrl(), dir], { env: { AIRLOCK_TOKEN: gitWrite.token } });
    assert.equal(out.code, 0, out.stderr);
    writeFileSync(join(dir, "agent.txt"), "from a write session\n");
    await runGit(["-C", dir, "add", "agent.txt"]);
    await runGit(["-C", dir, "commit", "--quiet", "-m", "write session push"]);
    const mine = (await runGit(["-C", dir, "rev-parse", "HEAD"])).stdout.trim();
    const since = git.requests.length;
    out = await runGit([...HELPER, "-C", dir, "push", "origin", "main"], { env: { AIRLOCK_TOKEN: gitWrite.token } });
    assert.equal(out.code, 0, `${out.stdout}\n${out.stderr}`);
    assert.equal(await originHead(), mine, "the origin repository has the pushed commit");
    const recs = checkGitCase(out, since, gitWrite.token);
    assert.deepEqual(
      summaryOf(recs),
      ["GET /acme/app.git/info/refs", "POST /acme/app.git/git-receive-pack"],
    );
    assert.equal(recs[0].query.get("service"), "git-receive-pack");
  });

  // ---------------------------------------------------------------- raw negatives

  describe("token slots, raw fetch", () => {
    let other; // a second session on the same tools

    before(async () => {
      other = await h.mint({ openai: "write", anthropic: "write", gemini: "write" }, { agent: "agent-other" });
    });

    const basic = (user, password) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
    const conflicting = [
      ["Authorization: Bearer A + x-api-key: B", (a, b) => ({ authorization: `Bearer ${a}`, "x-api-key": b })],
      ["Authorization: Bearer A + api-key: B", (a, b) => ({ authorization: `Bearer ${a}`, "api-key": b })],
      ["Authorization: token A + x-goog-api-key: B", (a, b) => ({ authorization: `token ${a}`, "x-goog-api-key": b })],
      ["x-api-key: A + x-goog-api-key: B", (a, b) => ({ "x-api-key": a, "x-goog-api-key": b })],
      ["Basic x:A + api-key: B", (a, b) => ({ authorization: basic("x", a), "api-key": b })],
      ["Authorization: Bearer A + x-api-key: a value that is no token", (a) => ({ authorization: `Bearer ${a}`, "x-api-key": `sk-ant-api03-${hex(20)}` })],
    ];

    for (const [label, headers] of conflicting) {
      test(`two different tokens (${label}) -> 401 invalid_session, nothing forwarded`, async () => {
        const since = origins.openai.requests.length;
        const r = await h.raw({ path: "/t/openai/v1/models", headers: headers(api.token, other.token) });
        assertError(r, 401, "invalid_session", label);
        assert.equal(origins.openai.requests.length, since, "the origin was reached");
      });
    }

    test("the same token in two slots is one token", async () => {
      const r = await h.raw({ path: "/t/openai/v1/models", headers: { authorization: `Bearer ${api.token}`, "x-api-key": api.token } });
      assert.equal(r.status, 200, r.text);
    });

    for (const [label, headers] of [
      ["no token", {}],
      ["a bad token", { authorization: `Bearer ${fakeSessionToken()}` }],
    ]) {
      test(`401 for ${label} carries the Basic and Bearer challenges`, async () => {
        const r = await h.raw({ path: "/t/openai/v1/models", headers });
        assertError(r, 401, "invalid_session", label);
        const challenge = r.headers["www-authenticate"] ?? "";
        assert.match(challenge, /Basic realm="airlock"/, challenge);
        assert.match(challenge, /Bearer/, challenge);
      });
    }

    test("a git client gets errors as text/plain", async () => {
      const r = await h.raw({ path: "/t/git/acme/app.git/info/refs?service=git-upload-pack", headers: { "user-agent": "git/2.47.3" } });
      assert.equal(r.status, 401, r.text);
      assert.match(r.headers["content-type"] ?? "", /^text\/plain/);
      assert.match(r.text, /^airlock: invalid_session: /);
      assert.match(r.headers["www-authenticate"] ?? "", /Basic realm="airlock"/);
    });
  });
});

describe("token headers named in forward_headers never reach the origin", () => {
  const SLOTS = ["x-api-key", "api-key", "x-goog-api-key"];
  let h;

  before(async () => {
    h = await startAirlock({
      policy: (echoUrl) =>
        testPolicy(echoUrl, {
          extraTools: {
            leaky: {
              origin: echoUrl,
              allow_http: true,
              credential: { secret: "ECHO_API_TOKEN", inject: "bearer" },
              forward_headers: SLOTS,
              rules: [{ methods: ["GET"], path: "/**", level: "read" }],
            },
          },
        }),
    });
  });

  after(async () => {
    await h?.close();
  });

  test("either the policy is refused, or the slots are dropped", async (t) => {
    const health = await h.fetch("/v1/health");
    if (health.status === 500) {
      // The policy may not name them at all.
      assertError(health, 500, "policy_invalid", "policy naming token headers");
      t.diagnostic("a policy naming token headers in forward_headers is refused");
      return;
    }
    t.diagnostic("a policy naming token headers in forward_headers is accepted; the headers are dropped");
    assert.equal(health.status, 200, health.text);
    const s = await h.mint({ leaky: "read" });
    for (const slot of SLOTS) {
      const before = h.echo.hits.length;
      const r = await h.raw({ path: "/t/leaky/hello", headers: { [slot]: s.token } });
      assert.equal(r.status, 200, `${slot}: ${r.text}`);
      const hit = h.echo.hits.at(-1);
      assert.equal(h.echo.hits.length - before, 1);
      assert.equal(hit.headers.authorization, `Bearer ${h.secrets.ECHO_API_TOKEN}`);
      for (const name of SLOTS) assert.equal(hit.headers[name], undefined, `${name} reached the origin (token in ${slot})`);
      assert.ok(!JSON.stringify(hit.rawHeaders).includes(s.token));
    }
  });
});

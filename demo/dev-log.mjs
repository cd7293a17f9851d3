// Dev log filter: `wrangler dev ... | node demo/dev-log.mjs` (scripts/dev).
//
// Every line that is an Airlock audit record (one JSON object with
// "kind":"airlock.audit", as the worker writes it with console.log, after the
// prefix wrangler may put in front) is printed as one readable line:
//
//   12:01:02 allow tool echo GET /hello 200 12ms session=5f0c… agent=demo-agent
//   12:01:03 deny  tool echo DELETE /items/1 403 level_insufficient 2ms session=5f0c… agent=demo-agent · <detail>
//
// Every other line passes unchanged. The record prints only what it holds
// (no query, body, token or credential; see src/audit.rs). For a refusal the
// status shown is the one Airlock answered with, looked up from the code;
// for an allowed call it is the origin's. AIRLOCK_DEV_RAW_AUDIT=1 makes
// scripts/dev skip this filter and print the JSON lines as they are.
//
// Node built-ins only.

import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

// Airlock's answer for each refusal code (src/error.rs, Error::status).
const STATUS = {
  invalid_session: 401, invalid_admin_key: 401, session_revoked: 401,
  proof_required: 401, proof_invalid: 401, proof_stale: 401, proof_replayed: 401,
  tool_not_allowed: 403, route_not_allowed: 403, level_insufficient: 403,
  egress_not_allowed: 403, host_forbidden: 403,
  approval_required: 403, approval_pending: 403, approval_denied: 403, approval_invalid: 403,
  invalid_path: 400, invalid_host: 400, invalid_request: 400, method_override_not_allowed: 400,
  mcp_invalid_message: 400, mcp_message_too_large: 413, mcp_session_invalid: 404,
  body_too_large: 413, url_too_long: 414, headers_too_large: 431,
  not_found: 404, method_not_allowed: 405, session_not_found: 404, approval_not_found: 404,
  idempotency_in_flight: 409, idempotency_response_not_stored: 409, approval_decided: 409,
  idempotency_key_reused: 422, rate_limited: 429,
  upstream_unavailable: 502, upstream_error: 502, upstream_encoding_refused: 502,
  upstream_partial_content: 502, upstream_timeout: 504,
  state_unavailable: 503, policy_invalid: 500, misconfigured: 500, internal: 500,
};

const color = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code, text) => (color ? `\x1b[${code}m${text}\x1b[0m` : text);
const DECISION_COLOR = { allow: "32", deny: "33", error: "31" };

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;
const RECORD = /^(?:\[[^\]]*\]\s*)?(\{.*\})\s*$/;

/** The audit record on this line, or null. */
export function auditRecord(line) {
  const m = RECORD.exec(line.replace(ANSI, ""));
  if (!m) return null;
  try {
    const v = JSON.parse(m[1]);
    return v && v.kind === "airlock.audit" ? v : null;
  } catch {
    return null;
  }
}

const short = (id) => (typeof id === "string" && id.length > 4 ? `${id.slice(0, 4)}…` : id);

function clock(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return "--:--:--";
  const p = (n) => String(n).padStart(2, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** One readable line for an audit record. */
export function formatRecord(r) {
  const decision = String(r.decision ?? "?");
  const out = [paint("2", clock(r.ts)), paint(DECISION_COLOR[decision] ?? "0", decision.padEnd(5)), r.route];
  const target = r.tool ?? r.host;
  if (target) out.push(target);
  out.push(r.method);
  if (r.mcp_method) {
    out.push(r.mcp_target ? `${r.mcp_method} ${r.mcp_target}` : r.mcp_method);
    if (r.mcp_args?.length) out.push(`(${r.mcp_args.join(", ")})`);
  } else if (r.path) {
    out.push(r.path);
  }
  if (decision === "allow") {
    if (r.upstream_status != null) out.push(String(r.upstream_status));
    if (r.reason && r.reason !== "ok") out.push(r.reason);
  } else {
    const status = STATUS[r.reason];
    if (status) out.push(String(status));
    out.push(r.reason);
    if (r.upstream_status != null) out.push(`upstream=${r.upstream_status}`);
  }
  out.push(`${r.duration_ms}ms`);
  if (r.stream && r.stream !== "complete") out.push(`stream=${r.stream} after ${r.bytes_out ?? 0} bytes`);
  for (const key of ["rate_limit", "idempotency", "proof"]) {
    if (r[key]) out.push(`${key}=${r[key]}`);
  }
  if (r.approval_id) out.push(`approval=${r.approval_id}`);
  if (r.approved_by) out.push(`approved_by=${r.approved_by}`);
  if (r.session_id) out.push(`session=${short(r.session_id)}`);
  if (r.agent) out.push(`agent=${r.agent}`);
  let line = out.join(" ");
  if (decision !== "allow" && r.detail) line += paint("2", ` · ${r.detail}`);
  return line;
}

const isMain = process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href;

if (isMain) {
  // Ctrl-C reaches the whole pipeline: keep going until wrangler, the
  // writer, has printed its last lines and closed the pipe.
  process.on("SIGINT", () => {});
  process.stdout.on("error", () => process.exit(0));
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  rl.on("line", (line) => {
    const record = auditRecord(line);
    process.stdout.write(`${record ? formatRecord(record) : line}\n`);
  });
}

// Request proofs for Airlock: the `x-airlock-proof` header.
//
// When a policy sets "require_proof", every request of a session must carry
//   x-airlock-proof: v1;ts=<unix seconds>;nonce=<random>;sig=<base64url HMAC-SHA256>
// keyed with the session's `proof_key` (returned when the session is minted).
//
// WebCrypto only (globalThis.crypto.subtle, getRandomValues, btoa/atob): runs
// in Node >= 22 (type stripping, no build step), Deno, Bun, browsers and
// Workers. Only erasable TypeScript syntax is used.
//
//   const resp = await proofFetch("http://127.0.0.1:8787/t/echo/items/1",
//     { token, proofKey, sessionId });

export const PROOF_HEADER = "x-airlock-proof";

export type Body = string | Uint8Array | ArrayBuffer | undefined;

export interface SignInput {
  proofKey: string;
  sessionId: string;
  method: string;
  /** Path exactly as sent on the wire (raw, still percent-encoded). */
  path: string;
  /** Raw query exactly as sent, without '?'; "" when there is none. */
  query?: string;
  /** The exact request body; a string is sent (and hashed) as UTF-8. */
  body?: Body;
  /** Unix seconds; defaults to now. */
  ts?: number;
  /** 16-64 chars of [A-Za-z0-9_-]; defaults to 22 random characters. */
  nonce?: string;
}

const NONCE_RE = /^[A-Za-z0-9_-]{16,64}$/;
const B64URL_RE = /^[A-Za-z0-9_-]+$/;

function bytesOf(body: Body): Uint8Array {
  if (body === undefined) return new Uint8Array(0);
  if (typeof body === "string") return new TextEncoder().encode(body);
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  return body;
}

function b64urlEncode(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function b64urlDecode(text: string): Uint8Array {
  const t = text.replace(/=+$/, "");
  if (!B64URL_RE.test(t)) throw new TypeError("proofKey is not base64url");
  const bin = atob(t.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function hex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

export function newNonce(): string {
  return b64urlEncode(globalThis.crypto.getRandomValues(new Uint8Array(16)));
}

/** The exact text that is MACed (fields joined by "\n", no trailing newline). */
export async function signedString(input: Omit<SignInput, "proofKey"> & { ts: number; nonce: string }): Promise<string> {
  const { sessionId, method, path, query = "", body, ts, nonce } = input;
  if ([sessionId, method, path, query, nonce].some((f) => /[\r\n]/.test(f))) {
    throw new TypeError("proof fields must not contain line breaks");
  }
  if (!path.startsWith("/") || path.includes("?") || path.includes("#")) {
    throw new TypeError("path must start with '/' and hold no query or fragment");
  }
  if (!NONCE_RE.test(nonce)) throw new TypeError("nonce must be 16-64 characters of [A-Za-z0-9_-]");
  if (!Number.isSafeInteger(ts) || ts < 0) throw new TypeError("ts must be a non-negative integer");
  const bodyHash = hex(await globalThis.crypto.subtle.digest("SHA-256", bytesOf(body)));
  return ["airlock-proof-v1", sessionId, method.toUpperCase(), path, query, bodyHash, String(ts), nonce].join("\n");
}

/** The `x-airlock-proof` header value for one request. Use each value once. */
export async function sign(input: SignInput): Promise<string> {
  const ts = input.ts ?? Math.floor(Date.now() / 1000);
  const nonce = input.nonce ?? newNonce();
  const message = await signedString({ ...input, ts, nonce });
  const key = await globalThis.crypto.subtle.importKey(
    "raw", b64urlDecode(input.proofKey), { name: "HMAC", hash: "SHA-256" }, false, ["sign"],
  );
  const mac = await globalThis.crypto.subtle.sign("HMAC", key, new TextEncoder().encode(message));
  return `v1;ts=${ts};nonce=${nonce};sig=${b64urlEncode(new Uint8Array(mac))}`;
}

export interface ProofFetchOptions {
  token: string;
  proofKey: string;
  sessionId: string;
  method?: string;
  body?: Body;
  headers?: HeadersInit;
  ts?: number;
  nonce?: string;
}

/**
 * fetch() with `Authorization: Bearer <token>` and a fresh proof. Redirects
 * are not followed (a redirect would need a new proof for its own path).
 */
export async function proofFetch(url: string | URL, opts: ProofFetchOptions): Promise<Response> {
  // fetch sends the WHATWG-parsed URL: `pathname` and `search` are what goes
  // on the wire (already percent-encoded, dot segments resolved), so signing
  // them signs exactly the request target Airlock receives.
  const u = new URL(url);
  const method = (opts.method ?? "GET").toUpperCase();
  const headers = new Headers(opts.headers);
  headers.set("authorization", `Bearer ${opts.token}`);
  headers.set(PROOF_HEADER, await sign({
    proofKey: opts.proofKey, sessionId: opts.sessionId, method,
    path: u.pathname, query: u.search.slice(1), body: opts.body, ts: opts.ts, nonce: opts.nonce,
  }));
  u.hash = "";
  return fetch(u, { method, headers, body: opts.body as BodyInit | undefined, redirect: "manual" });
}

// Airlock control-plane client: fetch and WebCrypto only (Node >= 22.18 with
// type stripping, Deno, Bun, Workers). Mint, list, inspect and revoke
// sessions, read and verify a session's audit trail, list and decide
// approvals, with the admin key:
//
//   const api = new Airlock("https://airlock.example.workers.dev", adminKey);
//   const s = await api.mint({ agent: "coder-7", user: "alice@example.com", tools: { github: "read" }, ttl_seconds: 600 });
//   for await (const row of api.sessions({ agent: "coder-7", status: "active" })) console.log(row.session_id);
//   await api.revokeAgent("coder-7");
//   const trail = await api.audit(s.session_id);
//   await verifyChain(trail.records);   // the head, or throws ChainBroken
//
// Errors are thrown as AirlockError with the HTTP status and Airlock's
// stable error code; the admin key never appears in a message. Only
// erasable TypeScript syntax is used.

export const GENESIS = "0".repeat(64);

export class AirlockError extends Error {
  status: number;
  code: string | null;
  constructor(status: number, code: string | null, message: string) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

export class ChainBroken extends Error {
  index: number;
  constructor(index: number) {
    super(`audit chain broken at record ${index}`);
    this.index = index;
  }
}

export type Level = "read" | "write" | "admin";
export interface MintRequest {
  agent: string;
  user: string;
  tools: Record<string, Level>;
  ttl_seconds: number;
  egress?: boolean;
}
export interface Minted { token: string; session_id: string; expires_at: number; proof_key: string }
export interface SessionRow {
  session_id: string; status: "active" | "revoked" | "expired"; agent: string; user: string;
  tools: Record<string, Level>; egress: boolean; created_at: number; expires_at: number; revoked_at: number | null;
}
export interface ListFilter { agent?: string; user?: string; status?: "active" | "revoked" | "expired"; limit?: number }
export interface Page { sessions: SessionRow[]; next_cursor: string | null }
export interface Trail { records: string[]; head: string | null }

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Verifies a trail's hash chain (as Airlock's audit::verify_chain does):
 * resolves to the head (null for no records) or throws ChainBroken with the
 * index of the first record whose link fails.
 */
export async function verifyChain(records: string[]): Promise<string | null> {
  let last: [number, string] | null = null;
  for (let i = 0; i < records.length; i++) {
    let fields: { seq?: unknown; prev?: unknown };
    try {
      fields = JSON.parse(records[i]);
    } catch {
      throw new ChainBroken(i);
    }
    const { seq, prev } = fields ?? {};
    if (!Number.isSafeInteger(seq) || (seq as number) < 0 || typeof prev !== "string") throw new ChainBroken(i);
    const linked = last === null ? (seq as number) > 0 || prev === GENESIS : seq === last[0] + 1 && prev === last[1];
    if (!linked) throw new ChainBroken(i);
    last = [seq as number, await sha256Hex(records[i])];
  }
  return last === null ? null : last[1];
}

export class Airlock {
  readonly url: string;
  #key: string;

  constructor(url: string, adminKey: string) {
    if (!adminKey) throw new Error("an admin key is required");
    this.url = url.replace(/\/+$/, "");
    this.#key = adminKey;
  }

  async #call<T>(method: string, path: string, body?: unknown, query?: Record<string, string | number | undefined>): Promise<T> {
    const u = new URL(this.url + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v));
    const headers: Record<string, string> = { authorization: `Bearer ${this.#key}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const resp = await fetch(u, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await resp.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {}
    if (!resp.ok) throw new AirlockError(resp.status, json?.error?.code ?? null, json?.error?.message ?? text.slice(0, 200));
    return json as T;
  }

  mint(req: MintRequest): Promise<Minted> {
    return this.#call("POST", "/v1/sessions", req);
  }

  listPage(filter: ListFilter = {}, cursor?: string): Promise<Page> {
    return this.#call("GET", "/v1/sessions", undefined, { ...filter, cursor });
  }

  /** Every matching session, following the cursors. */
  async *sessions(filter: ListFilter = {}): AsyncGenerator<SessionRow> {
    let cursor: string | undefined;
    do {
      const page = await this.listPage(filter, cursor);
      yield* page.sessions;
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined);
  }

  session(id: string): Promise<Record<string, unknown>> {
    return this.#call("GET", `/v1/sessions/${encodeURIComponent(id)}`);
  }

  revoke(id: string): Promise<Record<string, unknown>> {
    return this.#call("DELETE", `/v1/sessions/${encodeURIComponent(id)}`);
  }

  /** Revokes all of an agent's sessions; resolves to how many. */
  async revokeAgent(agent: string): Promise<number> {
    let total = 0;
    for (;;) {
      const answer = await this.#call<{ revoked: number; more?: boolean }>("DELETE", "/v1/sessions", undefined, { agent });
      total += answer.revoked;
      if (!answer.more) return total;
    }
  }

  audit(id: string): Promise<Trail> {
    return this.#call("GET", `/v1/sessions/${encodeURIComponent(id)}/audit`);
  }

  async approvals(): Promise<Record<string, unknown>[]> {
    return (await this.#call<{ approvals: Record<string, unknown>[] }>("GET", "/v1/approvals")).approvals;
  }

  approval(id: string): Promise<Record<string, unknown>> {
    return this.#call("GET", `/v1/approvals/${encodeURIComponent(id)}`);
  }

  approve(id: string, approver: string): Promise<Record<string, unknown>> {
    return this.#call("POST", `/v1/approvals/${encodeURIComponent(id)}/approve`, { approver });
  }

  deny(id: string, approver: string): Promise<Record<string, unknown>> {
    return this.#call("POST", `/v1/approvals/${encodeURIComponent(id)}/deny`, { approver });
  }
}

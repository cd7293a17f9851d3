// The "do it yourself" baseline: the least a Worker can do to put a
// credential on a sandbox's request. It forwards the request to the origin
// (same method, path, query, headers, body), overwrites one header with the
// credential, and returns the origin's response as is, streamed. No token
// check, no policy, no header allowlist, no redaction, no audit record.
//
// Bindings: ORIGIN (e.g. "http://127.0.0.1:8788"), TOKEN (the credential).

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const upstream = new Request(env.ORIGIN + url.pathname + url.search, request);
    upstream.headers.set("authorization", `Bearer ${env.TOKEN}`);
    return fetch(upstream);
  },
};

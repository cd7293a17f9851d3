// A private service that is only reachable through a service binding
// (PRIVATE_ORIGIN in the Airlock worker). It echoes what it receives as JSON
// and keeps a per-isolate record of the requests it saw.
//
//   GET /__hits  -> {"count": n, "hits": [...]}   (not recorded itself)
//
// Through Airlock the sandbox's path is forwarded as-is, so tests read the
// hits by calling this worker directly (Miniflare's getWorker()).

let hitCount = 0;
const hits = [];

function headersObject(headers) {
  const out = {};
  for (const [name, value] of headers) out[name] = value;
  return out;
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (request.method === "GET" && url.pathname === "/__hits") {
      return Response.json({ count: hitCount, hits });
    }
    const body = request.body ? await request.text() : "";
    const record = {
      method: request.method,
      path: url.pathname,
      query: url.search.startsWith("?") ? url.search.slice(1) : url.search,
      headers: headersObject(request.headers),
      body,
    };
    hitCount += 1;
    hits.push(record);
    if (hits.length > 1000) hits.shift();
    return Response.json({ service: "airlock-demo-private", ...record });
  },
};

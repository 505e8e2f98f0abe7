// Baseline for the cache-hit benchmark: the least a JavaScript worker can do
// to serve a hit from the Cache API. Same body size as the Rust worker's hit.
// With LOG = "json" (wrangler.baseline-log.toml) it also writes one JSON line
// per request of the shape and size of Cachefront's request log, so the
// runtime's own cost of a console line is measured apart from ours.
export default {
  async fetch(request, env) {
    const started = Date.now();
    const cache = caches.default;
    const key = new Request(request.url);
    let response = await cache.match(key);
    if (!response) {
      response = new Response('x'.repeat(2048), {
        headers: { 'content-type': 'text/plain', 'cache-control': 'public, max-age=600' },
      });
      await cache.put(key, response.clone());
    }
    if (env.LOG === 'json') {
      const url = new URL(request.url);
      console.log(JSON.stringify({
        method: request.method,
        path: url.pathname,
        status: response.status,
        cache: 'hit',
        cache_status: 'cachefront; hit; ttl=588',
        tier: 'edge',
        edge_ms: Date.now() - started,
      }));
    }
    return response;
  },
};

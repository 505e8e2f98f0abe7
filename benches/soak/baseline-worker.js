// The minimal JavaScript worker the soak compares memory against: a cache in
// front of one origin over caches.default, nothing else (no pipeline, no
// policy, no logs). Same origin and same load as the Cachefront worker.
export default {
  async fetch(request, env, ctx) {
    const cache = caches.default;
    const hit = await cache.match(request);
    if (hit) return hit;
    const url = new URL(request.url);
    const response = await fetch(`${env.ORIGIN}${url.pathname}${url.search}`);
    if (response.status === 200) ctx.waitUntil(cache.put(request, response.clone()));
    return response;
  },
};

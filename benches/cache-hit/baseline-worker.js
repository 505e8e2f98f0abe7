// Baseline for the cache-hit benchmark: the least a JavaScript worker can do
// to serve a hit from the Cache API. Same body size as the Rust worker's hit.
export default {
  async fetch(request) {
    const cache = caches.default;
    const key = new Request(request.url);
    let response = await cache.match(key);
    if (!response) {
      response = new Response('x'.repeat(2048), {
        headers: { 'content-type': 'text/plain', 'cache-control': 'public, max-age=600' },
      });
      await cache.put(key, response.clone());
    }
    return response;
  },
};

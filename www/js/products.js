/*
 * Cachefront Outfitters — product catalogue data.
 *
 * Shared by app.js (cart) and catalog.js (listing filter/sort). Image URLs
 * deliberately live in the HTML, not here, so the asset build step can
 * fingerprint them.
 */
(function () {
  "use strict";

  const products = [
    {
      slug: "trail-backpack",
      name: "Ridgeline 38L Trail Backpack",
      category: "packs",
      price: 149.0,
      rating: 4.8,
      added: "2026-03-02",
    },
    {
      slug: "alpine-tent",
      name: "Alpine Two-Person Tent",
      category: "shelter",
      price: 389.0,
      rating: 4.7,
      added: "2025-11-18",
    },
    {
      slug: "camp-stove",
      name: "Ember Compact Camp Stove",
      category: "cooking",
      price: 79.0,
      rating: 4.6,
      added: "2026-05-09",
    },
    {
      slug: "summit-headlamp",
      name: "Summit 400 Headlamp",
      category: "lighting",
      price: 45.0,
      rating: 4.5,
      added: "2026-08-21",
    },
    {
      slug: "down-sleeping-bag",
      name: "Drift −5 °C Down Sleeping Bag",
      category: "sleep",
      price: 299.0,
      rating: 4.9,
      added: "2025-09-30",
    },
    {
      slug: "peak-water-filter",
      name: "Clearbrook Filter Bottle",
      category: "hydration",
      price: 39.0,
      rating: 4.4,
      added: "2026-06-14",
    },
  ];

  window.CachefrontProducts = Object.freeze({
    all: products,
    bySlug(slug) {
      return products.find((p) => p.slug === slug) || null;
    },
  });
})();

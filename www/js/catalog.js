/*
 * Cachefront Outfitters — catalogue filter and sort.
 *
 * Progressive enhancement for /products/: the product cards are in the
 * static HTML; this script reads the product data from products.js and
 * shows, hides and reorders the existing cards. It does nothing on pages
 * without a [data-catalog] element.
 */
(function () {
  "use strict";

  const SORTERS = {
    featured: (a, b) => a.index - b.index,
    "price-asc": (a, b) => a.product.price - b.product.price || a.index - b.index,
    "price-desc": (a, b) => b.product.price - a.product.price || a.index - b.index,
    rating: (a, b) => b.product.rating - a.product.rating || a.index - b.index,
    newest: (a, b) => b.product.added.localeCompare(a.product.added) || a.index - b.index,
    name: (a, b) => a.product.name.localeCompare(b.product.name),
  };

  function init() {
    const root = document.querySelector("[data-catalog]");
    const catalogue = window.CachefrontProducts;
    if (!root || !catalogue) return;

    const grid = root.querySelector("[data-catalog-grid]");
    const search = root.querySelector("[data-filter-search]");
    const category = root.querySelector("[data-filter-category]");
    const maxPrice = root.querySelector("[data-filter-price]");
    const sort = root.querySelector("[data-sort]");
    const count = root.querySelector("[data-result-count]");
    const empty = root.querySelector("[data-catalog-empty]");
    if (!grid) return;

    // Pair every card with its product record; ignore cards without data.
    const items = Array.from(grid.querySelectorAll("[data-product]"))
      .map((card, index) => ({ card, index, product: catalogue.bySlug(card.dataset.product) }))
      .filter((item) => item.product !== null);

    // Restore state from the query string, e.g. ?category=shelter&sort=price-asc
    const params = new URLSearchParams(window.location.search);
    setIfValid(search, params.get("q"));
    setIfValid(category, params.get("category"));
    setIfValid(maxPrice, params.get("max"));
    setIfValid(sort, params.get("sort"));

    function apply() {
      const query = search ? search.value.trim().toLowerCase() : "";
      const cat = category ? category.value : "all";
      const max = maxPrice && maxPrice.value !== "any" ? Number(maxPrice.value) : Infinity;
      const sorter = SORTERS[sort ? sort.value : "featured"] || SORTERS.featured;

      let visible = 0;
      items
        .slice()
        .sort(sorter)
        .forEach((item) => {
          const { product, card } = item;
          const matches =
            (cat === "all" || product.category === cat) &&
            product.price <= max &&
            (query === "" || `${product.name} ${product.category}`.toLowerCase().includes(query));
          card.hidden = !matches;
          if (matches) visible += 1;
          grid.appendChild(card); // re-append in sorted order
        });

      if (count) {
        count.textContent = `${visible} of ${items.length} products`;
      }
      if (empty) {
        empty.hidden = visible !== 0;
      }
      syncUrl();
    }

    function syncUrl() {
      const next = new URLSearchParams();
      if (search && search.value.trim()) next.set("q", search.value.trim());
      if (category && category.value !== "all") next.set("category", category.value);
      if (maxPrice && maxPrice.value !== "any") next.set("max", maxPrice.value);
      if (sort && sort.value !== "featured") next.set("sort", sort.value);
      const qs = next.toString();
      const url = window.location.pathname + (qs ? `?${qs}` : "");
      try {
        window.history.replaceState(null, "", url);
      } catch (_err) {
        /* history unavailable (e.g. sandboxed frame): filtering still works */
      }
    }

    [search, category, maxPrice, sort].forEach((control) => {
      if (control) {
        control.addEventListener("input", apply);
        control.addEventListener("change", apply);
      }
    });

    const form = root.querySelector("form");
    if (form) {
      form.addEventListener("submit", (event) => event.preventDefault());
      form.addEventListener("reset", () => window.setTimeout(apply, 0));
    }

    apply();
  }

  // Assign a value only if the control accepts it (select options, etc.).
  function setIfValid(control, value) {
    if (!control || value === null) return;
    if (control instanceof HTMLSelectElement) {
      if (Array.from(control.options).some((o) => o.value === value)) control.value = value;
    } else {
      control.value = value;
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();

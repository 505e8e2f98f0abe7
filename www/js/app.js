/*
 * Cachefront Outfitters — site-wide behaviour.
 *
 * - Cart stored in localStorage under "cachefront.cart" as
 *   { "<slug>": <quantity>, ... }.
 * - Header badge ([data-cart-count]) kept in sync on every page, including
 *   across tabs via the "storage" event.
 * - "Add to cart" buttons: any element with [data-add-to-cart="<slug>"].
 * - Cart page: renders into [data-cart-root] when present.
 *
 * Every lookup is guarded, so the script is safe on pages that lack any of
 * these elements. No console output.
 */
(function () {
  "use strict";

  const STORAGE_KEY = "cachefront.cart";
  const FREE_SHIPPING_OVER = 150;
  const SHIPPING_FLAT = 9.5;

  const catalogue = window.CachefrontProducts || { all: [], bySlug: () => null };
  const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });

  /* ---- Storage ---------------------------------------------------- */

  // In-memory fallback when localStorage is unavailable (private mode, etc.).
  let memoryCart = {};

  function readCart() {
    try {
      const raw = window.localStorage.getItem(STORAGE_KEY);
      const parsed = raw ? JSON.parse(raw) : {};
      return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? sanitize(parsed) : {};
    } catch (_err) {
      return { ...memoryCart };
    }
  }

  function writeCart(cart) {
    memoryCart = sanitize(cart);
    try {
      window.localStorage.setItem(STORAGE_KEY, JSON.stringify(memoryCart));
    } catch (_err) {
      /* storage unavailable: keep the in-memory copy */
    }
    refresh();
  }

  // Drop unknown products and non-positive quantities.
  function sanitize(cart) {
    const clean = {};
    for (const [slug, qty] of Object.entries(cart)) {
      const n = Math.floor(Number(qty));
      if (catalogue.bySlug(slug) && n > 0) {
        clean[slug] = Math.min(n, 99);
      }
    }
    return clean;
  }

  function addItem(slug, qty = 1) {
    const cart = readCart();
    cart[slug] = (cart[slug] || 0) + qty;
    writeCart(cart);
  }

  function setQuantity(slug, qty) {
    const cart = readCart();
    if (qty > 0) {
      cart[slug] = qty;
    } else {
      delete cart[slug];
    }
    writeCart(cart);
  }

  function itemCount(cart) {
    return Object.values(cart).reduce((sum, n) => sum + n, 0);
  }

  /* ---- Header badge ----------------------------------------------- */

  function updateBadges(cart) {
    const count = itemCount(cart);
    document.querySelectorAll("[data-cart-count]").forEach((badge) => {
      badge.textContent = String(count);
      badge.dataset.empty = count === 0 ? "true" : "false";
    });
    document.querySelectorAll("[data-cart-label]").forEach((label) => {
      label.setAttribute("aria-label", `Cart, ${count} item${count === 1 ? "" : "s"}`);
    });
  }

  /* ---- Toast ------------------------------------------------------ */

  let toastTimer = 0;

  function toast(message) {
    let el = document.querySelector(".toast");
    if (!el) {
      el = document.createElement("div");
      el.className = "toast";
      el.setAttribute("role", "status");
      el.setAttribute("aria-live", "polite");
      document.body.appendChild(el);
    }
    el.textContent = message;
    // Force a frame so the transition runs when the toast is first created.
    window.requestAnimationFrame(() => {
      el.dataset.visible = "true";
    });
    window.clearTimeout(toastTimer);
    toastTimer = window.setTimeout(() => {
      el.dataset.visible = "false";
    }, 2200);
  }

  /* ---- Add-to-cart buttons ---------------------------------------- */

  function bindAddButtons() {
    document.addEventListener("click", (event) => {
      const button = event.target instanceof Element ? event.target.closest("[data-add-to-cart]") : null;
      if (!button) return;
      event.preventDefault();
      const slug = button.getAttribute("data-add-to-cart");
      const product = catalogue.bySlug(slug);
      if (!product) return;

      const qtyInput = document.querySelector(`[data-qty-for="${slug}"]`);
      const qty = qtyInput ? Math.max(1, Math.min(99, parseInt(qtyInput.value, 10) || 1)) : 1;
      addItem(slug, qty);

      button.dataset.added = "true";
      const original = button.dataset.label || button.textContent;
      button.dataset.label = original;
      button.textContent = "Added ✓";
      window.setTimeout(() => {
        button.dataset.added = "false";
        button.textContent = original;
      }, 1500);
      toast(`${qty} × ${product.name} added to your cart`);
    });
  }

  /* ---- Cart page -------------------------------------------------- */

  // Thumbnails come from a <template> in cart.html so their URLs are
  // visible to (and fingerprinted by) the asset build.
  function thumbnailFor(slug) {
    const template = document.getElementById("cart-thumbnails");
    const source = template && template.content.querySelector(`[data-thumb="${slug}"]`);
    if (source) {
      // The build wraps images it encoded in a <picture> (AVIF/WebP
      // sources): clone that, so the cart gets the small formats too.
      const picture = source.parentElement;
      return (picture && picture.tagName === "PICTURE" ? picture : source).cloneNode(true);
    }
    const placeholder = document.createElement("div");
    placeholder.className = "thumb-placeholder";
    return placeholder;
  }

  function renderCart(cart) {
    const root = document.querySelector("[data-cart-root]");
    if (!root) return;

    const list = root.querySelector("[data-cart-items]");
    const empty = root.querySelector("[data-cart-empty]");
    const summary = root.querySelector("[data-cart-summary]");
    if (!list) return;

    list.replaceChildren();
    const entries = Object.entries(cart);
    let subtotal = 0;

    for (const [slug, qty] of entries) {
      const product = catalogue.bySlug(slug);
      if (!product) continue;
      const lineTotal = product.price * qty;
      subtotal += lineTotal;

      const item = document.createElement("li");
      item.className = "cart-item";

      const thumb = thumbnailFor(slug);

      const info = document.createElement("div");
      const title = document.createElement("h3");
      const link = document.createElement("a");
      link.href = `/products/${slug}.html`;
      link.textContent = product.name;
      title.appendChild(link);

      const unit = document.createElement("p");
      unit.className = "rating";
      unit.textContent = `${money.format(product.price)} each`;

      const controls = document.createElement("div");
      controls.className = "qty";
      const minus = makeButton("−", `Decrease quantity of ${product.name}`, () => setQuantity(slug, qty - 1));
      const count = document.createElement("span");
      count.textContent = String(qty);
      count.setAttribute("aria-label", `Quantity ${qty}`);
      const plus = makeButton("+", `Increase quantity of ${product.name}`, () => setQuantity(slug, Math.min(99, qty + 1)));
      const remove = makeButton("Remove", `Remove ${product.name} from cart`, () => setQuantity(slug, 0));
      remove.className = "link-button";
      controls.append(minus, count, plus, remove);

      info.append(title, unit, controls);

      const total = document.createElement("p");
      total.className = "price line-total";
      total.textContent = money.format(lineTotal);

      item.append(thumb, info, total);
      list.appendChild(item);
    }

    const isEmpty = entries.length === 0;
    if (empty) empty.hidden = !isEmpty;
    if (summary) {
      summary.hidden = isEmpty;
      const shipping = subtotal >= FREE_SHIPPING_OVER || isEmpty ? 0 : SHIPPING_FLAT;
      setText(summary, "[data-subtotal]", money.format(subtotal));
      setText(summary, "[data-shipping]", shipping === 0 ? "Free" : money.format(shipping));
      setText(summary, "[data-total]", money.format(subtotal + shipping));
    }
  }

  function makeButton(text, label, onClick) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = text;
    button.setAttribute("aria-label", label);
    button.addEventListener("click", onClick);
    return button;
  }

  function setText(scope, selector, text) {
    const el = scope.querySelector(selector);
    if (el) el.textContent = text;
  }

  function bindCartPage() {
    const clear = document.querySelector("[data-cart-clear]");
    if (clear) {
      clear.addEventListener("click", () => writeCart({}));
    }
    const checkout = document.querySelector("[data-checkout]");
    if (checkout) {
      checkout.addEventListener("click", () => {
        toast("This is a demo shop — no orders are placed.");
      });
    }
  }

  /* ---- Wiring ----------------------------------------------------- */

  function refresh() {
    const cart = readCart();
    updateBadges(cart);
    renderCart(cart);
  }

  function init() {
    memoryCart = readCart();
    bindAddButtons();
    bindCartPage();
    refresh();
    window.addEventListener("storage", (event) => {
      if (event.key === STORAGE_KEY) refresh();
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();

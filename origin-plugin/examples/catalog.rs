//! Catalogue origin: the backend behind the Cachefront demo site, with every layer on.
//!
//! ```text
//! DATABASE_URL=postgres://… cargo run -p cachefront-origin --example catalog
//! ```
//!
//! Environment:
//! - `DATABASE_URL` (required): PostgreSQL; the schema is created and seeded on first start.
//! - `BIND` (default `127.0.0.1:3000`): the public listener the edge forwards to — the
//!   catalogue pages and status-only probes, nothing else.
//! - `ADMIN_BIND` (default `127.0.0.1:9091`): the admin listener — `/metrics`,
//!   `/metrics.json`, `/readyz` with check names and errors, `/debug/*`.
//! - `ADMIN_TOKEN` (optional, ≥ 32 characters): required as a bearer token on every
//!   admin request (set it when `ADMIN_BIND` is not loopback).
//! - `CACHEFRONT_EDGE_URL` + `CACHEFRONT_PURGE_TOKEN`: purge the edge when a product row
//!   changes — through the write → purge loop, so any write counts (the price endpoint,
//!   `psql`, a migration), not only the app's own.
//! - `CATALOG_ADMIN_TOKEN` (≥ 32 characters): enables `POST /api/products/{id}/price`
//!   (bearer token).
//! - `CACHEFRONT_DEBUG_TOKEN` (≥ 32 characters): enables `/debug/requests` and
//!   `/debug/pprof/profile` on the admin listener.
//! - `ASSET_MANIFEST` (+ `ASSET_BASE`, default `/`): fingerprinted stylesheet and image URLs.
//! - `SLOW_REQUEST_MS` (500), `SLOW_QUERY_MS` (100), `SERVER_TIMING_SAMPLE_RATE` (1.0),
//!   `SHUTDOWN_DRAIN_MS` (0), `SHUTDOWN_DEADLINE_MS` (30000).
//! - `CATALOG_LAYERS=off`: the same app with no plugin layers and no query capture in the
//!   tracing subscriber (the benchmark's baseline). `CATALOG_LAYERS=passthrough`: as `off`,
//!   plus six layers that pass every answer through untouched, added like the builder adds
//!   its own (what the stack's structure costs, for `benches/origin/callgrind.sh`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cachefront_origin::admin::{AdminConfig, AdminRouter, BearerToken};
use cachefront_origin::assets::{asset_url, AssetManifest};
use cachefront_origin::cache_tags::{CacheTagLayer, CacheTags};
use cachefront_origin::db::{CapturedPool, DbCapture, DbCaptureConfig};
use cachefront_origin::health::{FnCheck, GracefulShutdown, Health, PostgresCheck};
use cachefront_origin::metrics::Metrics;
use cachefront_origin::profiling::{Profiler, ProfilingConfig};
use cachefront_origin::purge::{EdgePurge, PurgeClient, PurgeConfig};
use cachefront_origin::purge_on_write::{
    Change, ChangeTags, PurgeOnWrite, PurgeOnWriteHandle, TableName, WatchedTable,
};
use cachefront_origin::{Cachefront, Error};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

/// Edge caching policy of catalogue pages: one minute at the edge, purged by tag on change.
const PAGE_CACHE_CONTROL: &str = "public, max-age=0, s-maxage=60, stale-while-revalidate=30";

/// Tag of the index page (every product is listed there).
const TAG_PRODUCTS: &str = "products";
/// Tag every product page and JSON carries besides `product:{id}`: purged when a change
/// cannot be traced to one row (TRUNCATE, the catch-up after a lost listener connection).
const TAG_PRODUCT_PAGES: &str = "product-pages";

fn product_tag(id: impl std::fmt::Display) -> String {
    format!("product:{id}")
}

/// How a change to `products` maps to the tags the pages carry.
struct CatalogTags;

impl ChangeTags for CatalogTags {
    fn row_tags(&self, change: &Change) -> Vec<String> {
        change
            .keys()
            .filter_map(|k| k.get("id"))
            .map(product_tag)
            .chain([TAG_PRODUCTS.to_owned()])
            .collect()
    }
    fn table_tags(&self, _table: &TableName) -> Vec<String> {
        vec![TAG_PRODUCTS.to_owned(), TAG_PRODUCT_PAGES.to_owned()]
    }
}

#[derive(Clone)]
struct AppState {
    /// The handlers' statements, recorded by the query capture as they run (sqlx does not
    /// build its statement event for them). Derefs to the `PgPool`.
    pool: CapturedPool,
    /// The edge is purged by the write → purge loop on every product change.
    purges_edge: bool,
    admin_token: Option<BearerToken>,
    stylesheet: String,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
struct Product {
    id: i64,
    sku: String,
    name: String,
    category: String,
    description: String,
    price_cents: i32,
    stock: i32,
    image: Option<String>,
}

#[tokio::main]
async fn main() {
    // The handlers' statements are recorded by `CapturedPool` (below); the capture's layer
    // in the subscriber sees the rest (schema set-up, readiness check, write → purge loop)
    // through sqlx's statement events: `init_logging` installs it, with the log output
    // filtered by RUST_LOG.
    let metrics = Metrics::new();
    let capture = match env_or("SLOW_QUERY_MS", 100u64) {
        Ok(ms) => DbCapture::with_metrics(
            DbCaptureConfig {
                slow_query_threshold: Duration::from_millis(ms),
                ..DbCaptureConfig::default()
            },
            &metrics,
        ),
        Err(e) => {
            eprintln!("catalog: {e}");
            std::process::exit(1);
        }
    };
    let layers_on = layers() == Layers::On;
    let logging = if layers_on {
        capture.init_logging()
    } else {
        // The benchmark's baseline: no capture layer in the subscriber either.
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .try_init()
            .map_err(|e| Error::Config(format!("tracing subscriber: {e}")))
    };
    if let Err(e) = logging {
        eprintln!("catalog: {e}");
        std::process::exit(1);
    }
    if let Err(e) = run(metrics, capture).await {
        eprintln!("catalog: {e}");
        std::process::exit(1);
    }
}

/// `CATALOG_LAYERS`: the plugin's layers (default), none, or the benchmark's pass-through
/// stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layers {
    On,
    Off,
    Passthrough,
}

fn layers() -> Layers {
    match std::env::var("CATALOG_LAYERS").as_deref() {
        Ok("off") => Layers::Off,
        Ok("passthrough") => Layers::Passthrough,
        _ => Layers::On,
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, Error> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| Error::Config(format!("{name}={v:?} is not valid"))),
        Err(_) => Ok(default),
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

async fn run(metrics: Metrics, capture: DbCapture) -> Result<(), Error> {
    let database_url = non_empty_env("DATABASE_URL").ok_or_else(|| {
        Error::Config("DATABASE_URL is required (postgres://user@host:port/db)".to_owned())
    })?;
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let layers = layers();
    let layers_on = layers == Layers::On;
    let admin_config = AdminConfig::from_env()?;
    let admin_token = BearerToken::from_env("CATALOG_ADMIN_TOKEN")?;
    let debug_token = BearerToken::from_env("CACHEFRONT_DEBUG_TOKEN")?;

    let pool = PgPoolOptions::new()
        .max_connections(env_or("DATABASE_MAX_CONNECTIONS", 10u32)?)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy(&database_url)?;

    if let Some(path) = non_empty_env("ASSET_MANIFEST") {
        let base = std::env::var("ASSET_BASE").unwrap_or_else(|_| "/".to_owned());
        AssetManifest::load(&path, &base)?.install()?;
    }
    // The demo site's stylesheet, fingerprinted when a manifest is installed.
    let stylesheet = asset_url("css/site.css");

    let purge = match (
        non_empty_env("CACHEFRONT_EDGE_URL"),
        non_empty_env("CACHEFRONT_PURGE_TOKEN"),
    ) {
        (Some(url), Some(token)) => Some(PurgeClient::with_metrics(
            EdgePurge::new(&url, token),
            PurgeConfig::default(),
            &metrics,
        )),
        _ => None,
    };

    // Schema and seed, then (with a purge client) the write → purge loop on `products`,
    // run in the background, retried until PostgreSQL answers; `/readyz` stays 503
    // ("starting") until they have succeeded once, so a ready catalogue purges every write.
    let schema_ready = Arc::new(AtomicBool::new(false));
    let purge_loop: Arc<Mutex<Option<PurgeOnWriteHandle>>> = Arc::default();
    {
        let pool = pool.clone();
        let ready = schema_ready.clone();
        let purge = purge.clone();
        let purge_loop = purge_loop.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            loop {
                let started = match ensure_schema(&pool).await {
                    Ok(()) => match &purge {
                        Some(purge) => PurgeOnWrite::new(purge.clone())
                            .table(WatchedTable::new("products"))
                            .tags(CatalogTags)
                            .metrics(&metrics)
                            .start(&pool)
                            .await
                            .map(Some),
                        None => Ok(None),
                    },
                    Err(e) => Err(Error::from(e)),
                };
                match started {
                    Ok(handle) => {
                        *purge_loop.lock().unwrap_or_else(|e| e.into_inner()) = handle;
                        ready.store(true, Ordering::Release);
                        tracing::info!(purge_on_write = purge.is_some(), "catalogue schema ready");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "catalogue schema not ready; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    metrics.observe_pg_pool("catalog", pool.clone());
    capture.watch_pg_pool(pool.clone());
    let health = Health::builder()
        .metrics(&metrics)
        .startup_check(FnCheck::new("schema", move || {
            let ready = schema_ready.load(Ordering::Acquire);
            async move {
                if ready {
                    Ok(())
                } else {
                    Err("schema not created yet".to_owned())
                }
            }
        }))
        .readiness_check(PostgresCheck::new(pool.clone()))
        .check_timeout(Duration::from_secs(2))
        .build();
    let profiler = Profiler::with_metrics(
        ProfilingConfig {
            slow_threshold: Duration::from_millis(env_or("SLOW_REQUEST_MS", 500u64)?),
            sample_rate: env_or("SERVER_TIMING_SAMPLE_RATE", 1.0f64)?,
            debug_token,
            ..ProfilingConfig::default()
        },
        &metrics,
    );
    let state = AppState {
        pool: if layers_on {
            CapturedPool::new(pool, &capture)
        } else {
            CapturedPool::without_capture(pool)
        },
        purges_edge: purge.is_some(),
        admin_token,
        stylesheet,
    };
    let pages = Router::new()
        .route("/", get(index))
        .route("/products/{id}", get(product_page))
        .route("/api/products/{id}", get(product_json))
        .route("/api/products/{id}/similar", get(similar_json))
        .route("/api/products/{id}/price", post(set_price))
        .fallback(not_found)
        .with_state(state);

    // The public app is what the edge forwards to: pages and status-only probes. The
    // operator routes (metrics, detailed readiness, debug) live on the admin listener.
    let app = if layers_on {
        // Every layer in its right order, in one `layer` call (each `Router::layer` boxes
        // every route's service and future once more per request); probes uncounted.
        Cachefront::builder()
            .metrics(&metrics)
            .profiling(&profiler)
            .db_capture(&capture)
            .cache_tags(CacheTagLayer::new().metrics(&metrics))
            .apply(pages.merge(health.router()))
    } else if layers == Layers::Passthrough {
        // As many layers as the builder adds, each passing the answer through untouched:
        // what the stack's structure alone costs (docs/origin-plugin.md, eighth round).
        fn same(response: Response) -> Response {
            response
        }
        pages.merge(health.router()).layer(
            tower::ServiceBuilder::new()
                .map_response(same)
                .map_response(same)
                .map_response(same)
                .map_response(same)
                .map_response(same)
                .map_response(same),
        )
    } else {
        pages.merge(health.router())
    };
    let admin = AdminRouter::new()
        .metrics(&metrics)
        .health(&health)
        .profiler(&profiler)
        .db_capture(&capture)
        .token(admin_config.token.clone())
        .build();

    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let addr = listener.local_addr()?;
    let admin_listener = tokio::net::TcpListener::bind(admin_config.bind).await?;
    let admin_addr = admin_listener.local_addr()?;
    if let Some(warning) = admin_config.exposure_warning() {
        tracing::warn!("{warning}");
    }
    // Tests and scripts read these lines to find the ports when the binds end in :0.
    println!("catalog listening on http://{addr}");
    println!("catalog admin on http://{admin_addr}");
    tracing::info!(%addr, %admin_addr, layers = layers_on, "catalog listening");
    GracefulShutdown::new(&health)
        .drain_delay(Duration::from_millis(env_or("SHUTDOWN_DRAIN_MS", 0u64)?))
        .deadline(Duration::from_millis(env_or(
            "SHUTDOWN_DEADLINE_MS",
            30_000u64,
        )?))
        .serve_with_admin(listener, app, admin_listener, admin)
        .await?;
    let running_loop = purge_loop.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(handle) = running_loop {
        handle.shutdown().await;
    }
    if let Some(purge) = &purge {
        // Purges queued by the last writes still reach the edge before we exit.
        if tokio::time::timeout(Duration::from_secs(5), purge.flush())
            .await
            .is_err()
        {
            tracing::warn!("purge queue not drained within 5 s");
        }
    }
    tracing::info!("catalog stopped");
    Ok(())
}

async fn ensure_schema(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Several instances may start at once: one creates and seeds, the others wait.
    sqlx::query("SELECT pg_advisory_xact_lock(7343001)")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS products (
            id          BIGSERIAL PRIMARY KEY,
            sku         TEXT NOT NULL UNIQUE,
            name        TEXT NOT NULL,
            category    TEXT NOT NULL,
            description TEXT NOT NULL,
            price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
            stock       INTEGER NOT NULL DEFAULT 0 CHECK (stock >= 0),
            image       TEXT,
            updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .execute(&mut *tx)
    .await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM products")
        .fetch_one(&mut *tx)
        .await?;
    if count == 0 {
        for (sku, name, category, description, price_cents, stock, image) in SEED {
            sqlx::query(
                "INSERT INTO products (sku, name, category, description, price_cents, stock, image)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (sku) DO NOTHING",
            )
            .bind(sku)
            .bind(name)
            .bind(category)
            .bind(description)
            .bind(price_cents)
            .bind(stock)
            .bind(image)
            .execute(&mut *tx)
            .await?;
        }
        tracing::info!(products = SEED.len(), "catalogue seeded");
    }
    tx.commit().await
}

/// (sku, name, category, description, price in cents, stock, image slug under /images/products/).
type SeedRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    i32,
    i32,
    Option<&'static str>,
);

const SEED: &[SeedRow] = &[
    ("TNT-001", "Alpine Two-Person Tent", "Shelter", "A freestanding three-season tent: two doors, two vestibules and a 1.9 kg trail weight. Pitches fly-first in the rain.", 38900, 14, Some("alpine-tent")),
    ("STV-002", "Ember Compact Camp Stove", "Cooking", "Boils a litre in three and a half minutes, folds to the size of a fist and fits inside a 750 ml pot.", 7900, 41, Some("camp-stove")),
    ("BAG-003", "Drift −5 °C Down Sleeping Bag", "Sleep", "800-fill responsibly sourced down in a mummy cut, with a draft collar and a two-way zip.", 29900, 9, Some("down-sleeping-bag")),
    ("WTR-004", "Clearbrook Filter Bottle", "Water", "A 0.1 micron hollow-fibre filter in a squeeze bottle: drink straight from streams.", 3900, 120, Some("peak-water-filter")),
    ("LGT-005", "Summit 400 Headlamp", "Lighting", "400 lumens, a red night mode and a USB-C battery that lasts a long weekend on low.", 4500, 66, Some("summit-headlamp")),
    ("PCK-006", "Ridgeline 38L Trail Backpack", "Packs", "A ventilated back panel, hip-belt pockets and a roll-top that swallows a week of food.", 14900, 23, Some("trail-backpack")),
    ("POL-007", "Trailhead Trekking Poles", "Hiking", "Carbon shafts, cork grips and flick-locks you can work with gloves on. 470 g the pair.", 8900, 31, None),
    ("MUG-008", "Canyon Insulated Mug", "Cooking", "Double-wall steel keeps coffee hot through a slow sunrise; the lid clicks shut.", 2900, 85, None),
    ("JKT-009", "Switchback Rain Shell", "Clothing", "A three-layer waterproof shell with pit zips and a helmet-compatible hood.", 21900, 0, None),
    ("CHR-010", "Basecamp Camp Chair", "Camp", "Packs to the size of a water bottle and holds 120 kg on uneven ground.", 6900, 17, None),
    ("SCK-011", "Granite Merino Socks, 2-pack", "Clothing", "Cushioned merino blend that stays warm wet and does not smell after day three.", 3400, 140, None),
    ("PAD-012", "Tundra Sleeping Pad", "Sleep", "R-value 4.2, 7 cm thick, with a pump sack that doubles as a dry bag.", 12900, 12, None),
    ("LNT-013", "Firefly Lantern", "Lighting", "A collapsible lantern that lights the whole tent and charges a phone in a pinch.", 3900, 44, None),
    ("DRY-014", "Riverbend Dry Bag 20L", "Packs", "Welded seams and a roll-top closure keep a sleeping bag dry through a capsize.", 3200, 58, None),
];

/// The page shell. It uses the demo site's markup and class names and links its
/// stylesheet (fingerprinted through the manifest), so behind the edge the catalogue looks
/// like the rest of www/; the inline fallback styles (zero specificity, `:where`) keep it
/// readable when the origin is browsed on its own.
fn page(title: &str, stylesheet: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{title} — Cachefront Outfitters</title>\n<meta name=\"theme-color\" content=\"#1d3345\">\n\
<style>{CSS}</style>\n<link rel=\"stylesheet\" href=\"{css}\">\n</head>\n<body>\n\
<header class=\"site-header\"><div class=\"container\"><a class=\"brand\" href=\"/\">Cachefront <span>Outfitters</span></a>\
<nav class=\"site-nav\" aria-label=\"Main\"><ul role=\"list\"><li><a href=\"/\">Catalogue</a></li></ul></nav></div></header>\n\
<main id=\"main\">\n{body}\n</main>\n\
<footer class=\"site-footer\"><div class=\"container\"><p>Small-batch outdoor gear · free returns within 60 days · \
served by the catalogue origin behind the Cachefront edge</p></div></footer>\n</body>\n</html>\n",
        title = escape(title),
        css = escape(stylesheet),
    )
}

const CSS: &str = ":where(*){box-sizing:border-box}:where(body){margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d2430;background:#fbf8f3}\
:where(.container){max-width:72rem;margin:0 auto;padding:0 1.5rem}\
:where(.site-header){background:#1d3345;padding:.9rem 0}:where(.site-header .container){display:flex;justify-content:space-between;align-items:center}\
:where(.site-header a){color:#fff8ec;text-decoration:none}:where(.brand){font:700 1.2rem Georgia,serif}:where(.brand span){color:#f2a541;font:600 .7rem Helvetica,Arial,sans-serif;letter-spacing:.25em;text-transform:uppercase}\
:where(.site-nav ul){list-style:none;margin:0;padding:0}:where(.section){padding:2rem 0}:where(.eyebrow){color:#c8553d;text-transform:uppercase;letter-spacing:.12em;font-size:.8rem;margin:0}\
:where(h1){font:700 2rem Georgia,serif;margin:.2rem 0 1.2rem}\
:where(.product-grid){display:grid;grid-template-columns:repeat(auto-fill,minmax(15rem,1fr));gap:1.4rem;list-style:none;padding:0;margin:0}\
:where(.product-card){background:#fff;border:1px solid #e6dccb;border-radius:.7rem;overflow:hidden;display:flex;flex-direction:column}\
:where(.product-card-body){padding:1rem 1.1rem 1.2rem;display:flex;flex-direction:column;gap:.35rem}:where(.product-card h3){margin:0;font-size:1.05rem}\
:where(.product-card a){color:inherit;text-decoration:none}:where(.product-card-foot){display:flex;justify-content:space-between;align-items:baseline}\
:where(img){max-width:100%;height:auto;display:block;background:#e9eef2}\
:where(.tag){align-self:flex-start;font-size:.75rem;text-transform:uppercase;letter-spacing:.08em;color:#1d3345;background:#e8eef3;border-radius:1rem;padding:.1rem .6rem}\
:where(.price){font-weight:700;font-size:1.1rem}:where(.stock){font-size:.85rem;color:#3f7a4b}:where(.stock.out){color:#b03a2e}\
:where(.product-detail){display:grid;grid-template-columns:repeat(auto-fit,minmax(18rem,1fr));gap:2rem;align-items:start}\
:where(.product-detail figure){margin:0;border-radius:.7rem;overflow:hidden}:where(.product-summary .price){font-size:1.6rem}\
:where(.specs){border-collapse:collapse}:where(.specs th,.specs td){text-align:left;padding:.3rem 1rem .3rem 0;border-bottom:1px solid #e6dccb}\
:where(.breadcrumbs ol){list-style:none;display:flex;gap:.5rem;padding:1rem 0 0;margin:0;font-size:.9rem}:where(.breadcrumbs li+li)::before{content:'›';margin-right:.5rem;color:#8b8f98}\
:where(.site-footer){color:#5c6370;font-size:.85rem;padding:2rem 0;text-align:center}";

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn price(cents: i32) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

/// `<img>` of a product photo, through the asset manifest so the edge serves the
/// fingerprinted file; empty when the product has no photo.
fn image_tag(p: &Product, suffix: &str, width: u32, height: u32) -> String {
    match &p.image {
        Some(slug) => format!(
            "<img src=\"{}\" width=\"{width}\" height=\"{height}\" alt=\"{}\" loading=\"lazy\" decoding=\"async\">",
            escape(&asset_url(&format!("images/products/{slug}{suffix}.png"))),
            escape(&p.name)
        ),
        None => String::new(),
    }
}

fn stock_badge(stock: i32) -> String {
    if stock > 0 {
        format!("<p class=\"stock\">{stock} in stock — ships within one working day.</p>")
    } else {
        "<p class=\"stock out\">Out of stock</p>".to_owned()
    }
}

fn cacheable(tags: CacheTags, body: impl IntoResponse) -> Response {
    (
        [(
            header::CACHE_CONTROL,
            HeaderValue::from_static(PAGE_CACHE_CONTROL),
        )],
        tags,
        body,
    )
        .into_response()
}

fn parse_id(raw: &str) -> Result<i64, Error> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        Error::BadRequest(format!(
            "product id must be a positive integer, got {:?}",
            raw.chars().take(64).collect::<String>()
        ))
    })
}

async fn index(State(state): State<AppState>) -> Result<Response, Error> {
    let products: Vec<Product> = sqlx::query_as("SELECT id, sku, name, category, description, price_cents, stock, image FROM products ORDER BY category, name")
        .fetch_all(&state.pool)
        .await?;
    let mut body = format!(
        "<section class=\"section\" aria-labelledby=\"catalog-title\"><div class=\"container\">\
<p class=\"eyebrow\">The catalogue</p><h1 id=\"catalog-title\">All gear</h1>\
<p class=\"lead\">{} products, live from the catalogue database.</p>\n<ul class=\"product-grid\" role=\"list\">\n",
        products.len()
    );
    for p in &products {
        let _ = writeln!(
            body,
            "<li class=\"product-card\"><a href=\"/products/{id}\" tabindex=\"-1\" aria-hidden=\"true\">{img}</a>\
<div class=\"product-card-body\"><span class=\"tag\">{cat}</span><h3><a href=\"/products/{id}\">{name}</a></h3>\
<div class=\"product-card-foot\"><span class=\"price\">{price}</span></div>{stock}</div></li>",
            img = image_tag(p, "-thumb", 400, 300),
            cat = escape(&p.category),
            id = p.id,
            name = escape(&p.name),
            price = price(p.price_cents),
            stock = stock_badge(p.stock),
        );
    }
    body.push_str("</ul></div></section>");
    Ok(cacheable(
        CacheTags::new([TAG_PRODUCTS]),
        Html(page("Catalogue", &state.stylesheet, &body)),
    ))
}

async fn load_product(state: &AppState, id: i64) -> Result<Product, Error> {
    sqlx::query_as("SELECT id, sku, name, category, description, price_cents, stock, image FROM products WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no product with id {id}")))
}

async fn product_page(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, Error> {
    let id = parse_id(&raw)?;
    let p = load_product(&state, id).await?;
    let figure = match image_tag(&p, "", 800, 600) {
        img if img.is_empty() => String::new(),
        img => format!("<figure>{img}</figure>"),
    };
    let body = format!(
        "<nav class=\"breadcrumbs container\" aria-label=\"Breadcrumb\"><ol role=\"list\"><li><a href=\"/\">All gear</a></li>\
<li aria-current=\"page\">{name}</li></ol></nav>\n\
<article class=\"section\" aria-labelledby=\"product-title\"><div class=\"container product-detail\">{figure}\
<div class=\"product-summary\"><span class=\"tag\">{cat}</span><h1 id=\"product-title\">{name}</h1>\
<p class=\"price\">{price}</p><p class=\"lead\">{desc}</p>{stock}\
<table class=\"specs\"><caption>Details</caption><tbody><tr><th scope=\"row\">SKU</th><td>{sku}</td></tr>\
<tr><th scope=\"row\">Category</th><td>{cat}</td></tr></tbody></table></div></div></article>",
        cat = escape(&p.category),
        name = escape(&p.name),
        desc = escape(&p.description),
        price = price(p.price_cents),
        stock = stock_badge(p.stock),
        sku = escape(&p.sku),
    );
    Ok(cacheable(
        CacheTags::new([product_tag(p.id), TAG_PRODUCT_PAGES.to_owned()]),
        Html(page(&p.name, &state.stylesheet, &body)),
    ))
}

async fn product_json(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, Error> {
    let id = parse_id(&raw)?;
    let p = load_product(&state, id).await?;
    Ok(cacheable(
        CacheTags::new([product_tag(p.id), TAG_PRODUCT_PAGES.to_owned()]),
        Json(p),
    ))
}

/// Six other products, the same category first. Written the naive way on purpose — one query for the
/// ids, then one per product — so the demo shows the N+1 detection end to end: the
/// warning in the log, `cachefront_origin_db_n_plus_one_total`, the dashboard's N+1
/// panel and the `CachefrontOriginNPlusOneSpike` alert. (The fix would be one query with
/// the whole rows in the first query.)
async fn similar_json(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, Error> {
    let id = parse_id(&raw)?;
    let p = load_product(&state, id).await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM products WHERE id <> $1 ORDER BY category = $2 DESC, id LIMIT 6",
    )
    .bind(p.id)
    .bind(&p.category)
    .fetch_all(&state.pool)
    .await?;
    let mut similar = Vec::with_capacity(ids.len());
    for other in ids {
        similar.push(load_product(&state, other).await?);
    }
    Ok(cacheable(
        CacheTags::new([product_tag(p.id), TAG_PRODUCTS.to_owned()]),
        Json(similar),
    ))
}

#[derive(serde::Deserialize)]
struct PriceChange {
    price_cents: i32,
}

/// Change a price. Needs `CATALOG_ADMIN_TOKEN`. The pages that show it are purged by the
/// write → purge loop, like after any other write to `products`.
async fn set_price(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    let Some(token) = &state.admin_token else {
        return Err(Error::NotFound(
            "price changes are disabled (set CATALOG_ADMIN_TOKEN)".to_owned(),
        ));
    };
    token.check(&headers)?;
    let id = parse_id(&raw)?;
    let change: PriceChange = serde_json::from_slice(&body).map_err(|e| {
        Error::BadRequest(format!("body must be {{\"price_cents\": <integer>}}: {e}"))
    })?;
    if change.price_cents < 0 {
        return Err(Error::BadRequest(
            "price_cents must not be negative".to_owned(),
        ));
    }
    let updated: Option<Product> = sqlx::query_as(
        "UPDATE products SET price_cents = $2, updated_at = now() WHERE id = $1
         RETURNING id, sku, name, category, description, price_cents, stock, image",
    )
    .bind(id)
    .bind(change.price_cents)
    .fetch_optional(&state.pool)
    .await?;
    let p = updated.ok_or_else(|| Error::NotFound(format!("no product with id {id}")))?;
    let tags = [product_tag(p.id), TAG_PRODUCTS.to_owned()];
    let purge = if state.purges_edge {
        serde_json::json!({ "tags": tags, "by": "database trigger" })
    } else {
        serde_json::json!({ "tags": tags, "note": "no purge client configured" })
    };
    let mut res = (
        StatusCode::OK,
        Json(serde_json::json!({ "product": p, "purge": purge })),
    )
        .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

async fn not_found() -> Error {
    Error::NotFound("no such page".to_owned())
}

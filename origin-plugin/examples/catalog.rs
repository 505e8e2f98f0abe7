//! Catalogue origin: the backend behind the Cachefront demo site, with every layer on.
//!
//! ```text
//! DATABASE_URL=postgres://… cargo run -p cachefront-origin --example catalog
//! ```
//!
//! Environment:
//! - `DATABASE_URL` (required): PostgreSQL; the schema is created and seeded on first start.
//! - `BIND` (default `127.0.0.1:3000`).
//! - `CACHEFRONT_EDGE_URL` + `CACHEFRONT_PURGE_TOKEN`: purge the edge when a price changes.
//! - `CATALOG_ADMIN_TOKEN`: enables `POST /api/products/{id}/price` (bearer token).
//! - `CACHEFRONT_DEBUG_TOKEN`: enables `/debug/requests` and `/debug/pprof/profile`.
//! - `ASSET_MANIFEST` (+ `ASSET_BASE`, default `/`): fingerprinted stylesheet link.
//! - `SLOW_REQUEST_MS` (500), `SERVER_TIMING_SAMPLE_RATE` (1.0),
//!   `SHUTDOWN_DRAIN_MS` (0), `SHUTDOWN_DEADLINE_MS` (30000).
//! - `CATALOG_LAYERS=off`: the same app with no plugin layers (for the benchmark).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cachefront_origin::assets::{asset_url, AssetManifest};
use cachefront_origin::cache_tags::{CacheTagLayer, CacheTags};
use cachefront_origin::health::{FnCheck, GracefulShutdown, Health, PostgresCheck};
use cachefront_origin::metrics::Metrics;
use cachefront_origin::profiling::{Profiler, ProfilingConfig, RequestProfile};
use cachefront_origin::purge::{EdgePurge, PurgeClient, PurgeConfig};
use cachefront_origin::Error;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

/// Edge caching policy of catalogue pages: one minute at the edge, purged by tag on change.
const PAGE_CACHE_CONTROL: &str = "public, max-age=0, s-maxage=60, stale-while-revalidate=30";

#[derive(Clone)]
struct AppState {
    pool: PgPool,
    purge: Option<PurgeClient>,
    admin_token: Option<String>,
    stylesheet: Option<String>,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if let Err(e) = run().await {
        eprintln!("catalog: {e}");
        std::process::exit(1);
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

async fn run() -> Result<(), Error> {
    let database_url = non_empty_env("DATABASE_URL").ok_or_else(|| {
        Error::Config("DATABASE_URL is required (postgres://user@host:port/db)".to_owned())
    })?;
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let layers_on = std::env::var("CATALOG_LAYERS").map_or(true, |v| v != "off");

    let pool = PgPoolOptions::new()
        .max_connections(env_or("DATABASE_MAX_CONNECTIONS", 10u32)?)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy(&database_url)?;

    let stylesheet = match non_empty_env("ASSET_MANIFEST") {
        Some(path) => {
            let base = std::env::var("ASSET_BASE").unwrap_or_else(|_| "/".to_owned());
            AssetManifest::load(&path, &base)?.install()?;
            Some(asset_url("css/site.css"))
        }
        None => None,
    };

    // Schema and seed run in the background, retried until PostgreSQL answers;
    // `/readyz` stays 503 ("starting") until they have succeeded once.
    let schema_ready = Arc::new(AtomicBool::new(false));
    {
        let pool = pool.clone();
        let ready = schema_ready.clone();
        tokio::spawn(async move {
            loop {
                match ensure_schema(&pool).await {
                    Ok(()) => {
                        ready.store(true, Ordering::Release);
                        tracing::info!("catalogue schema ready");
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

    let metrics = Metrics::new();
    metrics.observe_pg_pool("catalog", pool.clone());
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
            debug_token: non_empty_env("CACHEFRONT_DEBUG_TOKEN"),
            ..ProfilingConfig::default()
        },
        &metrics,
    );
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

    let state_purge = purge.clone();
    let state = AppState {
        pool,
        purge,
        admin_token: non_empty_env("CATALOG_ADMIN_TOKEN"),
        stylesheet,
    };
    let pages = Router::new()
        .route("/", get(index))
        .route("/products/{id}", get(product_page))
        .route("/api/products/{id}", get(product_json))
        .route("/api/products/{id}/price", post(set_price))
        .fallback(not_found)
        .with_state(state);

    let app = if layers_on {
        pages
            .merge(health.router())
            .merge(metrics.router())
            .merge(profiler.router())
            .layer(CacheTagLayer::new().metrics(&metrics))
            .layer(profiler.layer())
            .layer(metrics.layer())
    } else {
        pages.merge(health.router())
    };

    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port when BIND ends in :0.
    println!("catalog listening on http://{addr}");
    tracing::info!(%addr, layers = layers_on, "catalog listening");
    GracefulShutdown::new(&health)
        .drain_delay(Duration::from_millis(env_or("SHUTDOWN_DRAIN_MS", 0u64)?))
        .deadline(Duration::from_millis(env_or(
            "SHUTDOWN_DEADLINE_MS",
            30_000u64,
        )?))
        .serve(listener, app)
        .await?;
    if let Some(purge) = &state_purge {
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

fn page(title: &str, stylesheet: Option<&str>, body: &str) -> String {
    let link = stylesheet
        .map(|href| format!("<link rel=\"stylesheet\" href=\"{}\">", escape(href)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{title} · Cachefront Outfitters</title>\n{link}\n<style>{CSS}</style>\n</head>\n<body>\n\
<header class=\"top\"><a class=\"brand\" href=\"/\">Cachefront Outfitters</a>\
<nav><a href=\"/\">Catalogue</a></nav></header>\n<main>\n{body}\n</main>\n\
<footer>Free returns within 60 days · Served by the catalogue origin behind the Cachefront edge</footer>\n</body>\n</html>\n",
        title = escape(title),
    )
}

const CSS: &str = "*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2a24;background:#f5f7f2}\
.top{display:flex;justify-content:space-between;align-items:center;padding:1rem 2rem;background:#1f3a2c}\
.top a{color:#eef5ea;text-decoration:none}.brand{font-weight:700;letter-spacing:.02em}\
main{max-width:68rem;margin:0 auto;padding:2rem}h1{font-size:2rem;margin:.2rem 0 1rem}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(15rem,1fr));gap:1.2rem;list-style:none;padding:0}\
.card{background:#fff;border:1px solid #d9e2d3;border-radius:.6rem;padding:1.1rem;display:flex;flex-direction:column;gap:.4rem}\
.card a{color:inherit;text-decoration:none}img{max-width:100%;height:auto;border-radius:.4rem;background:#e9efe6}.card h2{font-size:1.1rem;margin:0}.cat{font-size:.8rem;text-transform:uppercase;letter-spacing:.08em;color:#5d7a4a}\
.price{font-weight:700;font-size:1.1rem}.stock{font-size:.85rem;color:#5b7d3a}.stock.out{color:#a33}\
.detail{background:#fff;border:1px solid #d9e2d3;border-radius:.6rem;padding:2rem;max-width:40rem}\
.detail .price{font-size:1.6rem}dl{display:grid;grid-template-columns:auto 1fr;gap:.3rem 1rem}dt{color:#5d7a4a}\
footer{text-align:center;font-size:.8rem;color:#5d7a4a;padding:2rem}";

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
            "<img src=\"{}\" width=\"{width}\" height=\"{height}\" alt=\"{}\" loading=\"lazy\">",
            escape(&asset_url(&format!("images/products/{slug}{suffix}.png"))),
            escape(&p.name)
        ),
        None => String::new(),
    }
}

fn stock_badge(stock: i32) -> String {
    if stock > 0 {
        format!("<span class=\"stock\">{stock} in stock</span>")
    } else {
        "<span class=\"stock out\">Out of stock</span>".to_owned()
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

async fn timed<T>(profile: &RequestProfile, fut: impl std::future::Future<Output = T>) -> T {
    let start = std::time::Instant::now();
    let out = fut.await;
    profile.record_query(start.elapsed());
    out
}

async fn index(State(state): State<AppState>, profile: RequestProfile) -> Result<Response, Error> {
    let products: Vec<Product> = timed(
        &profile,
        sqlx::query_as("SELECT id, sku, name, category, description, price_cents, stock, image FROM products ORDER BY category, name")
            .fetch_all(&state.pool),
    )
    .await?;
    let mut body = String::from("<h1>Catalogue</h1>\n<ul class=\"grid\">\n");
    for p in &products {
        let _ = writeln!(
            body,
            "<li class=\"card\">{img}<span class=\"cat\">{cat}</span><h2><a href=\"/products/{id}\">{name}</a></h2>\
<span class=\"price\">{price}</span>{stock}</li>",
            img = image_tag(p, "-thumb", 320, 240),
            cat = escape(&p.category),
            id = p.id,
            name = escape(&p.name),
            price = price(p.price_cents),
            stock = stock_badge(p.stock),
        );
    }
    body.push_str("</ul>");
    Ok(cacheable(
        CacheTags::new(["products"]),
        Html(page("Catalogue", state.stylesheet.as_deref(), &body)),
    ))
}

async fn load_product(
    state: &AppState,
    profile: &RequestProfile,
    id: i64,
) -> Result<Product, Error> {
    timed(
        profile,
        sqlx::query_as("SELECT id, sku, name, category, description, price_cents, stock, image FROM products WHERE id = $1")
            .bind(id)
            .fetch_optional(&state.pool),
    )
    .await?
    .ok_or_else(|| Error::NotFound(format!("no product with id {id}")))
}

async fn product_page(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    profile: RequestProfile,
) -> Result<Response, Error> {
    let id = parse_id(&raw)?;
    let p = load_product(&state, &profile, id).await?;
    let body = format!(
        "<article class=\"detail\">{img}<span class=\"cat\">{cat}</span><h1>{name}</h1><p>{desc}</p>\
<p class=\"price\">{price}</p>{stock}<dl><dt>SKU</dt><dd>{sku}</dd></dl></article>\n<p><a href=\"/\">← Back to the catalogue</a></p>",
        img = image_tag(&p, "", 640, 480),
        cat = escape(&p.category),
        name = escape(&p.name),
        desc = escape(&p.description),
        price = price(p.price_cents),
        stock = stock_badge(p.stock),
        sku = escape(&p.sku),
    );
    Ok(cacheable(
        CacheTags::new([format!("product:{}", p.id)]),
        Html(page(&p.name, state.stylesheet.as_deref(), &body)),
    ))
}

async fn product_json(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    profile: RequestProfile,
) -> Result<Response, Error> {
    let id = parse_id(&raw)?;
    let p = load_product(&state, &profile, id).await?;
    Ok(cacheable(
        CacheTags::new([format!("product:{}", p.id)]),
        Json(p),
    ))
}

#[derive(serde::Deserialize)]
struct PriceChange {
    price_cents: i32,
}

/// Change a price, then purge the pages that show it. Needs `CATALOG_ADMIN_TOKEN`.
async fn set_price(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    profile: RequestProfile,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    let Some(token) = &state.admin_token else {
        return Err(Error::NotFound(
            "price changes are disabled (set CATALOG_ADMIN_TOKEN)".to_owned(),
        ));
    };
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()));
    if !authorized {
        return Err(Error::Unauthorized);
    }
    let id = parse_id(&raw)?;
    let change: PriceChange = serde_json::from_slice(&body).map_err(|e| {
        Error::BadRequest(format!("body must be {{\"price_cents\": <integer>}}: {e}"))
    })?;
    if change.price_cents < 0 {
        return Err(Error::BadRequest(
            "price_cents must not be negative".to_owned(),
        ));
    }
    let updated: Option<Product> = timed(
        &profile,
        sqlx::query_as(
            "UPDATE products SET price_cents = $2, updated_at = now() WHERE id = $1
             RETURNING id, sku, name, category, description, price_cents, stock, image",
        )
        .bind(id)
        .bind(change.price_cents)
        .fetch_optional(&state.pool),
    )
    .await?;
    let p = updated.ok_or_else(|| Error::NotFound(format!("no product with id {id}")))?;
    let tags = [format!("product:{}", p.id), "products".to_owned()];
    let purge = match &state.purge {
        Some(client) => {
            serde_json::json!({ "queued": client.purge_tags(&tags).accepted, "tags": tags })
        }
        None => {
            serde_json::json!({ "queued": 0, "tags": tags, "note": "no purge client configured" })
        }
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found() -> Error {
    Error::NotFound("no such page".to_owned())
}

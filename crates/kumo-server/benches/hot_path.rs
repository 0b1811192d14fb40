//! Micro-benchmarks of the gateway's CPU work per call: a user-route lookup
//! in a table of 100 routes, the encoding of the event, and both together.
//!
//! Run with `cargo bench -p kumo-server --bench hot_path`. Kept short (two
//! seconds per case) so the whole run takes about half a minute; for
//! steadier figures, raise `measurement_time`. The figures are only worth
//! comparing on a quiet machine.

use std::hint::black_box;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kumo_server::routes::{Lookup, RoutePattern, RouteTable};
use kumo_server::{EventParts, encode_event};

/// The resources of a made-up project API; each gets the usual REST routes.
const RESOURCES: [&str; 12] = [
    "users", "posts", "comments", "orgs", "teams", "projects", "issues", "labels", "invoices",
    "orders", "products", "webhooks",
];

/// 100 routes: per resource a list, a create, get/update/delete by id and a
/// nested list (72); literals (`/`, `/health`, `/login`…); a few extra
/// parameters and catch-alls; and any-method routes.
fn route_table() -> RouteTable<usize> {
    let mut routes: Vec<(Option<Method>, String)> = Vec::new();
    for resource in RESOURCES {
        let base = format!("/api/v1/{resource}");
        routes.push((Some(Method::GET), base.clone()));
        routes.push((Some(Method::POST), base.clone()));
        routes.push((Some(Method::GET), format!("{base}/:id")));
        routes.push((Some(Method::PUT), format!("{base}/:id")));
        routes.push((Some(Method::DELETE), format!("{base}/:id")));
        routes.push((Some(Method::GET), format!("{base}/:id/history")));
    }
    for (method, path) in [
        (None, "/"),
        (Some(Method::GET), "/health"),
        (Some(Method::GET), "/version"),
        (Some(Method::POST), "/login"),
        (Some(Method::POST), "/logout"),
        (Some(Method::GET), "/api/v1/me"),
        (Some(Method::PATCH), "/api/v1/me"),
        (Some(Method::GET), "/api/v1/search"),
        (Some(Method::GET), "/api/v1/users/:id/posts/:post"),
        (Some(Method::GET), "/api/v1/users/:id/posts/:post/comments"),
        (Some(Method::GET), "/api/v1/orgs/:id/teams/:team/members"),
        (Some(Method::POST), "/api/v1/orders/:id/refund"),
        (Some(Method::POST), "/api/v1/invoices/:id/send"),
        (Some(Method::GET), "/api/v2/users/:id"),
        (Some(Method::GET), "/api/v2/users"),
        (None, "/hooks/:provider"),
        (None, "/hooks/:provider/:event"),
        (Some(Method::GET), "/static/*path"),
        (Some(Method::GET), "/assets/:version/*path"),
        (Some(Method::GET), "/files/:bucket/*key"),
        (Some(Method::PUT), "/files/:bucket/*key"),
        (Some(Method::DELETE), "/files/:bucket/*key"),
        (None, "/app/*path"),
        (Some(Method::GET), "/feeds/rss.xml"),
        (Some(Method::GET), "/feeds/atom.xml"),
        (Some(Method::GET), "/robots.txt"),
        (Some(Method::GET), "/favicon.ico"),
        (Some(Method::OPTIONS), "/api/v1/*path"),
    ] {
        routes.push((method, path.to_string()));
    }
    assert_eq!(routes.len(), 100, "the table is meant to have 100 routes");
    let mut table = RouteTable::new();
    for (i, (method, path)) in routes.into_iter().enumerate() {
        let pattern = RoutePattern::parse(&path).expect("a valid pattern");
        table.insert(method, pattern, i).expect("no conflict");
    }
    table
}

/// Requests against the table, named for what they exercise.
const REQUESTS: [(&str, Method, &str); 8] = [
    ("literal", Method::GET, "/health"),
    ("param", Method::GET, "/api/v1/products/8812"),
    ("two_params", Method::GET, "/api/v1/users/42/posts/7"),
    ("catch_all", Method::GET, "/static/css/site/main.css"),
    ("any_method", Method::POST, "/hooks/github/push"),
    ("method_not_allowed", Method::PATCH, "/api/v1/orders/17"),
    ("not_found", Method::GET, "/nope/nothing/here"),
    ("literal_long", Method::GET, "/api/v1/me"),
];

fn outcome(lookup: &Lookup<'_, '_, usize>) -> usize {
    match lookup {
        Lookup::Found(m) => *m.value + m.params.len(),
        Lookup::MethodNotAllowed { allowed } => 1000 + allowed.len(),
        Lookup::NotFound => 2000,
    }
}

fn bench_lookup(c: &mut Criterion) {
    let table = route_table();
    let mut group = c.benchmark_group("route_lookup");
    for (name, method, path) in &REQUESTS {
        group.bench_function(*name, |b| {
            b.iter(|| outcome(&table.lookup(black_box(method), black_box(path))));
        });
    }
    // The eight requests above in a row; per lookup is the time over 8.
    group.throughput(Throughput::Elements(REQUESTS.len() as u64));
    group.bench_function("mix_of_8", |b| {
        b.iter(|| {
            REQUESTS
                .iter()
                .map(|(_, method, path)| outcome(&table.lookup(black_box(method), black_box(path))))
                .sum::<usize>()
        });
    });
    group.finish();
}

/// A browser-like GET: ten headers and a query string.
fn get_request() -> (Method, Uri, HeaderMap, Vec<u8>) {
    let uri: Uri =
        "/p/demo/api/v1/products/8812?page=2&limit=20&sort=-created_at&q=hello%20world&tag=a&tag=b"
            .parse()
            .expect("a valid uri");
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (header::HOST, "kumo.example.com"),
        (
            header::USER_AGENT,
            "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
        ),
        (
            header::ACCEPT,
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        (header::ACCEPT_ENCODING, "gzip, deflate, br, zstd"),
        (header::ACCEPT_LANGUAGE, "en-GB,en;q=0.7,fr;q=0.3"),
        (header::CONNECTION, "keep-alive"),
        (header::COOKIE, "session=3f9a1c77b2; theme=dark"),
        (header::CACHE_CONTROL, "no-cache"),
        (header::REFERER, "https://kumo.example.com/p/demo/"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
    (Method::GET, uri, headers, Vec::new())
}

/// An API POST with a 1 KiB JSON body.
fn post_request() -> (Method, Uri, HeaderMap, Vec<u8>) {
    let uri: Uri = "/p/demo/api/v1/orders".parse().expect("a valid uri");
    let mut body = String::from(r#"{"customer":"c_8812","currency":"EUR","items":["#);
    let mut i = 0;
    while body.len() < 970 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"sku":"SKU-{i:05}","qty":{},"price":{}.99}}"#,
            i % 4 + 1,
            i * 3 + 5
        ));
        i += 1;
    }
    body.push_str("]}");
    while body.len() < 1024 {
        body.insert(body.len() - 1, ' ');
    }
    assert_eq!(body.len(), 1024, "the body is meant to be 1 KiB");
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (header::HOST, "kumo.example.com"),
        (header::USER_AGENT, "python-httpx/0.28.1"),
        (header::ACCEPT, "application/json"),
        (header::CONTENT_TYPE, "application/json"),
        (header::AUTHORIZATION, "Bearer kumo_3f9a1c77b2e84d0c9a51"),
        (header::ACCEPT_ENCODING, "gzip, deflate"),
        (header::CONNECTION, "keep-alive"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len() as u64));
    headers.insert("idempotency-key", HeaderValue::from_static("ord-2026-0001"));
    headers.insert("x-request-id", HeaderValue::from_static("01JZ8R5X4T3Q"));
    (Method::POST, uri, headers, body.into_bytes())
}

/// The path the function sees: the request path less `/p/{project}`.
fn function_path(uri: &Uri) -> &str {
    uri.path()
        .strip_prefix("/p/demo")
        .expect("a path under /p/demo")
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_event");
    for (name, (method, uri, headers, body)) in [
        ("get_10_headers_query", get_request()),
        ("post_1k_json", post_request()),
    ] {
        let path = function_path(&uri);
        group.bench_function(name, |b| {
            b.iter(|| {
                encode_event(black_box(&EventParts {
                    method: &method,
                    base_path: "/fn/bench/hello",
                    path,
                    params: &[],
                    uri: &uri,
                    headers: &headers,
                    body: &body,
                    source_ip: None,
                    identity: None,
                    strip_authorization: false,
                    redact_credentials: false,
                }))
                .expect("an event")
                .get()
                .len()
            });
        });
    }
    group.finish();
}

fn bench_lookup_and_encode(c: &mut Criterion) {
    let table = route_table();
    let mut group = c.benchmark_group("lookup_and_encode");
    for (name, (method, uri, headers, body)) in [
        ("get_10_headers_query", get_request()),
        ("post_1k_json", post_request()),
    ] {
        let path = function_path(&uri);
        group.bench_function(name, |b| {
            b.iter(|| {
                let Lookup::Found(found) = table.lookup(black_box(&method), black_box(path)) else {
                    panic!("the request matches a route");
                };
                let event = encode_event(&EventParts {
                    method: &method,
                    base_path: "/fn/bench/hello",
                    path,
                    params: &[],
                    uri: &uri,
                    headers: &headers,
                    body: &body,
                    source_ip: None,
                    identity: None,
                    strip_authorization: false,
                    redact_credentials: false,
                })
                .expect("an event");
                (*found.value, found.params.len(), event.get().len())
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = hot_path;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(50)
        .nresamples(20_000);
    targets = bench_lookup, bench_encode, bench_lookup_and_encode
}
criterion_main!(hot_path);

//! A loopback stand-in for CloudFront's CreateInvalidation API. It checks the documented
//! request shape (path, XML `InvalidationBatch`, headers) and verifies the SigV4 signature
//! itself (`check.rs`), from the bytes received, with its own HMAC-SHA256 — not with the
//! signer under test — so a header changed after signing, or a wrong scope, is caught.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::response::IntoResponse;

mod check;
pub use check::*;

/// Scripted answer: status and CloudFront error code (used in order, then 201).
#[derive(Debug, Clone)]
pub struct CfReply(pub u16, pub &'static str);

pub struct CloudFrontStandIn {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
    accepted: Arc<Mutex<Vec<Invalidation>>>,
    violations: Arc<Mutex<Vec<String>>>,
    calls: Arc<Mutex<usize>>,
}

impl Drop for CloudFrontStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CloudFrontStandIn {
    pub async fn start(script: Vec<CfReply>) -> Self {
        let accepted: Arc<Mutex<Vec<Invalidation>>> = Arc::default();
        let violations: Arc<Mutex<Vec<String>>> = Arc::default();
        let calls: Arc<Mutex<usize>> = Arc::default();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let (acc, vio, n) = (accepted.clone(), violations.clone(), calls.clone());
        let handler = move |method: http::Method,
                            uri: http::Uri,
                            headers: http::HeaderMap,
                            body: Bytes| {
            let (acc, vio, n, script) = (acc.clone(), vio.clone(), n.clone(), script.clone());
            async move {
                *n.lock().expect("lock") += 1;
                match check(&method, &uri, &headers, &body) {
                    Err(v) => {
                        vio.lock().expect("lock").push(v.clone());
                        (
                            http::StatusCode::FORBIDDEN,
                            error_xml("SignatureDoesNotMatch", &v),
                        )
                            .into_response()
                    }
                    Ok(inv) => match script.lock().expect("lock").pop_front() {
                        Some(CfReply(status, code)) => (
                            http::StatusCode::from_u16(status).expect("status"),
                            error_xml(code, "scripted"),
                        )
                            .into_response(),
                        None => {
                            let id = format!("I{}", acc.lock().expect("lock").len() + 1);
                            acc.lock().expect("lock").push(inv);
                            (
                                    http::StatusCode::CREATED,
                                    [(http::header::LOCATION, format!("https://cloudfront.amazonaws.com/2020-05-31/distribution/{DISTRIBUTION}/invalidation/{id}"))],
                                    format!("<Invalidation><Id>{id}</Id><Status>InProgress</Status></Invalidation>"),
                                )
                                    .into_response()
                        }
                    },
                }
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback(handler);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            task,
            accepted,
            violations,
            calls,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn accepted(&self) -> Vec<Invalidation> {
        self.accepted.lock().expect("lock").clone()
    }
    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().expect("lock").clone()
    }
    pub fn calls(&self) -> usize {
        *self.calls.lock().expect("lock")
    }
}

fn error_xml(code: &str, message: &str) -> String {
    format!("<?xml version=\"1.0\"?><ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error></ErrorResponse>")
}

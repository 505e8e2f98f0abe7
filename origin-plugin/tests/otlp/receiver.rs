//! A loopback OTLP/HTTP receiver for the `otlp` test binaries: it keeps every export it
//! is sent (path, headers, protobuf body) for the test to decode with the OpenTelemetry
//! protobuf definitions, and answers each with an empty export response (or, from
//! [`start_receiver_answering`], with the error status it is given).

use std::sync::{Arc, Mutex};

use axum::Router;
use http::HeaderMap;

/// One export as received: path, headers, body.
pub type Export = (String, HeaderMap, Vec<u8>);

#[derive(Clone, Default)]
pub struct Received(pub Arc<Mutex<Vec<Export>>>);

impl Received {
    pub fn exports(&self) -> Vec<Export> {
        self.0.lock().expect("lock").clone()
    }
}

/// Starts the receiver on its own thread and runtime (the exporters' HTTP clients block
/// their caller) and returns its address.
pub fn start_receiver(received: Received) -> std::net::SocketAddr {
    start_receiver_answering(received, http::StatusCode::OK)
}

/// [`start_receiver`], answering every export with `status`.
#[allow(dead_code)] // not every test binary including this file uses it
pub fn start_receiver_answering(
    received: Received,
    status: http::StatusCode,
) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr"))
                .expect("send addr");
            let app = Router::new().fallback(
                move |uri: http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
                    let received = received.clone();
                    async move {
                        received.0.lock().expect("lock").push((
                            uri.path().to_owned(),
                            headers,
                            body.to_vec(),
                        ));
                        // An empty Export{Metrics,Trace}ServiceResponse.
                        (
                            status,
                            [("content-type", "application/x-protobuf")],
                            Vec::<u8>::new(),
                        )
                    }
                },
            );
            let _ = axum::serve(listener, app).await;
        });
    });
    rx.recv().expect("receiver address")
}

//! A loopback stand-in for the HTTP APIs the CLI calls (the edge's purge
//! and state endpoints, Cloudflare's APIs): it records every request exactly
//! as received and answers from a script. Shared by the CLI's test crates.

// Each test crate uses part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("request body is JSON")
    }
}

/// A scripted answer: status, extra headers, body.
pub type Reply = (u16, Vec<(&'static str, &'static str)>, String);

pub struct StandIn {
    pub base: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

/// Serves one connection per scripted reply, then stops; when the script
/// runs out it answers 500, so a surplus request shows up as a failure.
pub fn stand_in(replies: Vec<Reply>) -> StandIn {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&seen);
    thread::spawn(move || {
        let mut replies = replies.into_iter();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let reply = replies
                .next()
                .unwrap_or((500, Vec::new(), "script exhausted".to_owned()));
            let _ = serve(stream, &reply, &recorded);
        }
    });
    StandIn { base, seen }
}

/// Records the request before answering, so a client that has its answer
/// always finds its request recorded.
fn serve(stream: TcpStream, reply: &Reply, seen: &Mutex<Vec<Seen>>) -> Option<()> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    seen.lock().ok()?.push(Seen {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });

    let (status, extra, text) = reply;
    let mut response = format!(
        "HTTP/1.1 {status} Status\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        text.len()
    );
    for (name, value) in extra {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(text);
    let mut stream = stream;
    stream.write_all(response.as_bytes()).ok()?;
    stream.flush().ok()
}

//! A loopback TCP server standing in for a Vault: it records every connection and the bytes sent
//! on it, and answers each request with Vault's "permission denied".

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DENIED: &str = r#"{"errors":["permission denied"]}"#;

/// A running capture server.
pub struct Capture {
    port: u16,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Capture {
    /// Binds 127.0.0.1 on a free port and serves in a thread of its own.
    pub fn start() -> Capture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind capture server");
        let port = listener.local_addr().expect("address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let bytes = serve(stream);
                log.lock().unwrap().push(bytes);
            }
        });
        Capture { port, received }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many connections were made so far.
    pub fn connections(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// The request lines received so far (`POST /v1/auth/kubernetes/login HTTP/1.1`): what a
    /// failure message may show, unlike the headers and bodies, which carry credentials.
    pub fn request_lines(&self) -> Vec<String> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .map(|b| String::from_utf8_lossy(b).lines().next().unwrap_or_default().to_owned())
            .collect()
    }

    /// Everything received so far, as text.
    pub fn text(&self) -> String {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    /// Every value of `"field":"..."` in the request bodies received so far.
    pub fn json_strings(&self, field: &str) -> Vec<String> {
        let needle = format!("\"{field}\":\"");
        let text = self.text();
        text.match_indices(&needle)
            .filter_map(|(at, _)| {
                let rest = &text[at + needle.len()..];
                rest.find('"').map(|end| rest[..end].to_owned())
            })
            .collect()
    }
}

/// Reads one request (head and `content-length` body, or until the client pauses), answers it,
/// and returns what was read.
fn serve(mut stream: TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(Duration::from_millis(500))).ok();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
        if complete(&bytes) {
            break;
        }
    }
    let answer = format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{DENIED}",
        DENIED.len()
    );
    stream.write_all(answer.as_bytes()).ok();
    bytes
}

fn complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some(head_end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..head_end]
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    bytes.len() >= head_end + 4 + length
}

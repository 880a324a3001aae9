//! A local HTTP sink standing in for the downstream services tasks call. It records every
//! arrival (time, method, path, headers, body) and answers from a per-path script: a status,
//! a body (text or any bytes), a delay, extra headers — or 200 "OK" when nothing is scripted.
//! Headers are sent as scripted: a `Content-Encoding` goes out with the bytes as they are,
//! so the sink can claim a compression nobody asked for.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

#[derive(Debug, Clone)]
pub struct Arrival {
    pub at_ms: i64,
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Arrival {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(|s| s.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub delay: Duration,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            body: Vec::new(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
    pub fn json(body: serde_json::Value) -> Self {
        Self {
            status: 200,
            body: body.to_string().into_bytes(),
            delay: Duration::ZERO,
            headers: vec![("content-type".into(), "application/json".into())],
        }
    }
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into().into_bytes();
        self
    }
    /// A body of any bytes, sent as they are.
    pub fn bytes(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

#[derive(Default)]
struct State {
    arrivals: Vec<Arrival>,
    scripts: HashMap<String, VecDeque<Reply>>,
    defaults: HashMap<String, Reply>,
}

#[derive(Clone)]
pub struct Sink {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl Sink {
    /// Starts the sink on 127.0.0.1 with a free port, inside the current actix system.
    pub fn start() -> Sink {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .default_service(web::to(handle))
        })
        .workers(2)
        .disable_signals()
        // A deep listen queue (set before binding): a burst of new connections must not wait
        // a second in handshake retries, as it did with a listener bound by `std::net`.
        .backlog(4096)
        .bind(("127.0.0.1", 0))
        .expect("bind sink");
        let port = server.addrs()[0].port();
        let server = server.run();
        actix_web::rt::spawn(server);
        Sink { port, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Queues replies for `path`, used in order, one per request.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        let mut s = self.state.lock().unwrap();
        s.scripts
            .entry(path.to_string())
            .or_default()
            .extend(replies);
    }

    /// The reply for `path` once its script is used up.
    pub fn default_reply(&self, path: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .defaults
            .insert(path.to_string(), reply);
    }

    pub fn arrivals(&self, path: &str) -> Vec<Arrival> {
        self.state
            .lock()
            .unwrap()
            .arrivals
            .iter()
            .filter(|a| a.path == path)
            .cloned()
            .collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .arrivals
            .iter()
            .filter(|a| a.path == path)
            .count()
    }

    /// Waits until `path` has received at least `n` requests; panics after `timeout`.
    pub async fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<Arrival> {
        let start = Instant::now();
        loop {
            let got = self.arrivals(path);
            if got.len() >= n {
                return got;
            }
            if start.elapsed() > timeout {
                panic!(
                    "sink {path}: expected {n} arrivals within {timeout:?}, got {}",
                    got.len()
                );
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let at_ms = chrono::Utc::now().timestamp_millis();
    let path = req.path().to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let reply = {
        let mut s = state.lock().unwrap();
        s.arrivals.push(Arrival {
            at_ms,
            method: req.method().to_string(),
            path: path.clone(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let scripted = s.scripts.get_mut(&path).and_then(|q| q.pop_front());
        scripted
            .or_else(|| s.defaults.get(&path).cloned())
            .unwrap_or_else(|| Reply::status(200).body("OK"))
    };
    if !reply.delay.is_zero() {
        actix_web::rt::time::sleep(reply.delay).await;
    }
    let mut resp =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(reply.status).expect("status"));
    for (k, v) in &reply.headers {
        resp.insert_header((k.as_str(), v.as_str()));
    }
    resp.body(reply.body)
}

//! The sink: a minimal HTTP/1.1 server (hyper, one thread of its own) that answers `200 OK`
//! to everything and records, for every request carrying a `webhook-id` header, that id and
//! the arrival time in microseconds since the epoch.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One request the sink saw: its `webhook-id` (`<task>:<scheduled ms>`) and when it arrived.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub id: String,
    pub at_us: i64,
}

#[derive(Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
}

pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Sink {
    /// Starts the sink on its own thread and single-threaded runtime.
    pub fn start() -> anyhow::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4().context("creating the sink socket")?;
        socket.set_reuseaddr(true)?;
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .context("binding the sink")?;
        let addr = socket.local_addr()?;
        let arrivals: Arc<Mutex<Vec<Arrival>>> = Arc::new(Mutex::new(Vec::with_capacity(1 << 20)));
        let shared = arrivals.clone();
        std::thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("sink: cannot build its runtime: {e}");
                        return;
                    }
                };
                rt.block_on(serve(socket, shared));
            })
            .context("starting the sink thread")?;
        Ok(Self { addr, arrivals })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Takes every arrival recorded so far, leaving the record empty.
    pub fn take(&self) -> Vec<Arrival> {
        match self.arrivals.lock() {
            Ok(mut a) => std::mem::take(&mut *a),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}

async fn serve(socket: tokio::net::TcpSocket, arrivals: Arc<Mutex<Vec<Arrival>>>) {
    // A deep accept queue: a burst of new connections must not stall in SYN retries.
    let listener: TcpListener = match socket.listen(4096) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sink: {e}");
            return;
        }
    };
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sink: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let arrivals = arrivals.clone();
                async move {
                    let at_us = now_us();
                    let id = req
                        .headers()
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .filter(|id| !id.starts_with("load:"))
                        .map(str::to_owned);
                    // Read the body so the connection can be reused.
                    let _ = req.into_body().collect().await;
                    if let Some(id) = id {
                        if let Ok(mut a) = arrivals.lock() {
                            a.push(Arrival { id, at_us });
                        }
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"OK"))))
                }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

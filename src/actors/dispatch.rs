//! Dispatcher and HttpWorker pool: the only code that talks to downstream hosts.
//!
//! `awc::Client` is not `Send`, so each [`HttpWorker`] lives on its own arbiter with its own
//! client (created in `started()`), and the workers share `http.pool_size` connections between
//! them. Each task sends its calls to one worker (by a hash of its id). The [`Dispatcher`]
//! holds the workers and a token bucket per destination `host:port` (a call over
//! the limit waits for its token in its task actor; it is never dropped). Every call can be
//! aborted through its cancellation token, which drops the connection.
//!
//! Responses are read as sent: no compression is asked for or decoded, and no more than
//! `http.max_response_bytes` is read, so a small answer cannot become a large one in memory.
//! A task's response match (a JSON parse and a search whose cost its user chooses) is
//! evaluated on a thread of its own, never on the arbiters that fire and send tasks; its
//! verdict travels back in the [`Outcome`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::web::Bytes;
use awc::http::header::{HeaderName, HeaderValue};
use futures_util::StreamExt;
use ratelimit::Ratelimiter;
use tokio_util::sync::CancellationToken;
use url::Url;
use uuid::Uuid;

use crate::domain::{Method, StopCondition};
use crate::metrics::{self, ActorKind};
use crate::signing::KeyRing;
use crate::time::now_ms;

/// What to send for one task; shared by every attempt of every execution.
#[derive(Debug)]
pub struct OutboundRequest {
    pub task_id: Uuid,
    /// The task's user: whose signing keys sign the call.
    pub user_id: i64,
    /// The JSON body, serialised once; `None` for GET.
    pub body: Option<Bytes>,
    /// The destination's token bucket (`host:port`), shared with every task calling it.
    pub limiter: Option<Arc<Ratelimiter>>,
    /// What is sent, parsed once; the error if it cannot be sent.
    pub prepared: Result<Prepared, String>,
    /// The task's stop condition when it has response-match keys: each 2xx reply is checked
    /// against it before the outcome goes back to the task.
    pub response_match: Option<Arc<StopCondition>>,
}

/// The parts of a request that are the same on every call, parsed once per task.
#[derive(Debug)]
pub struct Prepared {
    pub method: awc::http::Method,
    pub uri: awc::http::Uri,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Prepared {
    /// Fails with the reason if the method, URL or a header cannot be sent as given.
    pub fn new(url: &Url, method: Method, headers: &[(String, String)]) -> Result<Self, String> {
        Ok(Self {
            method: awc::http::Method::from_bytes(method.as_str().as_bytes())
                .map_err(|e| e.to_string())?,
            uri: awc::http::Uri::try_from(url.as_str()).map_err(|e| e.to_string())?,
            headers: headers
                .iter()
                .map(|(n, v)| {
                    Ok((
                        HeaderName::try_from(n.as_str()).map_err(|e| format!("header {n}: {e}"))?,
                        HeaderValue::try_from(v.as_str())
                            .map_err(|e| format!("header {n}: {e}"))?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        })
    }
}

/// Sends one attempt of one execution and answers with its [`Outcome`].
#[derive(Message, Clone)]
#[rtype(result = "Outcome")]
pub struct Execute {
    pub request: Arc<OutboundRequest>,
    pub scheduled_ms: i64,
    pub attempt: u32,
    pub cancel: CancellationToken,
    /// A notification's delivery (README, "Notifications"): its `webhook-id`, sent instead of
    /// `<task_id>:<scheduled_ms>`. It is not an execution, so it counts in no fire figure.
    pub webhook_id: Option<Arc<str>>,
}

/// What became of one attempt.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When the request left (epoch ms), after any rate-limit delay.
    pub sent_at_ms: i64,
    pub duration_ms: i64,
    pub result: Result<Reply, ExecError>,
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// The response body as text, cut at `http.max_response_bytes` (bytes of text: bytes
    /// that are not UTF-8 are replaced, and the text is cut again after that).
    pub body: String,
    /// A 429/503 `Retry-After` in seconds, as milliseconds, as the server asked (uncapped).
    pub retry_after_ms: Option<u64>,
    /// A 2xx reply whose JSON body met every response-match key of the task's stop condition.
    pub stop_matched: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    #[error("timeout after {0} ms")]
    Timeout(u64),
    #[error("connect error: {0}")]
    Connect(String),
    #[error("request error: {0}")]
    Request(String),
    #[error("cancelled")]
    Cancelled,
    #[error("no worker available: {0}")]
    Unavailable(String),
}

impl ExecError {
    pub fn kind(&self) -> &'static str {
        match self {
            ExecError::Timeout(_) => "timeout",
            ExecError::Connect(_) => "connect_error",
            ExecError::Request(_) => "request_error",
            ExecError::Cancelled => "cancelled",
            ExecError::Unavailable(_) => "unavailable",
        }
    }
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub allow_private: bool,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_response_bytes: usize,
    /// Every user's signing keys: each call carries one signature per active key of its user.
    pub keys: Arc<KeyRing>,
}

pub struct HttpWorker {
    settings: WorkerSettings,
    client: Option<awc::Client>,
}

impl HttpWorker {
    pub fn new(settings: WorkerSettings) -> Self {
        Self {
            settings,
            client: None,
        }
    }
}

impl Actor for HttpWorker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX_CAPACITY);
        metrics::live_add(ActorKind::Worker, 1.0);
        let s = &self.settings;
        self.client = Some(crate::net::build_client(
            s.allow_private,
            s.pool_size,
            s.connect_timeout,
        ));
    }
}

impl Handler<Execute> for HttpWorker {
    type Result = ResponseFuture<Outcome>;

    fn handle(&mut self, msg: Execute, _: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Worker, "Execute");
        let client = self.client.clone();
        let timeout = self.settings.request_timeout;
        let max = self.settings.max_response_bytes;
        let keys = self.settings.keys.clone();
        Box::pin(async move {
            let sent_at_ms = now_ms();
            let execution = msg.webhook_id.is_none();
            if execution && msg.attempt == 1 {
                let now_s = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
                metrics::lateness(now_s - msg.scheduled_ms as f64 / 1e3);
            }
            let started = Instant::now();
            let Some(client) = client else {
                return Outcome {
                    sent_at_ms,
                    duration_ms: 0,
                    result: Err(ExecError::Unavailable("worker not started".into())),
                };
            };
            let call = send(&client, &keys, &msg, max, timeout);
            let mut result = tokio::select! {
                biased;
                _ = msg.cancel.cancelled() => Err(ExecError::Cancelled),
                r = tokio::time::timeout(timeout, call) => match r {
                    Ok(r) => r,
                    Err(_) => Err(ExecError::Timeout(timeout.as_millis() as u64)),
                },
            };
            let elapsed = started.elapsed();
            metrics::downstream(elapsed.as_secs_f64());
            if execution {
                metrics::fire(match &result {
                    Ok(r) if (200..300).contains(&r.status) => "success",
                    Ok(_) => "http_error",
                    Err(e) => e.kind(),
                });
            }
            if let (Ok(reply), Some(condition)) = (&mut result, &msg.request.response_match) {
                if (200..300).contains(&reply.status) {
                    reply.stop_matched = evaluate(condition, &reply.body).await;
                }
            }
            Outcome {
                sent_at_ms,
                duration_ms: elapsed.as_millis() as i64,
                result,
            }
        })
    }
}

async fn send(
    client: &awc::Client,
    keys: &KeyRing,
    msg: &Execute,
    max_body: usize,
    timeout: Duration,
) -> Result<Reply, ExecError> {
    let r = &msg.request;
    let p = r
        .prepared
        .as_ref()
        .map_err(|e| ExecError::Request(e.clone()))?;
    // Read as sent: awc would otherwise ask for br/gzip/deflate/zstd and inflate a small
    // compressed answer in full before a byte of it reaches the size limit below.
    let mut req = client
        .request(p.method.clone(), p.uri.clone())
        .no_decompress();
    {
        let headers = req.headers_mut();
        for (name, value) in &p.headers {
            headers.insert(name.clone(), value.clone());
        }
        // After the task's own headers: nothing is decoded, so nothing else is asked for.
        headers.insert(
            awc::http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        // Made per call rather than kept per task: an idle task's size matters more.
        let mut id = String::with_capacity(56);
        let _ = write!(id, "{}", r.task_id);
        if let Ok(v) = HeaderValue::try_from(id.as_str()) {
            headers.insert(HeaderName::from_static("x-tickwheel-task-id"), v);
        }
        match &msg.webhook_id {
            Some(w) => id = w.to_string(),
            None => {
                let _ = write!(id, ":{}", msg.scheduled_ms);
            }
        }
        let timestamp = now_ms() / 1000;
        // Signed over exactly what is sent: the id and timestamp headers and the body bytes.
        let body: &[u8] = r.body.as_deref().unwrap_or_default();
        let signature = keys.sign(r.user_id, &id, timestamp, body);
        metrics::signatures(signature.as_deref());
        if let Some(v) = signature.and_then(|s| HeaderValue::try_from(s).ok()) {
            headers.insert(HeaderName::from_static("webhook-signature"), v);
        }
        if let Ok(v) = HeaderValue::try_from(id) {
            headers.insert(HeaderName::from_static("webhook-id"), v);
        }
        headers.insert(
            HeaderName::from_static("webhook-timestamp"),
            HeaderValue::from(timestamp),
        );
    }
    let sent = match &r.body {
        Some(body) => {
            req.headers_mut().insert(
                awc::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            req.send_body(body.clone()).await
        }
        None => req.send().await,
    };
    let mut resp = sent.map_err(|e| match e {
        awc::error::SendRequestError::Connect(awc::error::ConnectError::Timeout) => {
            ExecError::Connect("timeout while connecting".into())
        }
        awc::error::SendRequestError::Connect(c) => ExecError::Connect(c.to_string()),
        awc::error::SendRequestError::Timeout => ExecError::Timeout(timeout.as_millis() as u64),
        other => ExecError::Request(other.to_string()),
    })?;
    let status = resp.status().as_u16();
    let retry_after_ms = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000));
    let mut body = Vec::new();
    while let Some(chunk) = resp.next().await {
        let chunk = chunk.map_err(|e| ExecError::Request(format!("reading response: {e}")))?;
        let room = max_body.saturating_sub(body.len());
        if chunk.len() >= room {
            body.extend_from_slice(&chunk[..room]);
            // The rest is not kept; stop reading and let the connection go.
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Reply {
        status,
        body: text_within(&body, max_body),
        retry_after_ms,
        stop_matched: false,
    })
}

/// `bytes` as text of at most `max` bytes: bytes that are not UTF-8 become U+FFFD (three
/// bytes each), so the text is cut again, at a character boundary.
fn text_within(bytes: &[u8], max: usize) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// A response-match evaluation, run on the evaluation thread.
type Evaluation = Box<dyn FnOnce() + Send>;

/// The thread response matches are evaluated on, one at a time: their cost depends on what
/// users put in their conditions and what their targets answer, so they take at most one core
/// and never the arbiters that fire and send tasks. `None` if the thread could not be started.
fn evaluation_thread() -> Option<&'static mpsc::Sender<Evaluation>> {
    static THREAD: OnceLock<Option<mpsc::Sender<Evaluation>>> = OnceLock::new();
    THREAD
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Evaluation>();
            let spawned = std::thread::Builder::new()
                .name("tickwheel-match".into())
                .spawn(move || {
                    lower_priority();
                    for evaluation in rx {
                        // A panic ends that evaluation (its caller sees no verdict), not the
                        // thread.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(evaluation));
                    }
                });
            match spawned {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the response-match thread; matching on the blocking pool");
                    None
                }
            }
        })
        .as_ref()
}

/// The lowest CPU priority (nice 19) for the calling thread: on a busy machine the threads
/// that fire and send tasks get the CPU first. On Linux the nice value is per thread.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority only reads its arguments; `who = 0` is the calling thread.
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
        if r != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower the response-match thread's priority");
        }
    }
}

/// Whether `body` meets `condition`'s response matches, decided off this arbiter.
async fn evaluate(condition: &Arc<StopCondition>, body: &str) -> bool {
    let (condition, body) = (Arc::clone(condition), body.to_owned());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let evaluation: Evaluation = Box::new(move || {
        let _ = tx.send(condition.response_matches(&body));
    });
    let queued = match evaluation_thread() {
        Some(thread) => thread.send(evaluation).map_err(|e| e.0),
        None => Err(evaluation),
    };
    if let Err(evaluation) = queued {
        drop(tokio::task::spawn_blocking(evaluation));
    }
    match rx.await {
        Ok(matched) => matched,
        Err(_) => {
            tracing::error!("a response-match evaluation failed; counted as no match");
            false
        }
    }
}

/// Where calls go: the HTTP workers, each on its own arbiter, and a token bucket per
/// destination `host:port` shared by every task that calls it.
///
/// Not an actor: a task actor sends its `Execute` straight to its worker after taking a
/// token from its destination's bucket, resolved once when the task is defined — no hop
/// through a central mailbox per call, and no `host:port` string kept per task.
pub struct Dispatcher {
    workers: Vec<Addr<HttpWorker>>,
    per_host_rps: u64,
    per_host_burst: u64,
    limiters: Mutex<Limiters>,
}

/// The token buckets by `host:port`. A bucket no task holds any more is dropped at the next
/// sweep, so a node whose tasks come and go over many hosts does not keep one per host it
/// ever called. Sweeps run when the map has doubled since the last one: amortised O(1) per
/// new host.
struct Limiters {
    by_host: HashMap<String, Arc<Ratelimiter>>,
    sweep_at: usize,
}

/// The map's size below which it is never swept.
const LIMITER_SWEEP_MIN: usize = 1024;

impl Limiters {
    fn new() -> Self {
        Self {
            by_host: HashMap::new(),
            sweep_at: LIMITER_SWEEP_MIN,
        }
    }

    /// Drops the buckets held by the map alone (no task calls their host any more; a task
    /// created for it later starts with a full bucket, as it would after `burst / rps`
    /// seconds of quiet).
    fn sweep(&mut self) {
        self.by_host.retain(|_, l| Arc::strong_count(l) > 1);
        self.sweep_at = (self.by_host.len() * 2).max(LIMITER_SWEEP_MIN);
    }
}

impl Dispatcher {
    pub fn new(workers: Vec<Addr<HttpWorker>>, per_host_rps: u64, per_host_burst: u64) -> Self {
        Self {
            workers,
            per_host_rps,
            per_host_burst,
            limiters: Mutex::new(Limiters::new()),
        }
    }

    /// The worker of `task_id` (the same one for every actor of the task).
    pub fn worker(&self, task_id: Uuid) -> Option<&Addr<HttpWorker>> {
        if self.workers.is_empty() {
            return None;
        }
        let h = crate::domain::partition::partition_of(task_id, 256) as usize;
        self.workers.get(h % self.workers.len())
    }

    /// The token bucket of `url`'s `host:port`, shared by every task calling it; `None` if
    /// one cannot be built (calls then go unthrottled, with an error logged).
    pub fn limiter(&self, url: &Url) -> Option<Arc<Ratelimiter>> {
        let key = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or(0)
        );
        let mut limiters = self.limiters.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = limiters.by_host.get(&key) {
            return Some(l.clone());
        }
        if limiters.by_host.len() >= limiters.sweep_at {
            limiters.sweep();
        }
        let built = Ratelimiter::builder(self.per_host_rps)
            .max_tokens(self.per_host_burst)
            .initial_available(self.per_host_burst)
            .build();
        match built {
            Ok(l) => {
                let l = Arc::new(l);
                limiters.by_host.insert(key, l.clone());
                Some(l)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot build a rate limiter; sending unthrottled");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: usize) -> Url {
        Url::parse(&format!("http://h{host}.example:8080/x")).expect("url")
    }

    #[test]
    fn logged_text_stays_within_the_byte_limit_when_bytes_are_not_utf8() {
        // Each invalid byte becomes U+FFFD, three bytes of text.
        let text = text_within(&[0xff; 100], 100);
        assert!(text.len() <= 100, "{}", text.len());
        assert_eq!(text.chars().count(), 33);
        assert_eq!(text_within("héllo".as_bytes(), 2), "h");
        assert_eq!(text_within(b"plain", 64), "plain");
    }

    #[test]
    fn one_bucket_per_host_shared_by_its_tasks() {
        let d = Dispatcher::new(Vec::new(), 10, 10);
        let a = d.limiter(&url(1)).expect("bucket");
        let b = d.limiter(&url(1)).expect("bucket");
        let c = d.limiter(&url(2)).expect("bucket");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        // Not the same host: another port.
        let other_port = Url::parse("http://h1.example:8081/x").expect("url");
        assert!(!Arc::ptr_eq(&a, &d.limiter(&other_port).expect("bucket")));
    }

    #[test]
    fn buckets_no_task_holds_are_dropped_and_held_ones_kept() {
        let d = Dispatcher::new(Vec::new(), 10, 10);
        let held = d.limiter(&url(0)).expect("bucket");
        // Tasks for 100,000 hosts come and go; only the first is still held.
        for host in 1..100_000 {
            drop(d.limiter(&url(host)));
        }
        let tracked = d
            .limiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_host
            .len();
        assert!(
            tracked <= 2 * LIMITER_SWEEP_MIN,
            "{tracked} buckets kept for 1 host still called"
        );
        // The held bucket survived every sweep: its tasks still share it with new ones.
        assert!(Arc::ptr_eq(&held, &d.limiter(&url(0)).expect("bucket")));
    }
}

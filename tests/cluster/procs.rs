//! Child processes and time: a guard that kills its child on drop (also on panic), a stderr
//! drain, signals, free ports and deadline-based waiting.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Epoch milliseconds: the one clock the sink, the scenarios and the nodes' `webhook-id` share.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An epoch-ms instant as the nodes' log lines show time (RFC 3339, UTC), to find it there.
pub fn stamp(ms: i64) -> String {
    tickwheel::time::to_rfc3339(ms)
}

pub async fn pause(ms: u64) {
    actix_web::rt::time::sleep(Duration::from_millis(ms)).await;
}

/// Sleeps until the wall clock reads `at_ms` (returns at once if it already passed).
pub async fn sleep_until_ms(at_ms: i64) {
    let left = at_ms - now_ms();
    if left > 0 {
        pause(left as u64).await;
    }
}

/// Polls `probe` every `every_ms` until it yields `Some`, or panics with `what` and the last
/// `describe()` after `timeout`.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every_ms: u64,
    mut probe: F,
    describe: impl Fn() -> String,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out after {timeout:?} waiting for {what}: {}",
                describe()
            );
        }
        pause(every_ms).await;
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

pub use crate::child::{drain, listening_port, Buf, ChildGuard};

/// Sends `signal` (`TERM`, `STOP`, `CONT`, …) to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// The last `n` lines of `log`, and every WARN/ERROR line before them (at most `n` too).
pub fn excerpt(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let cut = lines.len().saturating_sub(n);
    let mut out: Vec<&str> = lines[..cut]
        .iter()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked"))
        .copied()
        .collect();
    if out.len() > n {
        out.drain(..out.len() - n);
    }
    if !out.is_empty() {
        out.push("  [… warnings and errors above, then the last lines …]");
    }
    out.extend_from_slice(&lines[cut..]);
    out.join("\n")
}

/// Samples the state of the registered processes every 50 ms and records when one was
/// stopped (state `T`), so that a stop the test did not cause — another process on the machine
/// signalling by name — shows up as such instead of as a mysterious hang.
#[derive(Clone, Default)]
pub struct StopWatch(Arc<Mutex<Watched>>);

#[derive(Default)]
struct Watched {
    pids: Vec<(u32, String)>,
    open: std::collections::HashMap<u32, i64>,
    /// (name, first seen stopped, first seen running again or None) in epoch ms.
    seen: Vec<(String, i64, Option<i64>)>,
}

impl StopWatch {
    pub fn start() -> StopWatch {
        let w = StopWatch::default();
        let weak = Arc::downgrade(&w.0);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(50));
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let mut s = inner.lock().unwrap();
            let now = now_ms();
            let pids = s.pids.clone();
            for (pid, name) in pids {
                let stopped = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|st| {
                        let state = st.rsplit_once(')')?.1.trim_start().chars().next()?;
                        Some(state == 'T' || state == 't')
                    })
                    .unwrap_or(false);
                match (stopped, s.open.get(&pid).copied()) {
                    (true, None) => {
                        s.open.insert(pid, now);
                    }
                    (false, Some(from)) => {
                        s.open.remove(&pid);
                        s.seen.push((name, from, Some(now)));
                    }
                    _ => {}
                }
            }
        });
        w
    }

    pub fn watch(&self, pid: u32, name: &str) {
        self.0.lock().unwrap().pids.push((pid, name.to_string()));
    }

    /// Every stop seen so far, finished or not: (name, from, to).
    pub fn stops(&self) -> Vec<(String, i64, Option<i64>)> {
        let s = self.0.lock().unwrap();
        let names: std::collections::HashMap<u32, &String> =
            s.pids.iter().map(|(p, n)| (*p, n)).collect();
        let mut out = s.seen.clone();
        for (pid, from) in &s.open {
            out.push((names[pid].clone(), *from, None));
        }
        out
    }
}

//! Child processes for the test targets that run the real `tickwheel` binary (and the cluster
//! tests' ZooKeeper and Redis): a guard that kills its child on drop (also on panic), a
//! pipe drain, and the port a `serve` logs. Shared by `tests/api` and `tests/cluster`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub type Buf = Arc<Mutex<String>>;

/// Reads `r` line by line into a shared buffer on a thread of its own, so the child never
/// blocks on a full pipe.
pub fn drain(r: impl Read + Send + 'static) -> (Buf, JoinHandle<()>) {
    let buf = Buf::default();
    let shared = buf.clone();
    let handle = std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => shared
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&line)),
            }
        }
    });
    (buf, handle)
}

/// Owns a child process: it is killed (SIGKILL, which also ends a stopped process) and reaped
/// when dropped, so no process outlives its test, whatever happens in it.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// The exit status if the child has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().expect("try_wait")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The port in the log line "… listening on http://127.0.0.1:PORT …".
pub fn listening_port(log: &str) -> Option<u16> {
    const MARK: &str = "listening on http://";
    let rest = &log[log.find(MARK)? + MARK.len()..];
    // The address ends where the log line's text does (a space, or a quote in JSON logs).
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    let port: String = addr
        .rsplit(':')
        .next()?
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    port.parse().ok()
}

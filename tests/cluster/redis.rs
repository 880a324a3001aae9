//! A private Redis server per test (no persistence), so a test can restart it empty without
//! touching the machine's Redis or another test's keys.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::procs::{drain, free_port, now_ms, pause, Buf, ChildGuard};

pub struct Redis {
    child: Option<ChildGuard>,
    log: Buf,
    pub port: u16,
}

impl Redis {
    pub async fn start() -> Redis {
        let mut r = Redis {
            child: None,
            log: Buf::default(),
            port: free_port(),
        };
        r.spawn().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard(cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "the cluster tests need `redis-server` on PATH (Debian: apt-get install -y \
                 redis-server; scripts/test.sh does it): {e}"
            )
        }));
        let (out, _) = drain(child.0.stdout.take().expect("stdout"));
        let (_err, _) = drain(child.0.stderr.take().expect("stderr"));
        self.log = out;
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if self.ping() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.exited()) {
                panic!(
                    "redis-server exited ({status}); its output:\n{}",
                    self.log.lock().unwrap()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "redis-server on port {} never answered PING",
                self.port
            );
            pause(10).await;
        }
    }

    pub fn ping(&self) -> bool {
        self.command("PING").starts_with("+PONG")
    }

    /// Sends one inline command and returns the raw reply (empty on any error).
    pub fn command(&self, cmd: &str) -> String {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(format!("{cmd}\r\n").as_bytes()).is_err() {
            return String::new();
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(_) => String::new(),
        }
    }

    /// The number of keys (DBSIZE), or None when Redis does not answer.
    pub fn dbsize(&self) -> Option<u64> {
        let r = self.command("DBSIZE");
        r.strip_prefix(':')?.trim().parse().ok()
    }

    /// kill -9 and a new, empty server on the same port; returns (kill time, time the new one
    /// answered PING) in epoch ms.
    pub async fn restart_empty(&mut self) -> (i64, i64) {
        let killed = now_ms();
        if let Some(mut c) = self.child.take() {
            c.kill9();
        }
        self.spawn().await;
        (killed, now_ms())
    }
}

impl Redis {
    /// Every key (KEYS *), read as a RESP array of bulk strings.
    pub fn keys(&self) -> Vec<String> {
        use std::io::BufRead;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).expect("redis");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(b"KEYS *\r\n").expect("write KEYS");
        let mut r = std::io::BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).expect("KEYS answer");
        let n: usize = line
            .trim()
            .strip_prefix('*')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected KEYS answer {line:?}"));
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            line.clear();
            r.read_line(&mut line).expect("bulk length");
            let len: usize = line
                .trim()
                .strip_prefix('$')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected bulk header {line:?}"));
            let mut buf = vec![0u8; len + 2];
            r.read_exact(&mut buf).expect("bulk body");
            buf.truncate(len);
            keys.push(String::from_utf8_lossy(&buf).into_owned());
        }
        keys
    }
}

//! What tickwheel does with what downstream services answer and where they are: compressed
//! answers are read as sent (never inflated in memory), a refused destination is named without
//! the address it resolves to, and a `Retry-After` cannot park a task for years.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{self, Backend, Reply, TestApp};
use crate::on_both_backends;
use crate::recovery::{pause, Server, Setup, EVENT_WAIT};
use crate::sink::Sink;

/// `http.max_response_bytes` of the test settings (the default).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// A zstd frame of `blocks` RLE blocks of 128 KiB of zero bytes each: four bytes a block on
/// the wire, so 2,048 blocks are 8 KiB that inflate to 256 MiB.
fn zstd_bomb(blocks: usize) -> Vec<u8> {
    // Magic number; frame header: no checksum, no content size, window 128 KiB (log 17).
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 7 << 3];
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        // Block header, 3 bytes little-endian: last-block bit, type 1 (RLE), size.
        let header = last | (1 << 1) | ((128 * 1024) << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(0);
    }
    frame
}

/// Writes bits least significant first, as deflate does.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u32,
    len: u32,
}

impl Bits {
    fn push(&mut self, value: u32, n: u32) {
        for i in 0..n {
            self.acc |= ((value >> i) & 1) << self.len;
            self.len += 1;
            if self.len == 8 {
                self.out.push(self.acc as u8);
                self.acc = 0;
                self.len = 0;
            }
        }
    }

    /// A Huffman code: most significant bit first.
    fn code(&mut self, code: u32, n: u32) {
        for i in (0..n).rev() {
            self.push((code >> i) & 1, 1);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.len > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A gzip member inflating to about `size` zero bytes: one fixed-Huffman deflate block of a
/// literal zero and copies of 258 bytes at distance 1 (13 bits each, about 160:1). The
/// trailer's checksum is not the real one; nothing that reads this as sent looks at it.
fn gzip_bomb(size: usize) -> Vec<u8> {
    let mut bits = Bits::default();
    bits.push(1, 1); // last block
    bits.push(1, 2); // fixed Huffman codes
    bits.code(0x30, 8); // literal 0
    for _ in 0..size / 258 {
        bits.code(0xc5, 8); // length 258 (code 285)
        bits.code(0, 5); // distance 1 (code 0)
    }
    bits.code(0, 7); // end of block
    let mut member = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    member.extend(bits.finish());
    member.extend_from_slice(&0u32.to_le_bytes());
    member.extend_from_slice(&((1 + size / 258 * 258) as u32).to_le_bytes());
    member
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Resets this process's peak resident size to its current one (Linux ≥ 4.0) and returns it,
/// in KiB. If the reset is not possible the old peak stays, which can only make the growth
/// measured afterwards smaller than it was, never hide it: the caller's control run shows the
/// measurement sees growth at all.
fn reset_peak_rss() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("VmHWM:")
}

async fn once_to(app: &TestApp, path: &str) -> String {
    app.create_task(helpers::once_task(app, path, None)).await
}

async fn only_log(app: &TestApp, id: &str) -> Value {
    let logs = app.wait_logs(id, 1, Duration::from_secs(20)).await;
    logs[0].clone()
}

/// A gzip bomb of `size` and a zstd bomb of `blocks`, sent although identity was asked for;
/// returns the growth of the process's peak resident size while both are fired and logged,
/// in MiB, with the two log rows.
async fn fire_bombs(app: &TestApp, size: usize, blocks: usize) -> (u64, Value, Value) {
    app.sink.default_reply(
        "/bomb/gzip",
        Reply::status(200)
            .bytes(gzip_bomb(size))
            .header("content-encoding", "gzip")
            .header("content-type", "application/json"),
    );
    app.sink.default_reply(
        "/bomb/zstd",
        Reply::status(200)
            .bytes(zstd_bomb(blocks))
            .header("content-encoding", "zstd")
            .header("content-type", "application/json"),
    );
    let before = reset_peak_rss();
    let gzip = once_to(app, "/bomb/gzip").await;
    let zstd = once_to(app, "/bomb/zstd").await;
    let (gzip, zstd) = (only_log(app, &gzip).await, only_log(app, &zstd).await);
    let grown_mib = status_kib("VmHWM:").saturating_sub(before) / 1024;
    (grown_mib, gzip, zstd)
}

async fn a_compressed_answer_is_neither_asked_for_nor_inflated(backend: Backend) {
    let app = helpers::spawn_app(backend).await;
    // Warm up: the client, its connection pool, the log writer.
    let warm = once_to(&app, "/bomb/warm").await;
    only_log(&app, &warm).await;

    // 16 MiB of gzip (about 100 KiB sent, more than the body limit) and 256 MiB of zstd
    // (8 KiB sent).
    let (grown_mib, gzip, zstd) = fire_bombs(&app, 16 << 20, 2048).await;
    assert!(
        grown_mib < 64,
        "the peak resident size grew by {grown_mib} MiB while two compressed answers were read"
    );

    for a in app
        .sink
        .arrivals("/bomb/gzip")
        .iter()
        .chain(&app.sink.arrivals("/bomb/zstd"))
    {
        assert_eq!(
            a.header("accept-encoding"),
            Some("identity"),
            "compression asked for: {:?}",
            a.headers
        );
    }
    for (row, magic) in [(&gzip, '\u{1f}'), (&zstd, '(')] {
        assert_eq!(row["http_status"], 200, "{row}");
        let body = row["response_body"].as_str().expect("a response body");
        assert!(
            body.len() <= MAX_RESPONSE_BYTES,
            "{} bytes logged, more than http.max_response_bytes",
            body.len()
        );
        // Stored as sent: the compressed bytes (their magic number first), not zeros.
        assert!(
            body.starts_with(magic),
            "decoded: {:?}",
            &body[..16.min(body.len())]
        );
    }
}

async fn a_refused_destination_is_named_without_its_address(backend: Backend) {
    let app = helpers::spawn_app_with(backend, |s| s.http.allow_private_targets = false).await;
    let refused = |status: u16, v: &Value| {
        assert_eq!(status, 400, "{v}");
        let msg = v.to_string();
        for told in ["127.0.0.1", "::1", "resolves to"] {
            assert!(!msg.contains(told), "{told} told in {msg}");
        }
        assert!(msg.contains("localhost is not allowed"), "{msg}");
    };
    let (status, v) = app
        .create_as(
            1001,
            &json!({"user_id": 1001, "type": "interval", "interval_seconds": 60,
                    "http_endpoint": "http://localhost:9/hook"}),
        )
        .await;
    refused(status, &v);

    // A public IP literal is accepted without being contacted (it fires in a day).
    let id = app
        .create_task(json!({"user_id": 1001, "type": "once",
                            "http_endpoint": "http://8.8.8.8:9/hook",
                            "start_time": helpers::rfc3339_in(86_400_000)}))
        .await;
    let r = app
        .client
        .patch(app.url(&format!("/api/v1/tasks/{id}")))
        .bearer_auth(helpers::token(1001))
        .json(&json!({"http_endpoint": "http://localhost:9/other"}))
        .send()
        .await
        .expect("patch");
    let status = r.status().as_u16();
    refused(status, &r.json().await.unwrap_or(Value::Null));
}

/// Waits for a log row of `id` on `server` that `pred` accepts.
async fn wait_log_row(server: &Server, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (status, v) = server
            .get_with(
                &format!("/api/v1/tasks/{id}/logs?limit=1000"),
                &helpers::token(1001),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        if let Some(row) = v["logs"]
            .as_array()
            .and_then(|l| l.iter().find(|r| pred(r)))
        {
            return row.clone();
        }
        assert!(start.elapsed() < EVENT_WAIT, "no such log row: {v}");
        pause(50).await;
    }
}

async fn a_destination_refused_when_connecting_is_logged_without_its_address(backend: Backend) {
    let sink = Sink::start();
    let setup = Setup::new(backend).await;
    // Created while private targets are allowed (the check passes), then served with them
    // refused: the connect-time guard refuses the name and the log row says so.
    let mut first = setup.serve().await;
    let id = first
        .create_id(
            &json!({"user_id": 1001, "type": "interval", "interval_seconds": 1,
                           "http_endpoint": format!("http://localhost:{}/dns", sink.port)}),
        )
        .await;
    first.terminate(Duration::from_secs(30)).await;
    let second = Server::start(setup.command(
        &["serve"],
        &[("TICKWHEEL__HTTP__ALLOW_PRIVATE_TARGETS", "false")],
    ))
    .await;
    let row = wait_log_row(&second, &id, |r| r["error"].is_string()).await;
    let error = row["error"].as_str().unwrap_or_default();
    for told in ["127.0.0.1", "::1", "resolves to"] {
        assert!(!error.contains(told), "{told} told in {error}");
    }
    assert!(error.contains("localhost is not allowed"), "{row}");
    assert!(
        !second.stderr().contains("resolves to"),
        "the address is in the service log:\n{}",
        second.stderr()
    );
}

async fn a_retry_after_of_years_is_capped_at_an_hour_and_logged(backend: Backend) {
    let sink = Sink::start();
    sink.default_reply(
        "/busy",
        Reply::status(429).header("retry-after", "99999999"),
    );
    let setup = Setup::new(backend).await;
    // One JSON object a line: the message and its fields on the same line.
    let server =
        Server::start(setup.command(&["serve"], &[("TICKWHEEL__LOG__FORMAT", "json")])).await;
    let id = server
        .create_id(&json!({"user_id": 1001, "type": "once",
                           "http_endpoint": sink.url("/busy")}))
        .await;
    sink.wait_for("/busy", 1, EVENT_WAIT).await;
    let start = Instant::now();
    let line = loop {
        let stderr = server.stderr();
        if let Some(line) = stderr.lines().find(|l| l.contains("Retry-After capped")) {
            break line.to_owned();
        }
        assert!(
            start.elapsed() < EVENT_WAIT,
            "no \"Retry-After capped\" line; stderr:\n{stderr}"
        );
        pause(50).await;
    };
    for part in [id.as_str(), "99999999000", "3600000"] {
        assert!(line.contains(part), "{part} missing from: {line}");
    }
    // The retry waits out the capped hour, not the backoff.
    pause(1500).await;
    assert_eq!(sink.count("/busy"), 1, "the retry did not wait");
    let task = server.task(&id).await;
    assert_eq!(task["status"], "running", "{task}");
}

on_both_backends!(
    a_compressed_answer_is_neither_asked_for_nor_inflated,
    a_refused_destination_is_named_without_its_address,
    a_destination_refused_when_connecting_is_logged_without_its_address,
    a_retry_after_of_years_is_capped_at_an_hour_and_logged,
);

//! `tickwheel healthcheck`: a dependency-free HTTP/1.1 probe for container health checks.
//!
//! One `GET` over a plain [`TcpStream`], `Connection: close`, and only the status line is
//! read: a 2xx status is healthy, anything else (no connection, a timeout, a malformed
//! answer, a non-2xx status) is not. The whole probe — resolving, connecting, writing and
//! reading — shares one deadline. Only `http://` URLs are supported: the probe targets the
//! service's own listener, normally on loopback inside the same container.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use url::{Host, Url};

/// The liveness path probed when no URL is given.
pub const DEFAULT_PATH: &str = "/healthz";

/// The default `--timeout-ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;

/// The longest status line accepted (a real one is some 20 bytes).
const MAX_STATUS_LINE: usize = 8 * 1024;

/// Why the probe did not report healthy.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("invalid URL {url:?}: {source}")]
    InvalidUrl {
        url: String,
        source: url::ParseError,
    },
    #[error("unsupported URL scheme {0:?}: only http:// is supported")]
    UnsupportedScheme(String),
    #[error("URL {0:?} has no host")]
    NoHost(String),
    #[error("server.bind {0:?} is not HOST:PORT")]
    InvalidBind(String),
    #[error("server.bind {0:?} uses port 0 (a port picked at start-up): pass --url")]
    EphemeralPort(String),
    #[error("cannot resolve {target}: {source}")]
    Resolve { target: String, source: io::Error },
    #[error("{0} resolves to no address")]
    NoAddress(String),
    #[error("cannot connect to {target}: {source}")]
    Connect { target: String, source: io::Error },
    #[error("no complete answer within {0} ms")]
    Timeout(u64),
    #[error("I/O error talking to {target}: {source}")]
    Io { target: String, source: io::Error },
    #[error("connection closed before a status line was received")]
    NoResponse,
    #[error("malformed status line {0:?}")]
    MalformedStatusLine(String),
    #[error("unhealthy: HTTP status {status} ({line})")]
    Unhealthy { status: u16, line: String },
}

/// A healthy answer: the status code and the status line it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthy {
    pub status: u16,
    pub status_line: String,
}

/// The probe URL for a service listening on `bind` (`server.bind`): a wildcard address
/// (`0.0.0.0`, `::`) or an empty host becomes the loopback address of the same family, so the
/// probe reaches the listener from inside its own container; the path is [`DEFAULT_PATH`].
pub fn default_url(bind: &str) -> Result<String, HealthcheckError> {
    let invalid = || HealthcheckError::InvalidBind(bind.to_string());
    let (host, port) = bind.trim().rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port.parse().map_err(|_| invalid())?;
    if port == 0 {
        return Err(HealthcheckError::EphemeralPort(bind.to_string()));
    }
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        }
        .to_string(),
        Ok(ip) => ip.to_string(),
        Err(_) if host.is_empty() => Ipv4Addr::LOCALHOST.to_string(),
        Err(_) if host.contains(':') => return Err(invalid()),
        Err(_) => host.to_string(),
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    Ok(format!("http://{host}:{port}{DEFAULT_PATH}"))
}

/// Sends `GET` to `url` and returns the status when it is 2xx, all within `timeout`.
pub fn check(url: &str, timeout: Duration) -> Result<Healthy, HealthcheckError> {
    let deadline = Instant::now() + timeout;
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let parsed = Url::parse(url).map_err(|source| HealthcheckError::InvalidUrl {
        url: url.to_string(),
        source,
    })?;
    if parsed.scheme() != "http" {
        return Err(HealthcheckError::UnsupportedScheme(
            parsed.scheme().to_string(),
        ));
    }
    let host = parsed
        .host()
        .ok_or_else(|| HealthcheckError::NoHost(url.to_string()))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    // `host_str` keeps the brackets of an IPv6 literal, as the Host header wants them.
    let host_header = format!("{}:{port}", parsed.host_str().unwrap_or_default());
    let addrs = resolve(&host, port, &host_header)?;

    let mut stream = connect(&addrs, &host_header, deadline, timeout_ms)?;
    let target = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: tickwheel-healthcheck/{}\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let io_err = |source: io::Error| {
        if is_timeout(&source) {
            HealthcheckError::Timeout(timeout_ms)
        } else {
            HealthcheckError::Io {
                target: host_header.clone(),
                source,
            }
        }
    };
    let remaining = remaining(deadline, timeout_ms)?;
    stream.set_write_timeout(Some(remaining)).map_err(io_err)?;
    stream.write_all(request.as_bytes()).map_err(io_err)?;
    stream.flush().map_err(io_err)?;

    let line = read_status_line(&mut stream, deadline, timeout_ms, io_err)?;
    let status = parse_status_line(&line)?;
    if (200..300).contains(&status) {
        Ok(Healthy {
            status,
            status_line: line,
        })
    } else {
        Err(HealthcheckError::Unhealthy { status, line })
    }
}

fn resolve(
    host: &Host<&str>,
    port: u16,
    target: &str,
) -> Result<Vec<SocketAddr>, HealthcheckError> {
    let addrs: Vec<SocketAddr> = match host {
        Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(*ip), port)],
        Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(*ip), port)],
        Host::Domain(name) => (*name, port)
            .to_socket_addrs()
            .map_err(|source| HealthcheckError::Resolve {
                target: target.to_string(),
                source,
            })?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(HealthcheckError::NoAddress(target.to_string()));
    }
    Ok(addrs)
}

/// Tries each address in turn until one connects; the last failure is reported.
fn connect(
    addrs: &[SocketAddr],
    target: &str,
    deadline: Instant,
    timeout_ms: u64,
) -> Result<TcpStream, HealthcheckError> {
    let mut last = None;
    for addr in addrs {
        let remaining = remaining(deadline, timeout_ms)?;
        match TcpStream::connect_timeout(addr, remaining) {
            Ok(stream) => return Ok(stream),
            Err(e) if is_timeout(&e) => last = Some(HealthcheckError::Timeout(timeout_ms)),
            Err(source) => {
                last = Some(HealthcheckError::Connect {
                    target: format!("{target} ({addr})"),
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| HealthcheckError::NoAddress(target.to_string())))
}

/// Reads up to the end of the first line (the status line), never past the deadline.
fn read_status_line(
    stream: &mut TcpStream,
    deadline: Instant,
    timeout_ms: u64,
    io_err: impl Fn(io::Error) -> HealthcheckError,
) -> Result<String, HealthcheckError> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            buf.truncate(end);
            break;
        }
        if buf.len() > MAX_STATUS_LINE {
            buf.truncate(80);
            return Err(HealthcheckError::MalformedStatusLine(
                String::from_utf8_lossy(&buf).into_owned() + "…",
            ));
        }
        let remaining = remaining(deadline, timeout_ms)?;
        stream.set_read_timeout(Some(remaining)).map_err(&io_err)?;
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err(HealthcheckError::NoResponse),
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// `HTTP/1.1 200 OK` → 200. The reason phrase is optional, the version must be HTTP/1.x.
pub fn parse_status_line(line: &str) -> Result<u16, HealthcheckError> {
    let malformed = || HealthcheckError::MalformedStatusLine(line.to_string());
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(malformed());
    }
    let code = parts.next().unwrap_or_default();
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let status: u16 = code.parse().map_err(|_| malformed())?;
    if !(100..=599).contains(&status) {
        return Err(malformed());
    }
    Ok(status)
}

fn remaining(deadline: Instant, timeout_ms: u64) -> Result<Duration, HealthcheckError> {
    let left = deadline.saturating_duration_since(Instant::now());
    // A zero timeout means "block forever" to the socket calls (and is refused by some).
    if left.is_zero() {
        Err(HealthcheckError::Timeout(timeout_ms))
    } else {
        Ok(left)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    /// A one-shot server on loopback: reads the request head, sends `reply` (if any) and
    /// closes; the request it got comes back on the channel.
    fn serve_once(reply: Option<&'static str>, hold: Duration) -> (u16, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut got = Vec::new();
            let mut chunk = [0u8; 1024];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&got).into_owned());
            if let Some(reply) = reply {
                let _ = conn.write_all(reply.as_bytes());
            }
            thread::sleep(hold);
        });
        (port, rx)
    }

    fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_default_url_follows_server_bind() {
        let cases = [
            ("0.0.0.0:8080", "http://127.0.0.1:8080/healthz"),
            ("127.0.0.1:9000", "http://127.0.0.1:9000/healthz"),
            ("10.1.2.3:80", "http://10.1.2.3:80/healthz"),
            ("[::]:8080", "http://[::1]:8080/healthz"),
            ("[::1]:8080", "http://[::1]:8080/healthz"),
            ("localhost:8080", "http://localhost:8080/healthz"),
            (":8080", "http://127.0.0.1:8080/healthz"),
        ];
        for (bind, want) in cases {
            assert_eq!(default_url(bind).expect(bind), want, "{bind}");
        }
    }

    #[test]
    fn a_bind_without_a_usable_port_is_refused() {
        for bind in ["0.0.0.0", "0.0.0.0:http", "0.0.0.0:70000", "", "::1:8080x"] {
            assert!(
                matches!(default_url(bind), Err(HealthcheckError::InvalidBind(_))),
                "{bind}: {:?}",
                default_url(bind)
            );
        }
        let err = default_url("127.0.0.1:0").unwrap_err();
        assert!(matches!(err, HealthcheckError::EphemeralPort(_)), "{err}");
        assert!(err.to_string().contains("--url"), "{err}");
    }

    #[test]
    fn a_2xx_answer_is_healthy_and_the_request_is_well_formed() {
        let (port, rx) = serve_once(
            Some("HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}"),
            Duration::ZERO,
        );
        let got = check(&format!("http://127.0.0.1:{port}/healthz?x=1"), SECOND).expect("healthy");
        assert_eq!(got.status, 200);
        assert_eq!(got.status_line, "HTTP/1.1 200 OK");
        let request = rx.recv_timeout(SECOND).expect("request");
        assert!(
            request.starts_with("GET /healthz?x=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
            "{request}"
        );
        assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
    }

    #[test]
    fn any_2xx_counts_and_the_reason_phrase_is_optional() {
        let (port, _rx) = serve_once(Some("HTTP/1.0 204\r\n\r\n"), Duration::ZERO);
        let got = check(&format!("http://127.0.0.1:{port}/"), SECOND).expect("healthy");
        assert_eq!(got.status, 204);
    }

    #[test]
    fn a_non_2xx_answer_is_unhealthy() {
        for (reply, code) in [
            ("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 404),
            ("HTTP/1.1 503 Service Unavailable\r\n\r\n", 503),
            (
                "HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\n\r\n",
                301,
            ),
        ] {
            let (port, _rx) = serve_once(Some(reply), Duration::ZERO);
            let err = check(&format!("http://127.0.0.1:{port}/healthz"), SECOND).unwrap_err();
            match err {
                HealthcheckError::Unhealthy { status, .. } => assert_eq!(status, code),
                other => panic!("{reply:?}: {other}"),
            }
        }
    }

    #[test]
    fn a_garbled_or_missing_answer_is_unhealthy() {
        let (port, _rx) = serve_once(Some("SSH-2.0-OpenSSH_9.2\r\n"), Duration::ZERO);
        let err = check(&format!("http://127.0.0.1:{port}/"), SECOND).unwrap_err();
        assert!(
            matches!(err, HealthcheckError::MalformedStatusLine(_)),
            "{err}"
        );

        let (port, _rx) = serve_once(None, Duration::ZERO);
        let err = check(&format!("http://127.0.0.1:{port}/"), SECOND).unwrap_err();
        assert!(
            matches!(
                err,
                HealthcheckError::NoResponse | HealthcheckError::Io { .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_server_that_never_answers_times_out_on_the_deadline() {
        let (port, _rx) = serve_once(None, Duration::from_secs(5));
        let started = Instant::now();
        let err = check(
            &format!("http://127.0.0.1:{port}/"),
            Duration::from_millis(300),
        )
        .unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, HealthcheckError::Timeout(300)), "{err}");
        assert!(took >= Duration::from_millis(250), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn a_closed_port_is_a_connect_error() {
        let port = closed_port();
        let err = check(&format!("http://127.0.0.1:{port}/healthz"), SECOND).unwrap_err();
        assert!(matches!(err, HealthcheckError::Connect { .. }), "{err}");
        assert!(err.to_string().contains(&port.to_string()), "{err}");
    }

    #[test]
    fn only_plain_http_urls_are_accepted() {
        let err = check("https://127.0.0.1/healthz", SECOND).unwrap_err();
        assert!(
            matches!(err, HealthcheckError::UnsupportedScheme(ref s) if s == "https"),
            "{err}"
        );
        let err = check("not a url", SECOND).unwrap_err();
        assert!(matches!(err, HealthcheckError::InvalidUrl { .. }), "{err}");
        let err = check("http://", SECOND).unwrap_err();
        assert!(
            matches!(
                err,
                HealthcheckError::InvalidUrl { .. } | HealthcheckError::NoHost(_)
            ),
            "{err}"
        );
    }

    #[test]
    fn status_lines_are_parsed_strictly() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK").ok(), Some(200));
        assert_eq!(parse_status_line("HTTP/1.0 503").ok(), Some(503));
        assert_eq!(
            parse_status_line("HTTP/1.1 200 Everything is fine").ok(),
            Some(200)
        );
        for bad in [
            "",
            "HTTP/1.1",
            "HTTP/1.1 2000 OK",
            "HTTP/1.1 20 OK",
            "HTTP/1.1 +20 OK",
            "HTTP/1.1 abc OK",
            "HTTP/1.1 999 Nope",
            "HTTP/2 200",
            "ICY 200 OK",
        ] {
            assert!(parse_status_line(bad).is_err(), "{bad:?}");
        }
    }
}

//! Outbound address safety and the HTTP client that fires tasks.
//!
//! Task URLs come from users, so without a guard tickwheel would be a server-side request forgery
//! tool: it could be pointed at loopback admin ports, the cloud metadata service
//! (169.254.169.254) or the private network. Destinations are checked twice: at create time
//! ([`check_url`], for a 400 with a clear message) and again inside the client's own connect step
//! ([`build_client`]), on exactly the addresses the TCP connection is then made to, so a DNS
//! answer that changes between the two checks (DNS rebinding) cannot slip through.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use actix_tls::connect::tcp::TcpConnectorService;
use actix_tls::connect::{
    ConnectError as TcpConnectError, ConnectInfo, Connection as TcpConnection, Resolve,
};
// actix-service's trait, re-exported by actix-web; awc's `Connector::connector` wants it.
use actix_web::dev::Service;
use awc::http::{header, Uri};
use futures_util::future::LocalBoxFuture;

/// `User-Agent` sent with every outbound request.
pub const USER_AGENT: &str = concat!("tickwheel/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("http_endpoint: scheme {0:?} is not allowed; use http or https")]
    Scheme(String),
    #[error("http_endpoint: the URL has no host")]
    NoHost,
    #[error("http_endpoint: cannot resolve {0}")]
    Resolve(String),
    /// The address is not told: which internal address a name resolves to is for the
    /// operator to know, not for whoever typed the URL.
    #[error(
        "http_endpoint: the destination {host} is not allowed: private, loopback, link-local \
         and reserved addresses are refused (set http.allow_private_targets = true to allow)"
    )]
    Forbidden { host: String },
    #[error("http_endpoint: {0} resolves to no address")]
    NoAddress(String),
}

/// True when `ip` must not be a destination unless private targets are allowed.
///
/// IPv4 addresses embedded in IPv6 (mapped `::ffff:a.b.c.d`, translated `::ffff:0:a.b.c.d`,
/// compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged as the IPv4
/// address they reach. Beyond loopback, private, link-local, multicast and unspecified, the
/// shared (CGNAT), documentation, benchmarking and reserved ranges are refused too, as none of
/// them is a legitimate public webhook receiver.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // 0.0.0.0/8 "this network", includes unspecified
        || a == 10 // 10/8 private
        || (a == 100 && (b & 0xc0) == 64) // 100.64/10 shared address space (CGNAT)
        || a == 127 // loopback
        || (a == 169 && b == 254) // link-local, includes the metadata service 169.254.169.254
        || (a == 172 && (b & 0xf0) == 16) // 172.16/12 private
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24 IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // deprecated 6to4 relay anycast
        || (a == 192 && b == 168) // 192.168/16 private
        || (a == 198 && (b & 0xfe) == 18) // 198.18/15 benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224 // multicast 224/4, reserved 240/4, broadcast 255.255.255.255
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Only global unicast (2000::/3) is publicly routed today; refusing everything outside it
    // covers ::/128, ::1, 100::/64 discard, fc00::/7 unique-local, fe80::/10 link-local,
    // fec0::/10 site-local, ff00::/8 multicast and local-use NAT64 64:ff9b:1::/48 in one rule,
    // and anything IANA assigns later outside 2000::/3.
    (s[0] & 0xe000) != 0x2000
        || (s[0] == 0x2001 && s[1] < 0x0200) // 2001::/23 IETF assignments (Teredo, benchmarking)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // 2001:db8::/32 documentation
        || (s[0] == 0x3fff && s[1] < 0x1000) // 3fff::/20 documentation
}

/// The IPv4 address an IPv6 address actually reaches, for the forms that embed one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low32 = Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    match s {
        // ::ffff:a.b.c.d (mapped), ::ffff:0:a.b.c.d (translated), ::a.b.c.d (compatible; this
        // also maps :: and ::1 to 0.0.0.0 and 0.0.0.1, which are refused either way).
        [0, 0, 0, 0, 0, 0xffff, _, _]
        | [0, 0, 0, 0, 0xffff, 0, _, _]
        | [0, 0, 0, 0, 0, 0, _, _] => Some(low32),
        // NAT64 well-known prefix: a NAT64 gateway forwards to the embedded IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low32),
        // 6to4: 2002:AABB:CCDD::/48 routes to AA.BB.CC.DD.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))),
        _ => None,
    }
}

/// Create-time check of a task URL: scheme http/https, the host resolves (IP literals without
/// DNS), and unless `allow_private`, every resolved address is allowed. Refusing when any one
/// address is forbidden (the connect-time guard merely skips such addresses) keeps users from
/// registering hosts that only sometimes reach the inside.
pub async fn check_url(url: &url::Url, allow_private: bool) -> Result<(), OutboundError> {
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(OutboundError::Scheme(other.to_owned())),
    }
    let host = url.host_str().ok_or(OutboundError::NoHost)?;
    // Always Some for http/https; NoHost is only a formality.
    let port = url.port_or_known_default().ok_or(OutboundError::NoHost)?;
    if allow_private {
        // Every address is allowed: nothing to resolve now; the connect step resolves.
        return Ok(());
    }
    let addrs = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(url::Host::Domain(domain)) => lookup(domain, port).await?,
        None => return Err(OutboundError::NoHost),
    };
    if addrs.is_empty() {
        return Err(OutboundError::NoAddress(host.to_owned()));
    }
    if addrs.iter().any(|a| is_forbidden(a.ip())) {
        return Err(OutboundError::Forbidden {
            host: host.to_owned(),
        });
    }
    Ok(())
}

/// How long a create-time lookup may take before the check gives up on it.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, OutboundError> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(r) => r
            .map(Iterator::collect)
            .map_err(|e| OutboundError::Resolve(format!("{host}: {e}"))),
        Err(_) => Err(OutboundError::Resolve(format!(
            "{host}: no answer within {LOOKUP_TIMEOUT:?}"
        ))),
    }
}

/// DNS resolution for the outbound client that drops forbidden addresses (unless
/// `allow_private`) and fails when none remain. It implements actix-tls's [`Resolve`]; inside
/// [`build_client`] it runs within a connector service that also covers IP-literal hosts and
/// pre-set addresses, which actix-tls would otherwise send straight to TCP without asking any
/// resolver.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl GuardedResolver {
    /// Addresses to connect to for `host` (a name, an IP literal, or a bracketed IPv6 literal as
    /// it appears in a URI), with forbidden ones removed.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, OutboundError> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let addrs = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) if bare.is_empty() => return Err(OutboundError::NoHost),
            Err(_) => lookup(bare, port).await?,
        };
        self.filter(host, addrs)
    }

    /// Applies the policy to addresses obtained elsewhere.
    pub fn filter(
        &self,
        host: &str,
        addrs: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, OutboundError> {
        let any = !addrs.is_empty();
        let kept: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| self.allow_private || !is_forbidden(a.ip()))
            .collect();
        match (kept.is_empty(), any) {
            (false, _) => Ok(kept),
            (true, true) => Err(OutboundError::Forbidden {
                host: host.to_owned(),
            }),
            (true, false) => Err(OutboundError::NoAddress(host.to_owned())),
        }
    }
}

impl Resolve for GuardedResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn StdError>>> {
        Box::pin(async move {
            self.resolve(host, port)
                .await
                .map_err(|e| Box::new(e) as Box<dyn StdError>)
        })
    }
}

/// The TCP connector plugged into awc: resolve-and-filter, then connect to exactly the
/// addresses that passed. actix-tls's own connector skips custom resolvers for IP-literal hosts
/// (`http://127.0.0.1/`), so the guard has to sit here rather than only in a `Resolve`.
#[derive(Clone, Debug)]
struct GuardedConnector {
    resolver: GuardedResolver,
}

impl Service<ConnectInfo<Uri>> for GuardedConnector {
    type Response = TcpConnection<Uri, actix_rt::net::TcpStream>;
    type Error = TcpConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_web::dev::always_ready!();

    fn call(&self, mut req: ConnectInfo<Uri>) -> Self::Future {
        let resolver = self.resolver.clone();
        Box::pin(async move {
            // Addresses can arrive pre-set (awc's `ClientRequest::address`); they get the same
            // policy as resolved ones.
            let preset: Vec<SocketAddr> = req.take_addrs().collect();
            let addrs = if preset.is_empty() {
                resolver.resolve(req.hostname(), req.port()).await
            } else {
                resolver.filter(req.hostname(), preset)
            }
            .map_err(|e| TcpConnectError::Resolver(Box::new(e)))?;
            TcpConnectorService::default()
                .call(req.set_addrs(addrs))
                .await
        })
    }
}

/// Builds the outbound client: guarded resolution/connection, `connect_timeout` for DNS + TCP and
/// again for the TLS handshake, at most `pool_size` connections per scheme (0 = unlimited),
/// no timeout of its own for the rest of the request (the caller bounds the whole call),
/// redirects not followed (a 3xx is returned as is),
/// rustls 0.23 with the ring provider and webpki roots, and `User-Agent: tickwheel/<version>`.
///
/// awc's client is `!Send`: build one per arbiter/thread.
pub fn build_client(
    allow_private: bool,
    pool_size: usize,
    connect_timeout: Duration,
) -> awc::Client {
    let connector = awc::Connector::new()
        .connector(GuardedConnector {
            resolver: GuardedResolver { allow_private },
        })
        .rustls_0_23(Arc::new(tls_config()))
        .timeout(connect_timeout)
        .handshake_timeout(connect_timeout)
        .limit(pool_size);
    awc::Client::builder()
        .connector(connector)
        // The worker bounds the whole call (connect, send, response body) with
        // `http.request_timeout_ms`; awc's own timeout would be a second timer per call
        // covering less of it.
        .disable_timeout()
        // awc follows up to 10 redirects by default; the spec counts a 3xx as a failed attempt.
        .disable_redirects()
        .add_default_header((header::USER_AGENT, USER_AGENT))
        .finish()
}

fn tls_config() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // The provider is named explicitly: relying on the process default panics when more than
    // one rustls provider is compiled in (aws-lc-rs via another dependency, ring via sqlx).
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    // Fixed inputs (ring supports TLS 1.2 and 1.3): this cannot fail at run time.
    .expect("the ring provider supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    // What awc offers with its built-in TLS setup.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_loopback_link_local_and_special_addresses_are_forbidden() {
        for s in [
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "224.0.0.1",
            "239.255.255.250",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
            "ff02::1",
            "100::1",
            "64:ff9b:1::1",
            "2001:db8::1",
            "2001::1",
            "3fff::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
        ] {
            assert!(is_forbidden(ip(s)), "{s} should be forbidden");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "100.63.255.255",
            "169.255.0.1",
            "192.0.1.1",
            "198.20.0.1",
            "223.255.255.255",
            "2001:4860::8888",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ] {
            assert!(!is_forbidden(ip(s)), "{s} should be allowed");
        }
    }

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[tokio::test]
    async fn check_url_refuses_local_targets_unless_private_targets_are_allowed() {
        for s in [
            "http://127.0.0.1:1/",
            "http://localhost/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::1]:8080/x",
            "https://169.254.169.254/latest/meta-data/",
            "http://0x7f.1/",
            "http://2130706433/",
        ] {
            let err = check_url(&url(s), false).await.unwrap_err();
            assert!(
                matches!(err, OutboundError::Forbidden { .. }),
                "{s}: {err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.starts_with("http_endpoint: ") && msg.contains("allow_private_targets"),
                "{msg}"
            );
            check_url(&url(s), true)
                .await
                .unwrap_or_else(|e| panic!("{s} refused although allowed: {e}"));
        }
    }

    #[actix_rt::test]
    async fn a_refusal_says_the_destination_is_not_allowed_without_its_address() {
        let (port, _seen) = local_server().await;
        let create_time = check_url(&url("http://localhost/"), false)
            .await
            .unwrap_err()
            .to_string();
        let connect_time = client(false)
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err()
            .to_string();
        for msg in [create_time, connect_time] {
            assert!(msg.contains("localhost is not allowed"), "{msg}");
            for addr in ["127.0.0.1", "::1", "127.", "resolves to"] {
                assert!(!msg.contains(addr), "{addr} told in: {msg}");
            }
        }
    }

    #[tokio::test]
    async fn check_url_accepts_a_public_ip_literal_without_contacting_it() {
        check_url(&url("https://8.8.8.8/hook"), false)
            .await
            .unwrap();
        check_url(&url("http://[2001:4860::8888]:8080/"), false)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn check_url_refuses_schemes_other_than_http_and_https() {
        for s in [
            "ftp://127.0.0.1/x",
            "file:///etc/passwd",
            "gopher://8.8.8.8/",
        ] {
            let err = check_url(&url(s), true).await.unwrap_err();
            assert!(matches!(err, OutboundError::Scheme(_)), "{s}: {err:?}");
        }
    }

    #[tokio::test]
    async fn the_resolver_drops_forbidden_addresses_and_fails_when_none_remain() {
        let guarded = GuardedResolver {
            allow_private: false,
        };
        for host in ["localhost", "127.0.0.1", "[::1]", "::ffff:10.0.0.1"] {
            let err = Resolve::lookup(&guarded, host, 80).await.unwrap_err();
            assert!(err.to_string().contains("refused"), "{host}: {err}");
        }
        let mixed = vec![
            SocketAddr::new(ip("10.0.0.1"), 80),
            SocketAddr::new(ip("8.8.8.8"), 80),
        ];
        assert_eq!(
            guarded.filter("mixed.example", mixed).unwrap(),
            vec![SocketAddr::new(ip("8.8.8.8"), 80)]
        );

        let open = GuardedResolver {
            allow_private: true,
        };
        let addrs = Resolve::lookup(&open, "localhost", 80).await.unwrap();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
        assert_eq!(
            Resolve::lookup(&open, "[::1]", 81).await.unwrap(),
            vec![SocketAddr::new(ip("::1"), 81)]
        );
    }

    /// A loopback HTTP/1.1 server answering every connection once: `/redirect` with a 302 to
    /// `/ok`, anything else with `200 ok`. Returns its port and the request heads it saw.
    async fn local_server() -> (u16, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        actix_rt::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let answer = if head.starts_with("GET /redirect ") {
                    format!(
                        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/ok\r\n\
                         Content-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                } else {
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".into()
                };
                log.lock().unwrap().push(head);
                let _ = sock.write_all(answer.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        });
        (port, seen)
    }

    fn client(allow_private: bool) -> awc::Client {
        build_client(allow_private, 4, Duration::from_secs(2))
    }

    #[actix_rt::test]
    async fn the_client_refuses_local_targets_without_connecting() {
        let (port, seen) = local_server().await;
        let client = client(false);
        for target in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://localhost:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
        ] {
            let err = client.get(&target).send().await.unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("refused") && msg.contains("allow_private_targets"),
                "{target}: {msg}"
            );
        }
        // A pre-set socket address bypasses resolution; it must be refused all the same.
        let err = client
            .get("http://public.example/")
            .address(SocketAddr::new(ip("127.0.0.1"), port))
            .send()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");

        actix_rt::time::sleep(Duration::from_millis(50)).await;
        assert!(
            seen.lock().unwrap().is_empty(),
            "a refused request reached the server"
        );
    }

    #[actix_rt::test]
    async fn the_client_reaches_local_targets_when_private_targets_are_allowed() {
        let (port, seen) = local_server().await;
        let mut res = client(true)
            .get(format!("http://127.0.0.1:{port}/ok"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        assert_eq!(res.body().await.unwrap().as_ref(), b"ok");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let head = seen[0].to_ascii_lowercase();
        assert!(
            head.contains(&format!("user-agent: {}", USER_AGENT.to_ascii_lowercase())),
            "{head}"
        );
    }

    #[actix_rt::test]
    async fn a_redirect_is_returned_not_followed() {
        let (port, seen) = local_server().await;
        let res = client(true)
            .get(format!("http://127.0.0.1:{port}/redirect"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 302);
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "the redirect was followed: {seen:?}");
        assert!(seen[0].starts_with("GET /redirect "));
    }
}

//! `Application`: builds every actor and the HTTP server from `Settings`. Tests start the real
//! application on port 0 through it.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use secrecy::ExposeSecret;

use crate::actors::dispatch::{Dispatcher, HttpWorker, WorkerSettings};
use crate::actors::fence::ClusterFence;
use crate::actors::notifier::{Notifier, NotifierSettings};
use crate::actors::outbox::Outbox;
use crate::actors::persistence::{Fence, Flush, Persist, PersistenceActor};
use crate::actors::pruner::Pruner;
use crate::actors::registry::{AwaitHandOver, DrainAll, Recover, RegistryCluster, TaskRegistry};
use crate::actors::task::{CatchUpPacer, TaskDeps};
use crate::actors::wheel::{TimingWheel, WheelOp, WheelOps};
use crate::api::metrics::MetricsState;
use crate::api::{self, AppState};
use crate::cluster::membership::{Close, Leave, Membership, MembershipSettings};
use crate::cluster::redis::ClusterRedis;
use crate::cluster::{Lease, TaskCluster};
use crate::config::{Settings, DEFAULT_JWT_SECRET};
use crate::crypto::Cipher;
use crate::metrics::ActorKind;
use crate::signing::KeyRing;
use crate::store::{self, Store};

/// Installs the ring crypto provider for rustls once per process (sqlx and awc both use
/// rustls; with no process default, building a client config can panic).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub struct Application {
    address: SocketAddr,
    server: Server,
    persistence: Addr<PersistenceActor>,
    persist_outbox: Arc<Outbox<store::Write>>,
    registry: Addr<TaskRegistry>,
    ready: Arc<AtomicBool>,
    shutdown_timeout: Duration,
    membership: Option<Addr<Membership>>,
}

/// Cluster mode: who this process is.
struct Identity {
    node_id: String,
    /// `node_id/incarnation`: unique per process; partition claims record it.
    owner: String,
}

/// How many connections the kernel holds for the API until the server accepts them.
/// `std::net::TcpListener::bind` asks for 128: a burst of clients beyond that had their
/// connection attempts dropped and retried a second later. 1024 is actix-web's own default
/// (the kernel caps it at `net.core.somaxconn`).
/// Cluster mode: how often a node checks for signing keys changed through another node.
const KEY_CHANGES_EVERY: Duration = Duration::from_secs(1);
const LISTEN_BACKLOG: i32 = 1024;

/// A listening socket on the first address `bind` resolves to that can be bound, with a
/// listen queue of `backlog` (`SO_REUSEADDR` set, as the standard library does).
fn bind_listener(bind: &str, backlog: i32) -> std::io::Result<TcpListener> {
    let listen_on = |addr: SocketAddr| -> std::io::Result<TcpListener> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        Ok(socket.into())
    };
    let mut last = None;
    for addr in bind.to_socket_addrs()? {
        match listen_on(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

/// How many stored encrypted values the key file is checked against at start-up; it must open
/// one of them.
const KEY_CHECK_SAMPLE: u64 = 16;

/// A SQLite file made by an older version, or by hand, may be readable by every local user;
/// new ones are created 0600.
fn warn_if_database_file_is_shared(url: &str) {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = store::sqlite_file(url) else {
        return;
    };
    if let Ok(meta) = std::fs::metadata(&path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                %path,
                mode = %format_args!("{mode:04o}"),
                "the SQLite database file is accessible to group or others; make it readable by \
                 the service's user only (chmod 600, and its -wal and -shm files)"
            );
        }
    }
}

/// The host name, for a default node id.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}

impl Application {
    /// Connects and migrates storage, starts the actors, binds the listener and starts
    /// recovery in the background (`/readyz` answers 200 once it is done). Must be called
    /// inside an actix `System`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        install_crypto_provider();
        if settings.auth.jwt_secret.expose_secret() == DEFAULT_JWT_SECRET {
            tracing::warn!("auth.jwt_secret is the default; set a secret of your own");
        }
        // One connection: on MySQL the migrations run under a lock that belongs to it.
        let db = store::connect(&settings.database.url, 1)
            .await
            .with_context(|| "while connecting to database.url")?;
        store::migrate(&db)
            .await
            .with_context(|| "while applying migrations")?;
        warn_if_database_file_is_shared(&settings.database.url);
        // The key is checked against what the database holds before anything runs: with a
        // missing or different key every task with headers would fail to load while the
        // service looked healthy. A new key is made only for a database without secrets.
        let sealed = store::sealed_sample(&db, KEY_CHECK_SAMPLE)
            .await
            .with_context(|| "while reading encrypted values to check crypto.key_file")?;
        let cipher = Arc::new(
            Cipher::load(&settings.crypto.key_file, &sealed)
                .with_context(|| "while loading crypto.key_file")?,
        );
        // A fresh pool: a pooled SQLite connection that read the schema while the migrations
        // ran keeps that copy, and then fails to prepare a statement that needs what they
        // added (the log upsert's conflict target) — seen as a lost first log row.
        db.close()
            .await
            .with_context(|| "while closing the migration pool")?;
        // Cluster mode: a frozen node's open transaction must not hold its locks until it
        // wakes up; the server ends it within half a session timeout.
        let idle_txn = settings
            .cluster
            .enabled
            .then(|| Duration::from_millis(settings.cluster.session_timeout_ms / 2));
        let db = store::connect_with(
            &settings.database.url,
            settings.database.max_connections,
            idle_txn,
        )
        .await
        .with_context(|| "while connecting to database.url")?;
        let store = Store::new(db.clone(), cipher);
        // Loaded before any task fires, so the first call after a restart is signed too.
        let keys = KeyRing::new();
        keys.replace_all(
            store
                .signing_secrets(None)
                .await
                .with_context(|| "while loading the signing keys")?,
        );
        if settings.cluster.enabled {
            // Keys created or revoked through another node: seen within a second.
            let (a, b) = (store.clone(), store.clone());
            keys.follow(
                KEY_CHANGES_EVERY,
                move || {
                    let s = a.clone();
                    async move { s.signing_keys_fingerprint().await }
                },
                move || {
                    let s = b.clone();
                    async move { s.signing_secrets(None).await }
                },
            );
        }
        let metrics_handle = if settings.metrics.enabled {
            crate::metrics::install()
        } else {
            None
        };

        // Bound early: a cluster node's default id and address come from it.
        let listener = bind_listener(&settings.server.bind, LISTEN_BACKLOG)
            .with_context(|| format!("while binding server.bind = {}", settings.server.bind))?;
        let address = listener.local_addr()?;
        let cs = &settings.cluster;
        let identity = cs.enabled.then(|| {
            let node_id = if cs.node_id.trim().is_empty() {
                format!("{}-{}", host_name(), address.port())
            } else {
                cs.node_id.trim().to_string()
            };
            Identity {
                owner: format!("{node_id}/{}", uuid::Uuid::new_v4().simple()),
                node_id,
            }
        });
        let lease = Arc::new(if identity.is_some() {
            Lease::new()
        } else {
            Lease::unlimited()
        });
        let redis = match &identity {
            Some(id) => Some(
                ClusterRedis::new(
                    &settings.redis.url,
                    &cs.root,
                    id.owner.clone(),
                    // Long enough to outlast any hand-over of the slot it guards.
                    Duration::from_millis(cs.session_timeout_ms * 4).max(Duration::from_secs(60)),
                )
                .with_context(|| "while reading redis.url")?,
            ),
            None => None,
        };

        // History retention, on an arbiter of its own (README, "History retention").
        if settings.retention.enabled {
            let store = store.clone();
            let retention = settings.retention.clone();
            Pruner::start_in_arbiter(&Arbiter::new().handle(), move |_| {
                Pruner::new(store, retention)
            });
        }
        // Each arbiter is a thread of its own that runs until the system stops; dropping the
        // `Arbiter` value only detaches it.
        let wheel = TimingWheel::start_in_arbiter(&Arbiter::new().handle(), |_| TimingWheel::new());

        let h = &settings.http;
        let per_worker = h.pool_size.div_ceil(h.workers).max(1);
        let mut workers = Vec::with_capacity(h.workers);
        for _ in 0..h.workers {
            let ws = WorkerSettings {
                allow_private: h.allow_private_targets,
                pool_size: per_worker,
                connect_timeout: Duration::from_millis(h.connect_timeout_ms),
                request_timeout: Duration::from_millis(h.request_timeout_ms),
                max_response_bytes: h.max_response_bytes,
                keys: keys.clone(),
            };
            let worker = HttpWorker::start_in_arbiter(&Arbiter::new().handle(), move |_| {
                HttpWorker::new(ws)
            });
            workers.push(worker);
        }
        let dispatcher = Arc::new(Dispatcher::new(
            workers,
            settings.ratelimit.per_host_rps,
            settings.ratelimit.per_host_burst,
        ));
        // Notifications are delivered on an arbiter of their own, through the same workers
        // and buckets as the tasks' calls (README, "Notifications").
        let notifier = {
            let store = store.clone();
            let dispatcher = dispatcher.clone();
            let settings = NotifierSettings {
                owner: identity.as_ref().map_or_else(
                    || format!("standalone/{}", uuid::Uuid::new_v4().simple()),
                    |id| id.owner.clone(),
                ),
                max_retries: h.max_retries,
                backoff_ms: h.backoff_base_ms,
                request_timeout_ms: h.request_timeout_ms,
                release_claims_at_start: identity.is_none(),
            };
            Notifier::start_in_arbiter(&Arbiter::new().handle(), move |_| {
                Notifier::new(store, dispatcher, settings)
            })
        };
        // On its own arbiter: building and running statements must not hold up the fire path.
        let persistence = {
            let db = db.clone();
            let fence = identity.as_ref().map(|id| Fence {
                owner: id.owner.clone(),
                partitions: cs.partitions,
            });
            PersistenceActor::start_in_arbiter(&Arbiter::new().handle(), move |_| {
                let actor = PersistenceActor::new(db).with_notifier(notifier.recipient());
                match fence {
                    Some(f) => actor.with_fence(f),
                    None => actor,
                }
            })
        };
        let metrics_state = metrics_handle.map(|handle| {
            web::Data::new(MetricsState {
                handle,
                store: store.clone(),
                wheel: wheel.clone(),
            })
        });
        // Task actors reach the wheel and persistence through outboxes: one message per turn
        // of their arbiter (per 5 ms for writes, which wait for a quiet moment anyway)
        // instead of one per registration or write.
        let wheel_outbox = Outbox::new(Duration::ZERO, move |ops: Vec<WheelOp>| {
            crate::metrics::sent(ActorKind::Wheel);
            wheel.do_send(WheelOps(ops));
        });
        let persist_outbox = {
            let persistence = persistence.clone();
            Outbox::new(
                Duration::from_millis(5),
                move |writes: Vec<store::Write>| {
                    crate::metrics::sent(ActorKind::Persistence);
                    persistence.do_send(Persist(writes));
                },
            )
        };
        // Cluster mode: one ordered writer of the pending queue; task actors' updates reach
        // it in batches per 20 ms.
        let queue = redis.as_ref().map(|r| r.queue_writer());
        let task_cluster = match (&redis, &queue) {
            (Some(r), Some(q)) => {
                let q = q.clone();
                let outbox = Outbox::new(Duration::from_millis(20), move |ops| q.push(ops));
                let fence: Arc<dyn ClusterFence> = Arc::new(TaskCluster::new(
                    lease.clone(),
                    r.clone(),
                    cs.partitions,
                    move |op| outbox.push(op),
                ));
                Some(fence)
            }
            _ => None,
        };
        let registry_cluster = identity.as_ref().map(|id| RegistryCluster {
            owner: id.owner.clone(),
            persistence: persistence.clone(),
        });
        let registry = {
            let persistence = persist_outbox.clone();
            let store = store.clone();
            let partitions = cs.partitions;
            TaskRegistry::create(move |ctx| {
                // Task actors tell the registry that their task finished.
                let deps = Arc::new(TaskDeps {
                    wheel: wheel_outbox,
                    dispatcher,
                    persistence,
                    registry: ctx.address().recipient(),
                    store,
                    default_max_retries: h.max_retries,
                    default_backoff_ms: h.backoff_base_ms,
                    cluster: task_cluster,
                    pacer: CatchUpPacer::default(),
                });
                TaskRegistry::new(deps, partitions, registry_cluster)
            })
        };

        let membership = match (&identity, &redis) {
            (Some(id), Some(redis)) => {
                redis.subscribe(registry.clone().recipient(), registry.clone().recipient());
                let advertise = if cs.advertise.trim().is_empty() {
                    address.to_string()
                } else {
                    cs.advertise.trim().to_string()
                };
                tracing::info!(node_id = %id.node_id, %advertise, zookeeper = %cs.zookeeper, root = %cs.root, "cluster mode");
                let ms = MembershipSettings {
                    node_id: id.node_id.clone(),
                    owner: id.owner.clone(),
                    address: advertise,
                    connect: cs.zookeeper.clone(),
                    root: cs.root.clone(),
                    session_timeout: Duration::from_millis(cs.session_timeout_ms),
                    partitions: cs.partitions,
                };
                let owned = registry.clone().recipient();
                let lease = lease.clone();
                Some(Membership::new(ms, owned, lease).start())
            }
            _ => None,
        };

        let ready = Arc::new(AtomicBool::new(false));
        let state = web::Data::new(AppState {
            store,
            persistence: persistence.clone(),
            registry: registry.clone(),
            jwt_secret: settings.auth.jwt_secret.clone(),
            max_body_bytes: settings.server.max_body_bytes,
            input_limits: settings.input_limits(),
            quotas: crate::quota::Quotas::new(&settings.limits, settings.cluster.enabled),
            allow_private_targets: h.allow_private_targets,
            ready: ready.clone(),
            cluster: match (&membership, &redis, &queue) {
                (Some(m), Some(r), Some(q)) => Some(api::ClusterApi {
                    membership: m.clone(),
                    redis: r.clone(),
                    queue: q.clone(),
                }),
                _ => None,
            },
            keys: keys.clone(),
            partitions: cs.partitions,
            node_id: identity
                .as_ref()
                .map_or_else(|| "standalone".to_string(), |id| id.node_id.clone()),
            address: address.to_string(),
        });
        let shutdown = Duration::from_millis(settings.server.shutdown_timeout_ms);
        let server = HttpServer::new(move || {
            let mut app = App::new().app_data(state.clone());
            if let Some(m) = &metrics_state {
                app = app
                    .app_data(m.clone())
                    .route("/metrics", web::get().to(api::metrics::scrape));
            }
            app.configure(api::configure)
                .configure(crate::console::configure)
                .default_service(web::to(api::not_found))
        })
        .listen(listener)?
        .shutdown_timeout(shutdown.as_secs().max(1))
        // Signals are handled in `run_until_stopped`: actix-server's own handling would stop
        // the whole system, workers included, before executions in flight could finish.
        .disable_signals()
        .run();
        tracing::info!(%address, "tickwheel listening on http://{address}");

        Ok(Self {
            address,
            server,
            persistence,
            persist_outbox,
            registry,
            ready,
            shutdown_timeout: shutdown,
            membership,
        })
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Recovers the stored tasks and serves until SIGTERM/SIGINT. Then, in order: the server
    /// stops accepting and finishes the requests it has; every task stops firing and the
    /// requests on the wire finish (both bounded by `server.shutdown_timeout_ms`); the
    /// persistence actor writes everything it holds.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let registry = self.registry.clone();
        let ready = self.ready.clone();
        actix_rt::spawn(async move {
            crate::metrics::sent(ActorKind::Registry);
            match registry.send(Recover).await {
                Ok(Ok(n)) => {
                    tracing::info!(tasks = n, "recovery done");
                    ready.store(true, Ordering::Release);
                }
                Ok(Err(e)) => tracing::error!(error = %e, "recovery failed"),
                Err(e) => tracing::error!(error = %e, "recovery failed"),
            }
        });
        let handle = self.server.handle();
        let mut server = self.server;
        let result = tokio::select! {
            r = &mut server => r,
            signal = shutdown_signal() => {
                tracing::info!(signal, "shutting down: no new requests");
                // The server future must be polled for the stop to make progress.
                let (r, ()) = futures_util::future::join(server, handle.stop(true)).await;
                r
            }
        };
        tracing::info!("shutting down: letting executions in flight finish");
        // In a cluster the partitions wait for this drain: a call slower than a couple of
        // seconds is not waited for before the hand-over (its slot is not sent again: this
        // node holds its guard), so the other tasks do not miss their next slots.
        let drain = match &self.membership {
            Some(_) => self.shutdown_timeout.min(Duration::from_secs(2)),
            None => self.shutdown_timeout,
        };
        crate::metrics::sent(ActorKind::Registry);
        match self.registry.send(DrainAll { timeout: drain }).await {
            Ok(true) => {}
            _ => tracing::warn!(
                timeout_ms = self.shutdown_timeout.as_millis() as u64,
                "executions still in flight at the shutdown timeout were abandoned"
            ),
        }
        // What the drained tasks wrote last may still wait in the outbox.
        self.persist_outbox.flush();
        crate::metrics::sent(ActorKind::Persistence);
        let _ = self.persistence.send(Flush).await;
        if let Some(m) = &self.membership {
            // Only now, with every task's state committed, are the partitions handed over:
            // the nodes that take them load the tasks exactly as this node left them.
            let started = std::time::Instant::now();
            crate::metrics::sent(ActorKind::Membership);
            let _ = m.send(Leave).await;
            crate::metrics::sent(ActorKind::Registry);
            let _ = self
                .registry
                .send(AwaitHandOver {
                    timeout: self.shutdown_timeout,
                })
                .await;
            tracing::info!(
                ms = started.elapsed().as_millis() as u64,
                "left the cluster; partitions released"
            );
            crate::metrics::sent(ActorKind::Membership);
            let _ = m.send(Close).await;
        }
        tracing::info!("shut down");
        result
    }
}

/// Resolves on SIGTERM or SIGINT, naming it.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            tracing::error!("cannot listen for SIGTERM/SIGINT; stop with SIGKILL");
            std::future::pending().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing accepts: every connection of a burst waits in the listen queue. With the
    /// standard library's queue of 128, the rest had their handshakes dropped and retried a
    /// second later.
    #[tokio::test]
    async fn the_api_listener_holds_a_burst_of_connections_until_they_are_accepted() {
        let listener = bind_listener("127.0.0.1:0", LISTEN_BACKLOG).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let burst = 512;
        let connects = (0..burst).map(|_| {
            tokio::time::timeout(
                Duration::from_millis(900),
                tokio::net::TcpStream::connect(addr),
            )
        });
        let results = futures_util::future::join_all(connects).await;
        let connected: Vec<_> = results.into_iter().flatten().flatten().collect();
        assert_eq!(
            connected.len(),
            burst,
            "connections established within 0.9 s, none accepted yet"
        );
        drop(listener);
    }

    #[test]
    fn the_listener_binds_a_host_name_and_names_an_address_in_use() {
        let listener = bind_listener("localhost:0", LISTEN_BACKLOG).expect("bind localhost");
        let addr = listener.local_addr().expect("addr");
        assert!(addr.ip().is_loopback(), "{addr}");
        let v4 = bind_listener("127.0.0.1:0", LISTEN_BACKLOG).expect("bind");
        let taken = v4.local_addr().expect("addr").to_string();
        let err = bind_listener(&taken, LISTEN_BACKLOG).expect_err("the port is taken");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    }
}

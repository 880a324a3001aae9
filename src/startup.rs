//! `Application`: builds every actor and the HTTP server from `Settings`. Tests start the real
//! application on port 0 through it.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use secrecy::ExposeSecret;

use crate::actors::dispatch::{Dispatcher, HttpWorker, WorkerSettings};
use crate::actors::persistence::{Flush, PersistenceActor};
use crate::actors::registry::{Recover, RegistryDeps, TaskRegistry};
use crate::actors::wheel::TimingWheel;
use crate::api::{self, AppState};
use crate::config::{Settings, DEFAULT_JWT_SECRET};
use crate::crypto::Cipher;
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
    registry: Addr<TaskRegistry>,
    ready: Arc<AtomicBool>,
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
        let cipher = Arc::new(
            Cipher::load_or_create(&settings.crypto.key_file)
                .with_context(|| "while loading crypto.key_file")?,
        );
        let db = store::connect(&settings.database.url, settings.database.max_connections)
            .await
            .with_context(|| "while connecting to database.url")?;
        store::migrate(&db)
            .await
            .with_context(|| "while applying migrations")?;
        let store = Store::new(db.clone(), cipher);

        let persistence = PersistenceActor::new(db).start();
        let wheel_arbiter = Arbiter::new();
        let wheel = TimingWheel::start_in_arbiter(&wheel_arbiter.handle(), |_| TimingWheel::new());

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
            };
            let arbiter = Arbiter::new();
            workers.push(HttpWorker::start_in_arbiter(&arbiter.handle(), move |_| {
                HttpWorker::new(ws)
            }));
            // The arbiter's thread lives as long as the process; its handle is not needed.
            std::mem::forget(arbiter);
        }
        std::mem::forget(wheel_arbiter);
        let dispatcher = Dispatcher::new(
            workers,
            settings.ratelimit.per_host_rps,
            settings.ratelimit.per_host_burst,
        )
        .start();
        let registry = TaskRegistry::new(RegistryDeps {
            wheel,
            dispatcher,
            persistence: persistence.clone(),
            store: store.clone(),
            default_max_retries: h.max_retries,
            default_backoff_ms: h.backoff_base_ms,
        })
        .start();

        let ready = Arc::new(AtomicBool::new(false));
        let state = web::Data::new(AppState {
            store,
            persistence: persistence.clone(),
            registry: registry.clone(),
            jwt_secret: settings.auth.jwt_secret.clone(),
            max_body_bytes: settings.server.max_body_bytes,
            allow_private_targets: h.allow_private_targets,
            ready: ready.clone(),
        });

        let listener = TcpListener::bind(&settings.server.bind)
            .with_context(|| format!("while binding server.bind = {}", settings.server.bind))?;
        let address = listener.local_addr()?;
        let shutdown = Duration::from_millis(settings.server.shutdown_timeout_ms);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(api::configure)
                .default_service(web::to(api::not_found))
        })
        .listen(listener)?
        .shutdown_timeout(shutdown.as_secs().max(1))
        .run();
        tracing::info!(%address, "tickwheel listening on http://{address}");

        Ok(Self {
            address,
            server,
            persistence,
            registry,
            ready,
        })
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Recovers the stored tasks, serves until the server stops (SIGINT/SIGTERM), then
    /// flushes every pending write.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let registry = self.registry.clone();
        let ready = self.ready.clone();
        actix_rt::spawn(async move {
            match registry.send(Recover).await {
                Ok(Ok(n)) => {
                    tracing::info!(tasks = n, "recovery done");
                    ready.store(true, Ordering::Release);
                }
                Ok(Err(e)) => tracing::error!(error = %e, "recovery failed"),
                Err(e) => tracing::error!(error = %e, "recovery failed"),
            }
        });
        let result = self.server.await;
        let _ = self.persistence.send(Flush).await;
        result
    }
}

//! tickwheel: a distributed HTTP task scheduler driven by an actor timing wheel.
//!
//! Every module, from the edge inward. `tests/layers.rs` holds the directions that matter
//! most: `domain` and `wheel` depend on nothing of the service, `actors` reach neither
//! `cluster` nor `api`, and no handler depends on the OpenAPI assembly.
//!
//! - [`api`]: the REST edge — handlers (parse → authorise → call → view), the wire types they
//!   answer with, the error code table, `/metrics`, the OpenAPI document and Swagger UI.
//! - [`console`]: the web console at `/` — server-rendered pages over the very operations the
//!   API handlers call, with the signed-in user's token (cookie) and CSRF checks.
//! - [`service`]: the use cases behind the handlers: a task's create, patch, cancel and delete
//!   (commit, then activate, then notify the cluster), with the optimistic-lock retry.
//! - [`startup`]: builds every actor and the HTTP server from the configuration.
//! - [`cluster`]: cluster mode — the Membership actor (ZooKeeper), the fencing lease, the
//!   Redis fire guard, pending queues and change notices.
//! - [`actors`]: the registry, task, timing-wheel, HTTP-worker and persistence actors, which
//!   carry out what the domain decides; they hear of the cluster only through messages and the
//!   `actors::fence` trait.
//! - [`store`]: the storage edge — connection and migrations, reads, the row codec, writes.
//! - [`quota`]: per-user quotas, reserved before a write and committed with it.
//! - [`auth`]: bearer tokens (issue, verify, who may act for whom).
//! - [`net`]: outbound address safety and the HTTP client that fires tasks.
//! - [`crypto`]: secrets at rest (AES-256-GCM header values, the key file).
//! - [`signing`]: users' signing keys in memory and the Standard Webhooks signature every
//!   outbound call carries.
//! - [`metrics`]: metric names and recording; [`telemetry`]: logging.
//! - [`config`]: layered configuration (defaults, TOML, environment).
//! - [`healthcheck`]: the dependency-free probe behind `tickwheel healthcheck`.
//! - [`domain`]: the task model, schedules and cron, stop conditions, validation and a task's
//!   run rules — plain data and pure functions, free of actix and SeaORM.
//! - [`wheel`]: the hierarchical timing wheel, a plain data structure.
//! - [`time`]: the clock (epoch milliseconds) and its formatting.

pub mod actors;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod console;
pub mod crypto;
pub mod domain;
pub mod healthcheck;
pub mod metrics;
pub mod net;
pub mod quota;
pub mod service;
pub mod signing;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod wheel;

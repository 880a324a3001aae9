//! tickwheel: a distributed HTTP task scheduler driven by an actor timing wheel.
//!
//! The layout follows the architecture: `domain` (task model, schedules, stop conditions,
//! validation — free of actix and SeaORM), `wheel` (the hierarchical timing wheel as a plain
//! data structure), `actors` (registry, task, wheel, HTTP workers, persistence), `service` (the task
//! use cases: commit, activate, notify), `api` (thin REST handlers and the wire format),
//! `store` (the storage edge) and `startup` (wiring).

pub mod actors;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod healthcheck;
pub mod metrics;
pub mod net;
pub mod quota;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod wheel;

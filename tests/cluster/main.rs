//! Cluster mode against the real binary: three or four `tickwheel serve` processes sharing a
//! fresh MariaDB database, a private Redis and a private ZooKeeper, loaded with interval tasks
//! that call an in-process sink; then nodes are killed, terminated, frozen and added, and Redis
//! and ZooKeeper restarted, while the sink counts what arrived per (task, slot).
//!
//! Needs MariaDB at 127.0.0.1:3306 (root, no password), `java` and the Debian `zookeeper`
//! package (/usr/share/java/zookeeper.jar), and `redis-server`; scripts/test.sh installs the
//! last two. Heavy: .config/nextest.toml runs these tests one at a time, alone.
//! `TW_CLUSTER_TASKS` changes the load (default 1000 tasks at 1 s).

#[path = "../common/child.rs"]
mod child;
#[path = "../common/mariadb.rs"]
mod mariadb;

mod analysis;
mod cluster;
mod db;
#[path = "../api/sink.rs"]
mod hooks;
mod node;
mod partition;
mod procs;
mod redis;
mod sink;
mod zookeeper;

mod api;
mod failover;
mod infra;
mod join;
mod notify;
mod pause;
mod reconcile;
mod run_now;
mod signing;
mod steady;

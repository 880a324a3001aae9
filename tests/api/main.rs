//! Integration tests: the real application on port 0, a temporary database (SQLite and
//! MariaDB), and a local sink standing in for the downstream services.

#[path = "../common/child.rs"]
mod child;
mod helpers;
#[path = "../common/mariadb.rs"]
mod mariadb;
mod sink;

mod cli;
mod cluster_view;
mod dry_run;
mod edges;
mod isolation;
mod key_file;
mod lifecycle;
mod log_filters;
mod metrics;
mod migrations;
mod misfire;
mod notify;
mod openapi;
mod outbound;
mod pause;
mod preview;
mod quartz;
mod query_plans;
mod quotas;
mod recovery;
mod retention;
mod run_now;
mod search;
mod shutdown;
mod signing;
mod smoke;
mod storage_limits;
mod store;
mod validation;

//! Opening the database: the pool and its per-connection settings, the migrations (under a
//! lock, since a cluster's nodes may start together), the private SQLite file, and the sample
//! of sealed values start-up checks the key file against. Everything here runs before the
//! service takes its first request.

use std::time::Duration;

use entities::{signing_keys, tasks};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QuerySelect,
};
use uuid::Uuid;

use crate::crypto::Sealed;

/// Connects to `url` (SQLite or MySQL/MariaDB).
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    connect_with(url, max_connections, None).await
}

/// Connects to `url`; on MySQL/MariaDB with `idle_transaction_timeout`, the server ends a
/// connection that sits idle inside a transaction for longer (cluster mode: a node frozen in
/// the middle of a commit must not keep the rows it locked — its partition claims among
/// them — past the moment its partitions are given to others). MariaDB has a setting for
/// exactly that; on MySQL the connection's `wait_timeout` is used.
pub async fn connect_with(
    url: &str,
    max_connections: u32,
    idle_transaction_timeout: Option<Duration>,
) -> Result<DatabaseConnection, DbErr> {
    if let Some(path) = sqlite_file(url) {
        if let Some(dir) = std::path::Path::new(&path).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| DbErr::Custom(format!("creating {}: {e}", dir.display())))?;
            }
        }
        if creates_if_missing(url) {
            create_private_file(std::path::Path::new(&path))?;
        }
    }
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false)
        // On every pooled connection (a PRAGMA run through the pool reaches only one): WAL
        // lets API reads proceed while the persistence actor writes; NORMAL sync is durable
        // across process crashes (only an OS crash can lose the last commits).
        .map_sqlx_sqlite_opts(|o| {
            o.pragma("journal_mode", "WAL")
                .pragma("synchronous", "NORMAL")
        });
    if let Some(t) = idle_transaction_timeout {
        let secs = Ord::max(t.as_secs(), 1);
        opts.map_sqlx_mysql_pool_opts(move |o| {
            o.after_connect(move |conn, _| {
                Box::pin(async move {
                    use sea_orm::sqlx::{query, AssertSqlSafe};
                    // A number of seconds, formatted here: nothing from outside.
                    let mariadb = format!("SET SESSION idle_transaction_timeout = {secs}");
                    if query(AssertSqlSafe(mariadb))
                        .execute(&mut *conn)
                        .await
                        .is_err()
                    {
                        let mysql = format!("SET SESSION wait_timeout = {secs}");
                        query(AssertSqlSafe(mysql)).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
        });
    }
    Database::connect(opts).await
}

/// Applies the migrations. On MySQL/MariaDB, under a named lock: the nodes of a cluster may
/// start at the same moment on one database. Give it a pool of one connection (the lock
/// belongs to the connection that took it).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    let mysql = db.get_database_backend() == sea_orm::DatabaseBackend::MySql;
    if mysql {
        let got = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::MySql,
                "SELECT GET_LOCK('tickwheel_migrations', 120) AS got",
            ))
            .await?
            .and_then(|row| row.try_get::<Option<i64>>("", "got").ok().flatten());
        if got != Some(1) {
            return Err(DbErr::Custom(
                "another node held the migration lock for 120 s; not migrating".into(),
            ));
        }
    }
    let result = Migrator::up(db, None).await;
    if mysql {
        let _ = db
            .execute_unprepared("SELECT RELEASE_LOCK('tickwheel_migrations')")
            .await;
    }
    result
}

/// Up to `limit` encrypted values the database holds (task headers, and as many signing
/// keys), each with the associated
/// data it was sealed with; empty when it holds none. Start-up checks the key file against
/// them before anything else reads or writes a secret.
pub async fn sealed_sample<C: ConnectionTrait>(db: &C, limit: u64) -> Result<Vec<Sealed>, DbErr> {
    let rows: Vec<(String, Option<Vec<u8>>)> = tasks::Entity::find()
        .select_only()
        .column(tasks::Column::TaskId)
        .column(tasks::Column::Headers)
        .filter(tasks::Column::Headers.is_not_null())
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    // Signing keys are sealed under the same key: a database holding only those is not empty.
    let keys: Vec<(String, Vec<u8>)> = signing_keys::Entity::find()
        .select_only()
        .column(signing_keys::Column::KeyId)
        .column(signing_keys::Column::Secret)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, blob)| blob.map(|blob| (id, blob)))
        .chain(keys)
        .map(|(id, blob)| {
            // A row whose id does not parse is still an encrypted value: it stays in the
            // sample (under bytes no key opens) rather than making the database look empty.
            let aad =
                Uuid::parse_str(&id).map_or_else(|_| id.into_bytes(), |u| u.as_bytes().to_vec());
            Sealed { aad, blob }
        })
        .collect())
}

/// Whether a SQLite URL lets the driver create a missing file (`mode=rwc`).
fn creates_if_missing(url: &str) -> bool {
    url.split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|p| p == "mode=rwc"))
}

/// Creates an empty SQLite file readable by its owner only, unless it exists. The driver would
/// create it with the process umask (usually 0644: every local user could read the tasks);
/// SQLite gives the `-wal` and `-shm` files the mode of the database file.
fn create_private_file(path: &std::path::Path) -> Result<(), DbErr> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(DbErr::Custom(format!("creating {}: {e}", path.display()))),
    }
}

/// The file behind a SQLite URL, if it names one.
pub fn sqlite_file(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        None
    } else {
        Some(path.to_string())
    }
}

//! A database of its own on the machine's MariaDB for one test, and its removal. Shared by
//! `tests/api` and `tests/cluster`.
#![allow(dead_code)]

use sea_orm::{ConnectionTrait, Statement};

/// MariaDB on the machine; a test that needs it fails loudly when it is not there.
pub const MYSQL_SERVER: &str = "mysql://root@127.0.0.1:3306";

/// Creates a database named `{prefix}_{uuid}`; answers its URL and name.
pub async fn create_database(prefix: &str) -> (String, String) {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(format!("{MYSQL_SERVER}/test"))
        .await
        .unwrap_or_else(|e| panic!("MariaDB must be running at {MYSQL_SERVER} for this test: {e}"));
    admin
        .execute_unprepared(&format!("CREATE DATABASE `{name}`"))
        .await
        .expect("create test database");
    let _ = admin.close().await;
    (format!("{MYSQL_SERVER}/{name}"), name)
}

/// Drops database `name`, from a thread with a runtime of its own (it runs in `Drop`, maybe
/// on the thread the app's actors live on). Connections still using it (an app that cannot
/// commit while this blocks, a killed node's) are killed first, or DROP DATABASE would wait
/// on a transaction that can never finish.
pub fn drop_database(name: String) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let Ok(db) = sea_orm::Database::connect(format!("{MYSQL_SERVER}/test")).await else {
                return;
            };
            let _ = db
                .execute_unprepared("SET SESSION lock_wait_timeout = 10")
                .await;
            let ids = db
                .query_all_raw(Statement::from_sql_and_values(
                    db.get_database_backend(),
                    "SELECT id FROM information_schema.processlist WHERE db = ?",
                    [name.clone().into()],
                ))
                .await
                .unwrap_or_default();
            for row in ids {
                if let Ok(id) = row.try_get_by_index::<u64>(0) {
                    let _ = db.execute_unprepared(&format!("KILL {id}")).await;
                }
            }
            let _ = db
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS `{name}`"))
                .await;
            let _ = db.close().await;
        });
    })
    .join();
}

//! The key file against the database it belongs to, with the real binary: a key that is missing
//! or is not the one the stored headers were sealed with must stop start-up with a message that
//! names the file (a new key would leave every task with headers unloadable while `/readyz`
//! said ready), a new key is made only for a database without secrets, a key file others can
//! read is warned about, and the SQLite file is created readable by its owner only.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::json;

use crate::child::{drain, ChildGuard};
use crate::helpers::Backend;
use crate::on_both_backends;
use crate::recovery::{now_ms, once_body, pause, Server, Setup, EVENT_WAIT, PROCESS_WAIT};
use crate::sink::Sink;

/// A `tickwheel serve` that ended by itself.
struct Ended {
    code: Option<i32>,
    stderr: String,
}

/// Runs `cmd`, which should stop on its own, and returns how it ended; fails the test if it is
/// still running after `PROCESS_WAIT` (it started serving instead of refusing).
async fn refused_start(mut cmd: Command) -> Ended {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = ChildGuard(cmd.spawn().expect("spawn tickwheel serve"));
    let (stderr, reader) = drain(child.0.stderr.take().expect("stderr"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.exited() {
            break status;
        }
        if start.elapsed() > PROCESS_WAIT {
            child.kill9();
            let _ = reader.join();
            panic!(
                "tickwheel kept running instead of refusing to start; stderr:\n{}",
                stderr.lock().unwrap()
            );
        }
        pause(20).await;
    };
    let _ = reader.join();
    let stderr = stderr.lock().unwrap().clone();
    Ended {
        code: status.code(),
        stderr,
    }
}

/// `cmd` run through `sh` with umask 022, the usual default: a file the service creates
/// without choosing its mode comes out readable by everyone, whatever the umask of the test.
fn under_umask_022(cmd: Command) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        sh.current_dir(dir);
    }
    sh
}

fn write_key(path: &Path, key: &[u8], mode: u32) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .expect("write key file");
    f.write_all(key).expect("write key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod key");
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Starts the service on a fresh setup, stores a task with a secret header that is due
/// `due_in_ms` from now, and kills the service; returns the task id and the key it used.
async fn store_a_task_with_headers(setup: &Setup, sink: &Sink, path: &str) -> (String, Vec<u8>) {
    let mut server = setup.serve().await;
    let mut body = once_body(sink, path, now_ms() + 1500);
    body["headers"] = json!({"X-Secret": "kept-at-rest"});
    let id = server.create_id(&body).await;
    server.kill9();
    let key = std::fs::read(setup.key_file()).expect("the key file of the first start");
    (id, key)
}

pub(crate) async fn a_missing_key_file_stops_start_up_while_encrypted_headers_are_stored(
    backend: Backend,
) {
    const PATH: &str = "/key/missing";
    let sink = Sink::start();
    let setup = Setup::new(backend).await;
    let key_file = setup.key_file();
    let (id, key) = store_a_task_with_headers(&setup, &sink, PATH).await;

    std::fs::remove_file(&key_file).expect("remove key file");
    let ended = refused_start(setup.command(&["serve"], &[])).await;
    assert_ne!(ended.code, Some(0), "stderr:\n{}", ended.stderr);
    let path = key_file.display().to_string();
    assert!(
        ended.stderr.contains(&path),
        "the message must name {path}:\n{}",
        ended.stderr
    );
    assert!(
        ended.stderr.contains("backup") && ended.stderr.contains("crypto.key_file"),
        "the message must say what to do:\n{}",
        ended.stderr
    );
    assert!(
        !key_file.exists(),
        "no new key may be written while the database holds encrypted values"
    );

    // Restoring the file from the backup brings the task back, header and all.
    write_key(&key_file, &key, 0o600);
    let server = setup.serve().await;
    let got = sink.wait_for(PATH, 1, EVENT_WAIT).await;
    assert_eq!(got[0].header("x-secret"), Some("kept-at-rest"));
    server.wait_task(&id, |v| v["status"] == "completed").await;
}

pub(crate) async fn a_replaced_key_file_stops_start_up_naming_its_path(backend: Backend) {
    const PATH: &str = "/key/replaced";
    let sink = Sink::start();
    let setup = Setup::new(backend).await;
    let key_file = setup.key_file();
    let (_, key) = store_a_task_with_headers(&setup, &sink, PATH).await;

    let other: Vec<u8> = key.iter().map(|b| b ^ 0x5a).collect();
    write_key(&key_file, &other, 0o600);
    let ended = refused_start(setup.command(&["serve"], &[])).await;
    assert_ne!(ended.code, Some(0), "stderr:\n{}", ended.stderr);
    let path = key_file.display().to_string();
    assert!(
        ended.stderr.contains(&path) && ended.stderr.contains("does not open"),
        "the message must name {path} and say the key does not fit:\n{}",
        ended.stderr
    );
    assert_eq!(
        std::fs::read(&key_file).expect("read key file"),
        other,
        "the key file is left as it is"
    );
    assert!(
        sink.arrivals(PATH).is_empty(),
        "nothing may run without its headers"
    );
}

/// A database that holds tasks but no encrypted value has nothing a new key could fail to
/// open: a start without the key file creates one, private.
pub(crate) async fn a_database_without_encrypted_values_gets_a_new_private_key(backend: Backend) {
    const PATH: &str = "/key/no-headers";
    let sink = Sink::start();
    let setup = Setup::new(backend).await;
    let key_file = setup.key_file();
    let mut first = setup.serve().await;
    let id = first.create_id(&once_body(&sink, PATH, now_ms())).await;
    first.wait_task(&id, |v| v["status"] == "completed").await;
    first.kill9();

    std::fs::remove_file(&key_file).expect("remove key file");
    let mut second = Server::start(under_umask_022(setup.command(&["serve"], &[]))).await;
    assert_eq!(std::fs::metadata(&key_file).expect("a new key").len(), 32);
    assert_eq!(mode_of(&key_file), 0o600, "the new key must be private");
    let mut body = once_body(&sink, PATH, now_ms());
    body["headers"] = json!({"X-Secret": "under-the-new-key"});
    second.create_id(&body).await;
    let got = sink.wait_for(PATH, 2, EVENT_WAIT).await;
    assert_eq!(got[1].header("x-secret"), Some("under-the-new-key"));
    second.kill9();
}

pub(crate) async fn a_key_file_readable_by_others_is_used_with_a_warning(backend: Backend) {
    const PATH: &str = "/key/shared";
    let sink = Sink::start();
    let setup = Setup::new(backend).await;
    let key_file = setup.key_file();
    write_key(&key_file, &[7u8; 32], 0o644);
    let mut server = setup.serve().await;
    let mut body = once_body(&sink, PATH, now_ms());
    body["headers"] = json!({"X-Secret": "readable-key"});
    server.create_id(&body).await;
    sink.wait_for(PATH, 1, EVENT_WAIT).await;
    server.kill9();

    let log = server.stderr();
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("key file"))
        .unwrap_or_else(|| panic!("no warning about the key file's mode:\n{log}"));
    assert!(
        warning.contains(&key_file.display().to_string()) && warning.contains("0644"),
        "the warning must name the file and its mode: {warning}"
    );
    assert_eq!(mode_of(&key_file), 0o644, "the file's mode is not changed");
}

on_both_backends!(
    a_missing_key_file_stops_start_up_while_encrypted_headers_are_stored,
    a_replaced_key_file_stops_start_up_naming_its_path,
    a_database_without_encrypted_values_gets_a_new_private_key,
    a_key_file_readable_by_others_is_used_with_a_warning,
);

/// The tasks table holds URLs, bodies and users' schedules: the SQLite file and the WAL files
/// SQLite keeps beside it are readable by the service's user only. (SQLite only: MariaDB
/// keeps its files itself.)
#[actix_web::test]
async fn the_sqlite_database_file_is_created_readable_by_its_owner_only() {
    let sink = Sink::start();
    let setup = Setup::new(Backend::Sqlite).await;
    let dir = setup.key_file().parent().expect("dir").to_path_buf();
    let db_file = dir.join("tickwheel.db");
    assert!(!db_file.exists());
    let mut server = Server::start(under_umask_022(setup.command(&["serve"], &[]))).await;
    let id = server
        .create_id(&once_body(&sink, "/db/mode", now_ms()))
        .await;
    server.wait_task(&id, |v| v["status"] == "completed").await;

    assert_eq!(mode_of(&db_file), 0o600, "{}", db_file.display());
    let mut checked = 1;
    for side in ["tickwheel.db-wal", "tickwheel.db-shm"] {
        let path = dir.join(side);
        if path.exists() {
            assert_eq!(mode_of(&path), 0o600, "{}", path.display());
            checked += 1;
        }
    }
    assert!(
        checked > 1,
        "in WAL mode the -wal file exists while the service runs"
    );
    server.kill9();
}

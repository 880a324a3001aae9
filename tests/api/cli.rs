//! The `tickwheel healthcheck` subcommand, run as the real binary against a running app.

use std::process::Output;

use crate::helpers::*;

/// Runs `tickwheel healthcheck ARGS` off the actix thread, so the app keeps serving meanwhile.
/// The child gets an empty working directory and no TICKWHEEL__ variables: only the
/// arguments decide where it probes.
async fn healthcheck(args: Vec<String>) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(bin_path());
        cmd.arg("healthcheck").args(&args).current_dir(dir.path());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TICKWHEEL__") {
                cmd.env_remove(key);
            }
        }
        cmd.output().expect("run tickwheel healthcheck")
    })
    .await
    .expect("join");
    output
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[actix_web::test]
async fn healthcheck_exits_zero_against_healthz() {
    let app = spawn_app(Backend::Sqlite).await;
    let url = format!("http://127.0.0.1:{}/healthz", app.port);
    let out = healthcheck(vec!["--url".into(), url]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("200"),
        "{}",
        describe(&out)
    );
}

#[actix_web::test]
async fn healthcheck_derives_its_url_from_server_bind() {
    let app = spawn_app(Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[server]\nbind = \"0.0.0.0:{}\"\n", app.port),
    )
    .expect("write config");
    let out = healthcheck(vec![
        "--config".into(),
        config.display().to_string(),
        "--timeout-ms".into(),
        "5000".into(),
    ])
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("http://127.0.0.1:{}/healthz", app.port)),
        "{}",
        describe(&out)
    );
}

#[actix_web::test]
async fn healthcheck_fails_against_a_closed_port() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let out = healthcheck(vec![
        "--url".into(),
        format!("http://127.0.0.1:{port}/healthz"),
    ])
    .await;
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect"), "{}", describe(&out));
}

#[actix_web::test]
async fn healthcheck_fails_on_a_404() {
    let app = spawn_app(Backend::Sqlite).await;
    let url = format!("http://127.0.0.1:{}/no-such-path", app.port);
    let out = healthcheck(vec!["--url".into(), url]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("404"), "{}", describe(&out));
}

#[actix_web::test]
async fn healthcheck_refuses_a_non_http_url() {
    let out = healthcheck(vec!["--url".into(), "https://127.0.0.1:1/healthz".into()]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only http://"), "{}", describe(&out));
}

/// Nodes of a cluster may start at the same moment on one fresh MySQL/MariaDB database: the
/// migrations run under a named lock, so every one of several simultaneous `tickwheel
/// migrate` runs succeeds (without it, one fails creating a table another just created).
#[actix_web::test]
async fn simultaneous_migrations_on_one_mariadb_database_all_succeed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TestDb::create(Backend::MySql, dir.path()).await;
    let url = db.url.clone();
    let runs = tokio::task::spawn_blocking(move || {
        let children: Vec<_> = (0..4)
            .map(|_| {
                let mut cmd = std::process::Command::new(bin_path());
                cmd.arg("migrate")
                    .current_dir(dir.path())
                    .env("TICKWHEEL__DATABASE__URL", &url)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                cmd.spawn().expect("run tickwheel migrate")
            })
            .collect();
        children
            .into_iter()
            .map(|c| c.wait_with_output().expect("wait"))
            .collect::<Vec<_>>()
    })
    .await
    .expect("join");
    for out in &runs {
        assert!(out.status.success(), "{}", describe(out));
    }
    drop(db);
}

//! A private ZooKeeper server per test: the Debian package's jar on a free port with its own
//! data directory, `tickTime = 500` so that session timeouts from 1 s to 10 s are allowed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::procs::{drain, free_port, now_ms, pause, Buf, ChildGuard};

pub const JAR: &str = "/usr/share/java/zookeeper.jar";
pub const CONF_DIR: &str = "/etc/zookeeper/conf";
const START_WAIT: Duration = Duration::from_secs(30);

pub struct ZooKeeper {
    child: Option<ChildGuard>,
    log: Buf,
    pub port: u16,
    /// How long the last start took, from spawning the JVM to serving (ms).
    pub last_start_ms: i64,
    config: PathBuf,
    _dir: TempDir,
}

impl ZooKeeper {
    /// Starts a standalone server and waits until it serves requests (see [`Self::serving`]). Panics with a
    /// clear message when Java or the ZooKeeper jar is missing.
    pub async fn start() -> ZooKeeper {
        let java = Command::new("java")
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            matches!(java, Ok(s) if s.success()),
            "the cluster tests need `java` on PATH to run ZooKeeper (Debian: apt-get install -y \
             zookeeper, which brings a JRE; scripts/test.sh does it): {java:?}"
        );
        assert!(
            Path::new(JAR).exists(),
            "the cluster tests need ZooKeeper's jar at {JAR} (Debian: apt-get install -y \
             zookeeper; scripts/test.sh does it)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("zk data dir");
        let config = dir.path().join("zoo.cfg");
        // forceSync=no: the transaction log still reaches the OS before a write is answered,
        // so a killed server keeps its sessions; only fsync latency is saved.
        std::fs::write(
            &config,
            format!(
                "tickTime=500\n\
                 dataDir={}\n\
                 clientPort={port}\n\
                 clientPortAddress=127.0.0.1\n\
                 maxClientCnxns=0\n\
                 forceSync=no\n\
                 admin.enableServer=false\n\
                 4lw.commands.whitelist=ruok,srvr,stat\n",
                data.display()
            ),
        )
        .expect("write zoo.cfg");
        let mut zk = ZooKeeper {
            child: None,
            log: Buf::default(),
            port,
            last_start_ms: 0,
            config,
            _dir: dir,
        };
        zk.spawn().await;
        zk
    }

    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let mut cmd = Command::new("java");
        cmd.args([
            "-Xms32m",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dzookeeper.admin.enableServer=false",
        ])
        .arg("-cp")
        .arg(format!("{CONF_DIR}:{JAR}"))
        .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
        .arg(&self.config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = ChildGuard(cmd.spawn().expect("spawn java (ZooKeeper)"));
        let (out, _) = drain(child.0.stdout.take().expect("stdout"));
        let (_err, _) = drain(child.0.stderr.take().expect("stderr"));
        self.log = out;
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if self.serving() {
                self.last_start_ms = start.elapsed().as_millis() as i64;
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.exited()) {
                panic!(
                    "ZooKeeper exited ({status}) before serving; its output:\n{}",
                    self.log.lock().unwrap()
                );
            }
            assert!(
                start.elapsed() < START_WAIT,
                "ZooKeeper on port {} never served requests; its output:\n{}",
                self.port,
                self.log.lock().unwrap()
            );
            pause(25).await;
        }
    }

    /// The server serves requests: `srvr` shows its version. (It answers `ruok` with `imok`
    /// as soon as it runs, a second or more before it accepts sessions again after a restart
    /// on a loaded machine; until then `srvr` says it is "not currently serving requests".)
    pub fn serving(&self) -> bool {
        self.four_letter(b"srvr").starts_with("Zookeeper version")
    }

    /// A four-letter command's answer (empty when the server does not answer).
    fn four_letter(&self, command: &[u8]) -> String {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(command).is_err() {
            return String::new();
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    }

    /// kill -9 (no clean shutdown); the data directory stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill9();
        }
    }

    /// Kills the server and starts it again on the same port and data directory (sessions
    /// survive); returns (kill time, time it served again) in epoch ms.
    pub async fn restart(&mut self) -> (i64, i64) {
        let killed = now_ms();
        self.kill();
        self.spawn().await;
        (killed, now_ms())
    }

    /// Kills the server and starts it again so that it answers about `outage_ms` after the
    /// kill: the new JVM is spawned as long before that as the last start took. Returns (kill
    /// time, time it served again) in epoch ms; the outage is longer when this start
    /// is slower than the last.
    pub async fn restart_after(&mut self, outage_ms: i64) -> (i64, i64) {
        let killed = now_ms();
        self.kill();
        crate::procs::sleep_until_ms(killed + outage_ms - self.last_start_ms).await;
        self.spawn().await;
        (killed, now_ms())
    }
}

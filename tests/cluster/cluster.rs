//! A whole test cluster: its own ZooKeeper, Redis, MariaDB database, key file and sink, n nodes,
//! and the load of interval tasks. Everything is killed (and the database dropped) when it is
//! dropped; on a panic every node's whole log is first saved under target/tmp/cluster-logs/
//! (always, with `TW_CLUSTER_KEEP_LOGS=1`) and an excerpt printed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use tempfile::TempDir;
use uuid::Uuid;

use crate::analysis::{analyse, Report};
use crate::db::{skipped_slots, TestDb};
use crate::node::Node;
use crate::partition::partition_of;
use crate::procs::{excerpt, now_ms, pause, stamp, StopWatch};
use crate::redis::Redis;
use crate::sink::{Delivery, Sink};
use crate::zookeeper::ZooKeeper;

pub const SECRET: &str = "cluster-test-secret";
pub const INTERVAL_MS: i64 = 1000;

#[derive(Debug, Clone)]
pub struct Config {
    pub nodes: usize,
    pub tasks: usize,
    pub session_timeout_ms: i64,
    pub partitions: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nodes: 3,
            // TW_CLUSTER_TASKS overrides the load (e.g. for a quick run or a heavier one).
            tasks: std::env::var("TW_CLUSTER_TASKS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000),
            session_timeout_ms: 4000,
            partitions: 64,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TaskInfo {
    pub id: Uuid,
    /// The first slot (`next_run_time` of the create answer), epoch ms: the task's grid.
    pub first_slot: i64,
    pub created_on: String,
}

/// Partition ownership as the nodes agreed on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// partition → node id
    pub owner: Vec<String>,
    /// node id → advertised address
    pub members: BTreeMap<String, String>,
}

impl Ownership {
    pub fn partitions_of(&self, node: &str) -> Vec<u32> {
        (0..self.owner.len() as u32)
            .filter(|p| self.owner[*p as usize] == node)
            .collect()
    }

    pub fn owner_of(&self, task: Uuid) -> &str {
        &self.owner[partition_of(task, self.owner.len() as u32) as usize]
    }

    pub fn tasks_of<'a>(&self, node: &str, tasks: &'a [TaskInfo]) -> Vec<&'a TaskInfo> {
        tasks
            .iter()
            .filter(|t| self.owner_of(t.id) == node)
            .collect()
    }

    /// Partitions whose owner differs between `self` and `later`, as (partition, from, to).
    pub fn moves_to(&self, later: &Ownership) -> Vec<(u32, String, String)> {
        (0..self.owner.len())
            .filter(|p| self.owner[*p] != later.owner[*p])
            .map(|p| (p as u32, self.owner[p].clone(), later.owner[p].clone()))
            .collect()
    }

    pub fn summary(&self) -> String {
        self.members
            .iter()
            .map(|(n, a)| format!("{n}@{a}: {} partitions", self.partitions_of(n).len()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub sink: Sink,
    stop_watch: StopWatch,
    pub zk: ZooKeeper,
    pub redis: Redis,
    pub tasks: Vec<TaskInfo>,
    pub cfg: Config,
    pub root: String,
    pub token: String,
    key_file: PathBuf,
    dir: TempDir,
    pub db: TestDb,
}

impl Cluster {
    /// Starts ZooKeeper, Redis, a fresh database and `cfg.nodes` nodes (n1 first, so that it
    /// runs the migrations alone; the others together), and waits for the nodes to agree on
    /// the membership.
    pub async fn start(cfg: Config) -> Cluster {
        let t0 = Instant::now();
        let zk = ZooKeeper::start().await;
        let redis = Redis::start().await;
        let db = TestDb::create().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let key_file = dir.path().join("master.key");
        // One key for every node: 32 random bytes, mode 0600.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_file)
            .expect("create key file");
        f.write_all(&rand::random::<[u8; 32]>()).expect("write key");
        drop(f);
        let token = tickwheel::auth::issue_token(SECRET, 1, true, Duration::from_secs(3600))
            .expect("admin token");
        let mut cluster = Cluster {
            nodes: Vec::new(),
            sink: Sink::start(),
            stop_watch: StopWatch::start(),
            zk,
            redis,
            tasks: Vec::new(),
            root: format!("/tw-{}", Uuid::new_v4().simple()),
            token,
            key_file,
            dir,
            db,
            cfg,
        };
        cluster.spawn_node("n1");
        cluster.nodes[0].wait_ready().await;
        for i in 2..=cluster.cfg.nodes {
            cluster.spawn_node(&format!("n{i}"));
        }
        for n in cluster.nodes.iter_mut().skip(1) {
            n.wait_ready().await;
        }
        let names = cluster.names();
        let own = cluster.wait_settled(&names, Duration::from_secs(30)).await;
        eprintln!(
            "[cluster] {} nodes up and agreed in {:.1} s (zk :{}, redis :{}, root {}): {}",
            names.len(),
            t0.elapsed().as_secs_f64(),
            cluster.zk.port,
            cluster.redis.port,
            cluster.root,
            own.summary()
        );
        cluster
    }

    /// A started cluster with the load created and every task delivered at least once; returns
    /// it with the agreed ownership.
    pub async fn loaded(cfg: Config) -> (Cluster, Ownership) {
        let mut c = Cluster::start(cfg).await;
        c.create_load().await;
        let took = c.wait_all_delivered_since(0, Duration::from_secs(30)).await;
        eprintln!(
            "[load] every task delivered at least once {:.1} s after the last create",
            took.as_secs_f64()
        );
        let names = c.names();
        let own = c.wait_settled(&names, Duration::from_secs(10)).await;
        (c, own)
    }

    /// The names of the nodes that run and are not stopped.
    pub fn live_names(&mut self) -> Vec<String> {
        self.nodes
            .iter_mut()
            .filter_map(|n| (!n.stopped && n.is_running()).then(|| n.name.clone()))
            .collect()
    }

    fn env(&self, name: &str) -> Vec<(String, String)> {
        let kv = |k: &str, v: String| (format!("TICKWHEEL__{k}"), v);
        vec![
            kv("SERVER__BIND", "127.0.0.1:0".into()),
            kv("DATABASE__URL", self.db.url.clone()),
            kv("AUTH__JWT_SECRET", SECRET.into()),
            kv("CRYPTO__KEY_FILE", self.key_file.display().to_string()),
            kv("HTTP__ALLOW_PRIVATE_TARGETS", "true".into()),
            // Every task calls the one sink: the per-destination throttle must not be what
            // delays them.
            kv("RATELIMIT__PER_HOST_RPS", "1000000".into()),
            kv("RATELIMIT__PER_HOST_BURST", "1000000".into()),
            kv("LOG__LEVEL", "info".into()),
            kv("CLUSTER__ENABLED", "true".into()),
            kv("CLUSTER__NODE_ID", name.into()),
            kv("CLUSTER__ZOOKEEPER", self.zk.connect_string()),
            kv("CLUSTER__ROOT", self.root.clone()),
            kv(
                "CLUSTER__SESSION_TIMEOUT_MS",
                self.cfg.session_timeout_ms.to_string(),
            ),
            kv("CLUSTER__PARTITIONS", self.cfg.partitions.to_string()),
            kv("REDIS__URL", self.redis.url()),
        ]
    }

    /// Spawns node `name` (not waiting for it); returns its index.
    pub fn spawn_node(&mut self, name: &str) -> usize {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("node dir");
        let sink = self.sink.clone();
        let watch = self.stop_watch.clone();
        let node = Node::spawn(name, &self.env(name), &dir, &self.token, |pid| {
            sink.register(pid, name);
            watch.watch(pid, name);
        });
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Starts another node and waits until it is ready.
    pub async fn add_node(&mut self, name: &str) -> usize {
        let i = self.spawn_node(name);
        self.nodes[i].wait_ready().await;
        i
    }

    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Waits until every running, non-stopped node answers `GET /api/v1/cluster` with the
    /// members `expected`, all views are the same, and every partition is owned exactly once by
    /// one of them, each member owning at least one.
    pub async fn wait_settled(&mut self, expected: &[String], timeout: Duration) -> Ownership {
        let expected: BTreeSet<String> = expected.iter().cloned().collect();
        let start = Instant::now();
        loop {
            let last = match self.agreed_view(&expected).await {
                Ok(own) => {
                    for (name, addr) in &own.members {
                        let node = self.node(name);
                        assert_eq!(
                            addr,
                            &node.address(),
                            "member {name} advertises {addr}, but it listens on {} and no \
                             cluster.advertise was given",
                            node.address()
                        );
                    }
                    return own;
                }
                Err(why) => why,
            };
            assert!(
                start.elapsed() < timeout,
                "the nodes did not agree on members {expected:?} within {timeout:?}: {last}"
            );
            pause(100).await;
        }
    }

    async fn agreed_view(&mut self, expected: &BTreeSet<String>) -> Result<Ownership, String> {
        let p = self.cfg.partitions as usize;
        let mut agreed: Option<(String, Ownership)> = None;
        for node in self.nodes.iter_mut() {
            if node.stopped || node.ended_on_purpose() {
                continue;
            }
            node.assert_alive("while the membership was awaited");
            let (status, v) = node
                .try_get("/api/v1/cluster", Duration::from_secs(5))
                .await
                .ok_or_else(|| format!("{} did not answer /api/v1/cluster", node.name))?;
            if status != 200 {
                return Err(format!(
                    "{}: /api/v1/cluster answered {status}: {v}",
                    node.name
                ));
            }
            if v["node_id"] != node.name.as_str() {
                return Err(format!("{} calls itself {}", node.name, v["node_id"]));
            }
            let own = parse_view(&v, p).map_err(|e| format!("{}: {e}: {v}", node.name))?;
            let names: BTreeSet<String> = own.members.keys().cloned().collect();
            if &names != expected {
                return Err(format!("{} sees members {names:?}", node.name));
            }
            match &agreed {
                None => agreed = Some((node.name.clone(), own)),
                Some((first, o)) if *o != own => {
                    return Err(format!(
                        "{first} and {} disagree: {} vs {}",
                        node.name,
                        o.summary(),
                        own.summary()
                    ))
                }
                Some(_) => {}
            }
        }
        agreed
            .map(|(_, o)| o)
            .ok_or_else(|| "no node running".to_string())
    }

    /// Creates `cfg.tasks` interval tasks (1 s, POST to the sink), spread round-robin over the
    /// running nodes — any node serves any call. Their first runs are set after the creates
    /// should be done (so that firing does not slow them down), spread evenly over one second.
    pub async fn create_load(&mut self) {
        let n = self.cfg.tasks;
        let t0 = Instant::now();
        let start_at = now_ms() + 2000 + 6 * n as i64;
        let (created, latency) = self.create_tasks(n, "/t", Some(start_at)).await;
        self.tasks.extend(created);
        eprintln!(
            "[load] created {n} interval tasks (1 s) in {:.1} s (create latency p50 {} ms, max {} \
             ms); first runs from {} ms after the last create",
            t0.elapsed().as_secs_f64(),
            latency.0,
            latency.1,
            start_at - now_ms(),
        );
    }

    /// Creates `n` interval tasks for the sink path `path`, round-robin over the running nodes;
    /// with `start_at`, task i first runs at `start_at + i·1000/n` ms. Returns the tasks and
    /// the create latency (p50, max) in ms.
    pub async fn create_tasks(
        &mut self,
        n: usize,
        path: &str,
        start_at: Option<i64>,
    ) -> (Vec<TaskInfo>, (u64, u64)) {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|i| !self.nodes[*i].stopped && self.nodes[*i].is_running())
            .collect();
        let template = self.interval_body(path);
        let nodes = &self.nodes;
        let results: Vec<(TaskInfo, u64)> = stream::iter(0..n)
            .map(|i| {
                let node = &nodes[live[i % live.len()]];
                let mut body = template.clone();
                if let Some(at) = start_at {
                    let at = at + (i as i64 * INTERVAL_MS) / n as i64;
                    body["start_time"] = json!(tickwheel::time::to_rfc3339(at));
                }
                async move {
                    let t = Instant::now();
                    let task = create_on(node, &body).await;
                    (task, t.elapsed().as_millis() as u64)
                }
            })
            .buffer_unordered(12)
            .collect()
            .await;
        let mut latency: Vec<u64> = results.iter().map(|r| r.1).collect();
        latency.sort_unstable();
        let stats = (
            latency.get(latency.len() / 2).copied().unwrap_or(0),
            latency.last().copied().unwrap_or(0),
        );
        (results.into_iter().map(|r| r.0).collect(), stats)
    }

    pub fn interval_body(&self, path: &str) -> Value {
        json!({
            "user_id": 1,
            "type": "interval",
            "interval_seconds": 1,
            "http_endpoint": self.sink.url(path),
            "method": "POST",
            "body": {},
        })
    }

    /// Waits until every task of the load has been delivered at least once (at or after
    /// `since`); returns the time that took.
    pub async fn wait_all_delivered_since(&self, since: i64, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let seen: std::collections::HashSet<Uuid> = self
                .sink
                .snapshot()
                .iter()
                .filter(|d| d.at >= since)
                .map(|d| d.task)
                .collect();
            let missing: Vec<Uuid> = self
                .tasks
                .iter()
                .filter(|t| !seen.contains(&t.id))
                .map(|t| t.id)
                .collect();
            if missing.is_empty() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "{} of {} tasks were not delivered within {timeout:?} (e.g. {:?})",
                missing.len(),
                self.tasks.len(),
                &missing[..missing.len().min(5)]
            );
            pause(100).await;
        }
    }

    /// Everything the sink recorded so far; panics if any request lacked a well-formed
    /// `webhook-id` matching its `x-tickwheel-task-id`.
    pub fn deliveries(&self) -> Vec<Delivery> {
        let bad = self.sink.malformed();
        assert!(
            bad.is_empty(),
            "{} requests without a well-formed webhook-id / x-tickwheel-task-id, e.g. {:?}",
            bad.len(),
            &bad[..bad.len().min(3)]
        );
        self.sink.snapshot()
    }

    /// Checks that every node not ended on purpose still runs and that none was stopped but
    /// by the test, then returns the deliveries.
    pub fn observe(&mut self) -> Vec<Delivery> {
        for n in self.nodes.iter_mut() {
            if !n.ended_on_purpose() {
                n.assert_alive("while the scenario ran");
            }
        }
        let foreign = self.foreign_stops();
        assert!(
            foreign.is_empty(),
            "nodes were stopped (SIGSTOP) by something other than this test — another process on \
             the machine signalling by name? {foreign:?}"
        );
        self.deliveries()
    }

    /// Stops of a node (state T) seen by the watcher outside the test's own SIGSTOP…SIGCONT.
    pub fn foreign_stops(&self) -> Vec<String> {
        const SLACK_MS: i64 = 300;
        self.stop_watch
            .stops()
            .into_iter()
            .filter(|(name, from, to)| {
                let ours = self
                    .nodes
                    .iter()
                    .find(|n| &n.name == name)
                    .map(|n| n.stops.clone())
                    .unwrap_or_default();
                !ours.iter().any(|(s, e)| {
                    *from >= s - SLACK_MS
                        && match (to, e) {
                            (_, None) => true,
                            (Some(to), Some(e)) => *to <= e + SLACK_MS,
                            (None, Some(_)) => false,
                        }
                })
            })
            .map(|(name, from, to)| {
                format!(
                    "{name} stopped from {} to {}",
                    stamp(from),
                    to.map_or("now".to_string(), stamp)
                )
            })
            .collect()
    }

    /// The sink's deliveries of `tasks` for the slots in `[from, to]`, against their grids and
    /// the skips `task_logs` records; printed.
    pub async fn analyse(
        &self,
        label: &str,
        deliveries: &[Delivery],
        tasks: &[&TaskInfo],
        from: i64,
        to: i64,
    ) -> Report {
        let db = self.db.connect().await;
        let skips = skipped_slots(&db, from, to).await;
        let _ = db.close().await;
        let r = analyse(label, deliveries, tasks, (from, to), &skips);
        r.print();
        r
    }

    /// Sink figures for the log: arrivals per node.
    pub fn per_node(deliveries: &[Delivery]) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for d in deliveries {
            let k = d.node.as_deref().unwrap_or("?").to_string();
            *m.entry(k).or_insert(0) += 1;
        }
        m
    }

    /// Deliveries in `[from, to]` (by arrival) sent by a node that, per `own`, does not own the
    /// task's partition.
    pub fn misattributed<'a>(
        own: &Ownership,
        deliveries: &'a [Delivery],
        from: i64,
        to: i64,
    ) -> Vec<&'a Delivery> {
        deliveries
            .iter()
            .filter(|d| d.at >= from && d.at <= to)
            .filter(|d| d.node.as_deref().is_some_and(|n| n != own.owner_of(d.task)))
            .collect()
    }

    /// Writes every node's whole stderr to target/tmp/cluster-logs/<test>-<root>/<node>.log.
    pub fn save_logs(&self) {
        let test = std::thread::current()
            .name()
            .unwrap_or("cluster")
            .replace("::", "-");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("cluster-logs")
            .join(format!("{test}{}", self.root.replace('/', "-")));
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        for n in &self.nodes {
            let _ = std::fs::write(dir.join(format!("{}.log", n.name)), n.stderr());
        }
        eprintln!("[cluster] node logs saved in {}", dir.display());
    }

    pub fn dump_logs(&self) {
        for n in &self.nodes {
            eprintln!(
                "===== node {} (pid {}, port {}) stderr =====\n{}",
                n.name,
                n.pid,
                n.port,
                excerpt(&n.stderr(), 40)
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("TW_CLUSTER_KEEP_LOGS").is_some() {
            self.save_logs();
        }
        if std::thread::panicking() {
            self.dump_logs();
            let foreign = self.foreign_stops();
            if !foreign.is_empty() {
                eprintln!(
                    "[cluster] nodes were stopped by something other than this test: {foreign:?}"
                );
            }
        }
        // Stopped nodes are ended too: SIGKILL ends a stopped process.
        self.nodes.clear();
    }
}

async fn create_on(node: &Node, body: &Value) -> TaskInfo {
    let (status, v) = node.post("/api/v1/tasks", body).await;
    assert_eq!(status, 201, "create on {} failed: {v}", node.name);
    let id: Uuid = v["task_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("create answer without a task_id: {v}"));
    let first_slot = v["next_run_time"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|| panic!("create answer without next_run_time: {v}"));
    TaskInfo {
        id,
        first_slot,
        created_on: node.name.clone(),
    }
}

/// Parses `{"node_id", "members": [{"node_id", "address", "partitions"}]}` and checks that
/// every partition 0..p appears exactly once and every member owns at least one.
pub fn parse_view(v: &Value, p: usize) -> Result<Ownership, String> {
    let members = v["members"].as_array().ok_or("no members array")?;
    let mut owner: Vec<Option<String>> = vec![None; p];
    let mut addrs = BTreeMap::new();
    for m in members {
        let name = m["node_id"].as_str().ok_or("member without node_id")?;
        let addr = m["address"].as_str().ok_or("member without address")?;
        let parts = m["partitions"]
            .as_array()
            .ok_or("member without partitions")?;
        if parts.is_empty() {
            return Err(format!("member {name} owns no partition"));
        }
        for part in parts {
            let part = part.as_u64().ok_or("a partition is not a number")? as usize;
            if part >= p {
                return Err(format!("partition {part} out of range 0..{p}"));
            }
            if let Some(other) = &owner[part] {
                return Err(format!("partition {part} owned by {other} and {name}"));
            }
            owner[part] = Some(name.to_string());
        }
        if addrs.insert(name.to_string(), addr.to_string()).is_some() {
            return Err(format!("member {name} listed twice"));
        }
    }
    let unowned: Vec<usize> = (0..p).filter(|i| owner[*i].is_none()).collect();
    if !unowned.is_empty() {
        return Err(format!("partitions without owner: {unowned:?}"));
    }
    Ok(Ownership {
        owner: owner.into_iter().map(|o| o.unwrap()).collect(),
        members: addrs,
    })
}

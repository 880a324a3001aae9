//! 6, 7. The cluster's services restart under it: Redis comes back empty, ZooKeeper comes back
//! within a fraction of the session timeout — or within half of it, which must cost no node its
//! lease (it reconnects at once, not after the client's back-off) and no task a slot.

use std::time::Duration;

use crate::analysis::{check_logs, settle};
use crate::cluster::{Cluster, Config, TaskInfo};
use crate::procs::{now_ms, pause, stamp};

/// After Redis comes back empty, slots may be missed only this long (ms) after it answers again.
const REDIS_CATCH_UP_MS: i64 = 5000;

#[actix_web::test]
async fn redis_restarted_empty_firing_continues_without_duplicates() {
    let (mut c, before) = Cluster::loaded(Config::default()).await;
    pause(1000).await;
    let keys_before = c.redis.dbsize();

    let (kill_at, up_at) = c.redis.restart_empty().await;
    eprintln!(
        "[redis] killed at {} and restarted empty in {} ms ({keys_before:?} keys before, {:?} \
         after)",
        stamp(kill_at),
        up_at - kill_at,
        c.redis.dbsize()
    );
    c.wait_all_delivered_since(up_at, Duration::from_secs(30))
        .await;
    let all_back = now_ms();
    eprintln!(
        "[redis] every task delivered again {} ms after Redis answered",
        all_back - up_at
    );

    let from = kill_at - 3000;
    let to = (up_at + REDIS_CATCH_UP_MS).max(all_back) + 4000;
    settle(to).await;
    let d = c.observe();
    let all: Vec<&TaskInfo> = c.tasks.iter().collect();
    let r = c.analyse("redis restart", &d, &all, from, to).await;
    let last_missed = r.missed.iter().chain(&r.skipped).map(|m| m.1).max();
    eprintln!(
        "[redis] {} slots missed ({} tasks); the last missed slot {:?} ms after Redis answered; \
         {} keys in the new Redis",
        r.missed.len() + r.skipped.len(),
        r.tasks_with_missed(),
        last_missed.map(|s| s - up_at),
        c.redis.dbsize().unwrap_or(0)
    );
    r.assert_no_duplicates();
    r.assert_on_grid();
    let early: Vec<_> = r
        .missed
        .iter()
        .chain(&r.skipped)
        .filter(|m| m.1 < kill_at)
        .collect();
    assert!(
        early.is_empty(),
        "slots before the Redis kill missed: {early:?}"
    );
    let r = c
        .analyse(
            "redis restart: after the catch-up",
            &d,
            &all,
            up_at + REDIS_CATCH_UP_MS,
            to,
        )
        .await;
    r.assert_clean();
    // The pending queue is rebuilt in the new Redis: every partition marked complete again,
    // and every task queued in its partition's sorted set.
    let rebuilt = queue_rebuilt(&c, Duration::from_secs(15)).await;
    eprintln!("[redis] pending queue complete again (the check waited {rebuilt} ms)");

    // Redis is not membership: nobody left.
    let names = c.names();
    let after = c.wait_settled(&names, Duration::from_secs(10)).await;
    assert_eq!(before, after, "ownership changed over a Redis restart");

    let db = c.db.connect().await;
    check_logs(&db, &d, &c.tasks, from, to, Duration::from_secs(15), |_| {
        false
    })
    .await
    .assert_consistent("redis restart");
}

#[actix_web::test]
async fn zookeeper_restarted_quickly_firing_goes_on_uninterrupted() {
    // A JVM takes 0.6 s to start on an idle machine and 2.5 s on a loaded one: a 6 s session
    // (fencing after 4 s without ZooKeeper) leaves room for the restart.
    let cfg = Config {
        session_timeout_ms: 6000,
        ..Config::default()
    };
    let (mut c, before) = Cluster::loaded(cfg).await;
    let session = c.cfg.session_timeout_ms;
    pause(1000).await;

    let (kill_at, up_at) = c.zk.restart().await;
    let gap = up_at - kill_at;
    eprintln!(
        "[zookeeper] killed at {} and answering again after {gap} ms (session timeout {session} \
         ms)",
        stamp(kill_at)
    );
    // The nodes must ride out a disconnection shorter than about 2/3 of the session timeout
    // (the gap is counted until the server serves again, which on a loaded machine is a second
    // or more after its JVM answers `ruok`); a slower restart does not test that.
    assert!(
        gap < session * 2 / 3,
        "ZooKeeper took {gap} ms to restart, too slow for this test (session timeout {session} \
         ms)"
    );

    let from = kill_at - 3000;
    let to = up_at + 6000;
    settle(to).await;
    let d = c.observe();
    let all: Vec<&TaskInfo> = c.tasks.iter().collect();
    let r = c.analyse("zookeeper restart", &d, &all, from, to).await;
    r.assert_clean();

    let names = c.names();
    let after = c.wait_settled(&names, Duration::from_secs(20)).await;
    assert_eq!(
        before, after,
        "ownership changed over a ZooKeeper restart shorter than the session timeout"
    );

    let db = c.db.connect().await;
    check_logs(&db, &d, &c.tasks, from, to, Duration::from_secs(15), |_| {
        false
    })
    .await
    .assert_consistent("zookeeper restart");
}

/// How long ZooKeeper is down in the blip scenario (ms): half the session timeout.
const BLIP_MS: i64 = 2000;

/// How the nodes' cluster leases fared since a point in their logs.
#[derive(Debug, Default)]
struct LeaseLapses {
    /// Per node: (lapses logged, fenced ms logged by the renewals, still lapsed at the end).
    per_node: Vec<(String, usize, i64, bool)>,
}

impl LeaseLapses {
    /// Reads "cluster lease lapsed" and "cluster lease renewed … fenced_ms=N" lines logged
    /// after `marks` (the length of each node's log then).
    fn since(c: &Cluster, marks: &[(String, usize)]) -> LeaseLapses {
        let mut out = LeaseLapses::default();
        for (name, mark) in marks {
            let log = c.node(name).stderr();
            let (mut lapses, mut renewals, mut fenced) = (0usize, 0usize, 0i64);
            // When the lapse was logged (epoch ms), for a renewal that does not say how long.
            let mut lapsed_at = None;
            let at = |line: &str| {
                line.split_whitespace()
                    .next()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp_millis())
            };
            for line in log.get(*mark..).unwrap_or("").lines() {
                if line.contains("cluster lease lapsed") {
                    lapses += 1;
                    lapsed_at = at(line);
                } else if line.contains("cluster lease renewed") {
                    renewals += 1;
                    fenced += line
                        .split("fenced_ms=")
                        .nth(1)
                        .and_then(|v| v.split(|ch: char| !ch.is_ascii_digit()).next())
                        .and_then(|v| v.parse::<i64>().ok())
                        .or_else(|| Some(at(line)? - lapsed_at?))
                        .unwrap_or_else(|| panic!("cannot tell how long this fenced: {line}"));
                }
            }
            out.per_node
                .push((name.clone(), lapses, fenced, lapses > renewals));
        }
        out
    }

    fn max_fenced_ms(&self) -> i64 {
        self.per_node.iter().map(|n| n.2).max().unwrap_or(0)
    }

    fn summary(&self) -> String {
        self.per_node
            .iter()
            .map(|(n, lapses, fenced, open)| {
                format!(
                    "{n}: {lapses} lapses, fenced {fenced} ms{}",
                    if *open { " and still fenced" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[actix_web::test]
async fn zookeeper_down_for_half_the_session_timeout_loses_no_slot_and_fences_no_node() {
    let cfg = Config {
        session_timeout_ms: 4000,
        ..Config::default()
    };
    let (mut c, before) = Cluster::loaded(cfg).await;
    let session = c.cfg.session_timeout_ms;
    pause(1000).await;
    let marks: Vec<(String, usize)> = c
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.stderr().len()))
        .collect();

    let (kill_at, up_at) = c.zk.restart_after(BLIP_MS).await;
    let gap = up_at - kill_at;
    eprintln!(
        "[zk blip] killed at {} and answering again after {gap} ms (session timeout {session} \
         ms, {} tasks)",
        stamp(kill_at),
        c.tasks.len()
    );
    // What is tested is an outage shorter than the session timeout. On a loaded machine the
    // JVM may take longer than meant to come back: then the nodes may fence (for the time the
    // outage lasted past the blip, see below), and must still lose nothing.
    assert!(
        gap < session,
        "ZooKeeper took {gap} ms to come back, too slow for this test (session timeout \
         {session} ms)"
    );

    let from = kill_at - 3000;
    let to = up_at + 6000;
    settle(to).await;
    let d = c.observe();
    let lapses = LeaseLapses::since(&c, &marks);
    // Every ms the outage lasts past the blip may cost a ms of fencing; a blip itself none.
    let allowed = (gap - BLIP_MS).max(0);
    eprintln!(
        "[zk blip] the nodes' leases over the outage: {} (the longest fence {} ms; allowed {} \
         ms for an outage of {gap} ms)",
        lapses.summary(),
        lapses.max_fenced_ms(),
        allowed
    );

    // Not a slot lost or repeated, on any node, whether or not a node fenced.
    let all: Vec<&TaskInfo> = c.tasks.iter().collect();
    let r = c.analyse("zookeeper blip", &d, &all, from, to).await;
    r.assert_clean();

    assert!(
        lapses.per_node.iter().all(|n| !n.3),
        "a node's lease lapsed and was not renewed after ZooKeeper came back: {}",
        lapses.summary()
    );
    assert!(
        lapses.max_fenced_ms() <= allowed,
        "a ZooKeeper outage of {gap} ms fenced a node for {} ms (at most {allowed} ms allowed: \
         the node must reconnect as soon as ZooKeeper answers): {}",
        lapses.max_fenced_ms(),
        lapses.summary()
    );

    let names = c.names();
    let after = c.wait_settled(&names, Duration::from_secs(20)).await;
    assert_eq!(
        before, after,
        "ownership changed over a ZooKeeper outage shorter than the session timeout"
    );

    let db = c.db.connect().await;
    check_logs(&db, &d, &c.tasks, from, to, Duration::from_secs(15), |_| {
        false
    })
    .await
    .assert_consistent("zookeeper blip");
}

/// Waits until the pending queue in Redis is complete again: every partition in the
/// completeness set, every task in its partition's sorted set. Returns how long it waited.
async fn queue_rebuilt(c: &Cluster, timeout: Duration) -> i64 {
    use bb8_redis::redis::{self, AsyncCommands};
    let started = now_ms();
    let client = redis::Client::open(c.redis.url()).expect("a Redis url");
    let prefix = format!("tw:{}:", c.root);
    let want: std::collections::BTreeSet<String> =
        c.tasks.iter().map(|t| t.id.to_string()).collect();
    let (mut complete, mut queued) = (0usize, 0usize);
    while now_ms() - started < timeout.as_millis() as i64 {
        if let Ok(mut con) = client.get_multiplexed_async_connection().await {
            let marked: Vec<u32> = con
                .smembers(format!("{prefix}queue-complete"))
                .await
                .unwrap_or_default();
            let mut seen = std::collections::BTreeSet::new();
            for p in 0..c.cfg.partitions {
                let ids: Vec<String> = con
                    .zrange(format!("{prefix}queue:{p}"), 0, -1)
                    .await
                    .unwrap_or_default();
                seen.extend(ids);
            }
            complete = marked.len();
            queued = want.intersection(&seen).count();
            if complete == c.cfg.partitions as usize && queued == want.len() {
                return now_ms() - started;
            }
        }
        pause(200).await;
    }
    panic!(
        "the pending queue was not rebuilt within {timeout:?}: {complete} of {} partitions \
         marked complete, {queued} of {} tasks queued",
        c.cfg.partitions,
        want.len()
    );
}

//! 9. Pause and resume through any node: tasks paused on a node that does not own them stop
//!    firing within a second of the answer, stay quiet while their owner hands its partitions
//!    over (SIGTERM) or dies (`kill -9`, taken over once its session expires) and the
//!    survivors take them, and fire again on their grid once resumed through yet another node.

use std::time::Duration;

use uuid::Uuid;

use crate::cluster::{Cluster, Config};
use crate::procs::{now_ms, pause, wait_for};

const PROBES: usize = 6;
const PATH: &str = "/paused";

fn other_than<'a>(names: &'a [String], not: &[&str]) -> &'a String {
    names
        .iter()
        .find(|n| !not.contains(&n.as_str()))
        .or_else(|| names.iter().find(|n| n.as_str() != not[0]))
        .expect("another node")
}

/// How the owner of the first probe leaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Departure {
    /// SIGTERM: it hands its partitions over.
    HandOver,
    /// `kill -9`: the survivors take its partitions over once its session expires.
    TakeOver,
}

#[actix_web::test]
async fn a_task_paused_on_one_node_stays_quiet_through_a_hand_over_and_resumes_on_another() {
    paused_through(Departure::HandOver).await
}

#[actix_web::test]
async fn a_paused_task_stays_quiet_through_a_take_over_after_its_owner_dies() {
    paused_through(Departure::TakeOver).await
}

async fn paused_through(departure: Departure) {
    let (mut c, own) = Cluster::loaded(Config::default()).await;
    let names = c.names();
    let (probes, _) = c.create_tasks(PROBES, PATH, None).await;
    let ids: Vec<Uuid> = probes.iter().map(|t| t.id).collect();
    wait_for(
        "two deliveries of every probe",
        Duration::from_secs(20),
        50,
        || {
            let d = c.deliveries();
            let ok = ids
                .iter()
                .all(|id| d.iter().filter(|x| x.task == *id).count() >= 2);
            async move { ok.then_some(()) }
        },
        || format!("{} deliveries so far", c.sink.len()),
    )
    .await;

    // Pause each on a node that owns it not (nor created it, when there is such a node).
    let mut paused_at = Vec::new();
    for t in &probes {
        let owner = own.owner_of(t.id);
        let pauser = other_than(&names, &[owner, &t.created_on]);
        let (status, v) = c
            .node(pauser)
            .put(&format!("/api/v1/tasks/{}/pause", t.id))
            .await;
        assert_eq!(status, 200, "pause of {} on {pauser}: {v}", t.id);
        assert_eq!(v["status"], "paused", "{v}");
        paused_at.push(now_ms());
    }

    // The owner of the first probe leaves; the survivors take its partitions over and must
    // not start its paused tasks.
    let victim = own.owner_of(probes[0].id).to_string();
    match departure {
        Departure::HandOver => {
            let (_, _, code) = c.node_mut(&victim).sigterm(Duration::from_secs(30)).await;
            assert_eq!(code, Some(0), "SIGTERM ends {victim} with 0");
        }
        Departure::TakeOver => {
            c.node_mut(&victim).kill9();
        }
    }
    let survivors = c.live_names();
    c.wait_settled(&survivors, Duration::from_secs(30)).await;
    pause(3000).await;

    let d = c.observe();
    for (t, at) in probes.iter().zip(&paused_at) {
        let after: Vec<i64> = d
            .iter()
            .filter(|x| x.task == t.id && x.slot > at + 1000)
            .map(|x| x.slot - at)
            .collect();
        assert!(
            after.is_empty(),
            "probe {} kept firing after its pause answered: slots at {after:?} ms after it",
            t.id
        );
    }

    // Resume each through a surviving node; the new owner fires it again from a slot after
    // the resume, on the task's grid.
    let mut resumed = Vec::new();
    for t in &probes {
        let resumer = survivors
            .iter()
            .find(|n| **n != t.created_on)
            .unwrap_or(&survivors[0]);
        let asked = now_ms();
        let (status, v) = c
            .node(resumer)
            .put(&format!("/api/v1/tasks/{}/resume", t.id))
            .await;
        assert_eq!(status, 200, "resume of {} on {resumer}: {v}", t.id);
        assert_eq!(v["status"], "running", "{v}");
        let next = v["next_run_time"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp_millis())
            .unwrap_or_else(|| panic!("resume answered without a next run: {v}"));
        assert!(next > asked, "the next run is after the resume: {v}");
        assert_eq!(
            (next - t.first_slot).rem_euclid(1000),
            0,
            "on the task's grid: {v}"
        );
        resumed.push((t.id, next));
    }
    wait_for(
        "a delivery of every resumed probe",
        Duration::from_secs(20),
        50,
        || {
            let d = c.deliveries();
            let ok = resumed
                .iter()
                .all(|(id, next)| d.iter().any(|x| x.task == *id && x.slot >= *next));
            async move { ok.then_some(()) }
        },
        || format!("{} deliveries so far", c.sink.len()),
    )
    .await;
    let d = c.observe();
    for ((id, next), at) in resumed.iter().zip(&paused_at) {
        let inside: Vec<i64> = d
            .iter()
            .filter(|x| x.task == *id && x.slot > at + 1000 && x.slot < *next)
            .map(|x| x.slot)
            .collect();
        assert!(
            inside.is_empty(),
            "probe {id}: slots inside the pause were fired: {inside:?}"
        );
    }
}

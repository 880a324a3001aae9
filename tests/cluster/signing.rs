//! 11. Signing keys across the cluster: a key created through one node signs the calls every
//!     node sends within a couple of seconds, and once it is revoked through another node no
//!     node signs with it. (Signatures themselves are verified with the reference library in
//!     tests/api/signing.rs; here the sink counts them per call and per sending node.)

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{Cluster, Config};
use crate::procs::{now_ms, wait_for};
use crate::sink::Delivery;

/// A change must have reached every node by then: one polling round (1 s), a call on its way
/// when it landed, and a loaded machine.
const SETTLE_MS: i64 = 2_500;

/// The nodes that sent deliveries arriving after `since`, and the signature counts seen.
fn after(d: &[Delivery], since: i64) -> (BTreeSet<String>, BTreeSet<usize>) {
    let later: Vec<&Delivery> = d.iter().filter(|x| x.at >= since).collect();
    (
        later
            .iter()
            .filter_map(|x| x.node.as_deref().map(str::to_string))
            .collect(),
        later.iter().map(|x| x.signatures).collect(),
    )
}

async fn wait_senders(c: &Cluster, since: i64, what: &str) -> (BTreeSet<String>, BTreeSet<usize>) {
    wait_for(
        what,
        Duration::from_secs(20),
        100,
        || {
            let (nodes, counts) = after(&c.deliveries(), since);
            async move { (nodes.len() >= 2).then_some((nodes, counts)) }
        },
        || format!("{} deliveries so far", c.sink.len()),
    )
    .await
}

#[actix_web::test]
async fn a_key_created_on_one_node_signs_every_nodes_calls_and_its_revoke_on_another_stops_them() {
    let cfg = Config {
        tasks: 30,
        ..Config::default()
    };
    let (c, _own) = Cluster::loaded(cfg).await;
    let names = c.names();
    wait_senders(&c, now_ms(), "unsigned calls from two nodes").await;
    let (_, counts) = after(&c.deliveries(), 0);
    assert_eq!(counts, BTreeSet::from([0]), "signed before any key existed");

    // The load's tasks belong to user 1.
    let (status, v) = c
        .node(&names[0])
        .post("/api/v1/users/1/signing-keys", &Value::Null)
        .await;
    assert_eq!(status, 201, "create the key on {}: {v}", names[0]);
    let key_id = v["key_id"].as_str().expect("key_id").to_string();
    let signed_from = now_ms() + SETTLE_MS;
    let (nodes, counts) = wait_senders(&c, signed_from, "calls from two nodes after the key").await;
    eprintln!(
        "[signing] after the create on {}: senders {nodes:?}, signatures {counts:?}",
        names[0]
    );
    assert_eq!(
        counts,
        BTreeSet::from([1]),
        "every node signs once the key exists"
    );

    let status = c
        .node(&names[1])
        .delete(&format!("/api/v1/users/1/signing-keys/{key_id}"))
        .await;
    assert_eq!(status, 204, "revoke on {}", names[1]);
    let unsigned_from = now_ms() + SETTLE_MS;
    let (nodes, counts) =
        wait_senders(&c, unsigned_from, "calls from two nodes after the revoke").await;
    eprintln!(
        "[signing] after the revoke on {}: senders {nodes:?}, signatures {counts:?}",
        names[1]
    );
    assert_eq!(counts, BTreeSet::from([0]), "a revoked key still signs");
}

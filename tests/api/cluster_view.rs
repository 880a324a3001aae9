//! `GET /api/v1/cluster` on a single node (the cluster tests cover it with several nodes).

use serde_json::Value;

use crate::helpers::*;

#[actix_web::test]
async fn a_single_node_shows_itself_owning_every_partition_to_admins_only() {
    let app = spawn_app(Backend::Sqlite).await;
    let get = |token: String| {
        app.client
            .get(app.url("/api/v1/cluster"))
            .bearer_auth(token)
            .send()
    };

    let r = get(token(1001)).await.expect("answered");
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("admin")),
        "{body}"
    );

    let r = get(admin_token()).await.expect("answered");
    assert_eq!(r.status().as_u16(), 200);
    let view: Value = r.json().await.expect("json");
    assert_eq!(view["node_id"], "standalone");
    let members = view["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{view}");
    assert_eq!(members[0]["address"], format!("127.0.0.1:{}", app.port));
    let partitions: Vec<u64> = members[0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(partitions, (0..256).collect::<Vec<u64>>());
}

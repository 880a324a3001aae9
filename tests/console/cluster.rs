//! The admin's cluster page: the members and their partitions, and this node's own fire rate
//! and lateness p99, read from its metrics.

use std::time::Duration;

use crate::browser::Browser;
use crate::helpers::*;

#[actix_web::test]
async fn the_cluster_page_shows_this_nodes_fire_rate_and_lateness_p99() {
    let app = spawn_app(Backend::Sqlite).await;
    app.create_task(interval_task(&app, "/ticks", 1)).await;
    app.sink
        .wait_for("/ticks", 2, Duration::from_secs(15))
        .await;

    let b = Browser::start(&app.address).await;
    b.sign_in(&admin_token()).await;
    b.click("nav a[href='/cluster']").await;
    b.wait_text("h1", "the cluster page", |t| t == "Cluster")
        .await;
    assert!(b.page_text().await.contains("standalone"));
    let p99 = b.text("#lateness-p99").await;
    assert!(p99.starts_with("≤ ") && p99.ends_with(" ms"), "{p99}");
    // The rate needs two of the metrics' samples, five seconds apart.
    let mut rate = String::new();
    for _ in 0..40 {
        b.goto("/cluster").await;
        rate = b.text("#fire-rate").await;
        if rate.ends_with("fires/s") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let n: f64 = rate
        .trim_end_matches(" fires/s")
        .parse()
        .unwrap_or_else(|_| panic!("no fire rate: {rate}"));
    assert!(n > 0.0, "{rate}");
    b.screenshot("cluster").await;
    b.close().await;

    // Not for a non-admin: the API's 403.
    let b = Browser::start(&app.address).await;
    b.sign_in(&token(1001)).await;
    assert_eq!(b.count("nav a[href='/cluster']").await, 0);
    b.goto("/cluster").await;
    assert_eq!(b.text("h1").await, "Not allowed");
    b.close().await;
}

//! `GET /metrics`: Prometheus text exposition (no token). Figures that live in storage or in
//! another actor — tasks by state, timers on the wheel — are read at scrape time.

use actix::Addr;
use actix_web::{web, HttpResponse};
use metrics_exporter_prometheus::PrometheusHandle;

use super::ApiError;
use crate::actors::wheel::{GetWheelStats, TimingWheel};
use crate::domain::TaskStatus;
use crate::metrics::{self, ActorKind};
use crate::store::Store;

pub struct MetricsState {
    pub handle: PrometheusHandle,
    pub store: Store,
    pub wheel: Addr<TimingWheel>,
}

pub async fn scrape(state: web::Data<MetricsState>) -> Result<HttpResponse, ApiError> {
    let counts = state.store.count_by_status().await?;
    for s in TaskStatus::ALL {
        let n = counts
            .iter()
            .find(|(name, _)| name == s.as_str())
            .map(|(_, n)| *n)
            .unwrap_or(0);
        metrics::tasks_in_state(s.as_str(), n.max(0) as u64);
    }
    metrics::sent(ActorKind::Wheel);
    let levels = state.wheel.send(GetWheelStats).await?.0;
    for (name, n) in ["ms", "second", "minute", "overflow"].iter().zip(levels) {
        metrics::wheel_timers(name, n);
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics::render(&state.handle)))
}

//! `GET /api/v1/cluster` (admin): this node's id, the live members with their addresses, and
//! the partitions each owns. A single node shows itself owning every partition.

use actix_web::{web, HttpResponse};

use super::views::{ClusterMember, ClusterView, ErrorBody};
use super::{ApiError, AppState, Auth};
use crate::cluster::membership::GetView;

/// The cluster as this node sees it.
///
/// Needs an admin token. In single-node mode the node is the only member and owns every
/// partition.
#[utoipa::path(
    get,
    path = "/api/v1/cluster",
    tag = "cluster",
    operation_id = "cluster_view",
    responses(
        (status = 200, description = "This node and the live members", body = ClusterView,
            example = json!({"node_id": "n1", "members": [{"node_id": "n1", "address": "127.0.0.1:8081", "partitions": [0, 3]}]})),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn view(state: web::Data<AppState>, Auth(who): Auth) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(view_of(&state, &who).await?))
}

/// The cluster as this node sees it, for an admin.
pub async fn view_of(
    state: &AppState,
    who: &crate::auth::Principal,
) -> Result<ClusterView, ApiError> {
    if !who.admin {
        return Err(ApiError::Forbidden(
            "token: the cluster view needs an admin token".into(),
        ));
    }
    let view = match &state.cluster {
        Some(c) => {
            crate::metrics::sent(crate::metrics::ActorKind::Membership);
            ClusterView::from(c.membership.send(GetView).await?)
        }
        None => ClusterView {
            node_id: state.node_id.clone(),
            members: vec![ClusterMember {
                node_id: state.node_id.clone(),
                address: state.address.clone(),
                partitions: (0..state.partitions).collect(),
            }],
        },
    };
    Ok(view)
}

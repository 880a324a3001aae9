//! `POST /api/v1/tasks?dry_run=true`: the create handler's answer when asked to check without
//! creating. The checks are the service's ([`crate::service::dry_run`]); this module only
//! reads the flag and shows the request the task would send, with the task's header values
//! redacted and the headers tickwheel adds (as [`crate::actors::dispatch`] sends them).

use std::collections::BTreeMap;

use actix_web::HttpRequest;

use super::views::{DryRunRequest, DryRunResponse, DryRunWarning};
use super::{query_pairs, ApiError, AppState};
use crate::domain::TaskSpec;
use crate::net::USER_AGENT;
use crate::service::dry_run::dry_run;
use crate::time::{now_ms, to_rfc3339};

/// What stands for a header value that is never shown.
pub const REDACTED: &str = "<redacted>";

/// The `dry_run` query parameter: `true` or `false` (absent = `false`).
pub fn requested(req: &HttpRequest) -> Result<bool, ApiError> {
    let mut flag = false;
    for (k, v) in query_pairs(req) {
        if k == "dry_run" {
            flag = match v.as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(ApiError::InvalidInput(format!(
                        "dry_run: must be true or false (got '{}')",
                        v.chars().take(64).collect::<String>()
                    )))
                }
            };
        }
    }
    Ok(flag)
}

/// Checks `spec` as a create would and answers with what it would do; nothing is stored or sent.
pub async fn answer(state: &AppState, spec: TaskSpec) -> Result<DryRunResponse, ApiError> {
    let checked = dry_run(
        &state.store,
        &state.quotas,
        &spec,
        state.allow_private_targets,
        now_ms(),
    )
    .await?;
    Ok(DryRunResponse {
        status: "success",
        request: request_of(&spec, state.keys.count(spec.user_id)),
        next_run_times: checked.next_run_times.into_iter().map(to_rfc3339).collect(),
        warnings: checked
            .warnings
            .into_iter()
            .map(|w| DryRunWarning {
                code: w.code,
                message: w.message,
            })
            .collect(),
    })
}

/// The request as the dispatcher would send it: the task's headers (values redacted), then
/// tickwheel's, which replace a task header of the same name — except `User-Agent`, which a
/// task may set for itself. `signing_keys` is how many keys the user has: each adds a
/// signature to `webhook-signature`.
fn request_of(spec: &TaskSpec, signing_keys: usize) -> DryRunRequest {
    let body = spec.body.clone().filter(|_| spec.method.allows_body());
    let mut ours: Vec<(&str, String)> = vec![
        ("Accept-Encoding", "identity".into()),
        (
            "X-Tickwheel-Task-Id",
            "<the task id, given at create>".into(),
        ),
        (
            "webhook-id",
            "<task id>:<scheduled time in epoch milliseconds>".into(),
        ),
        (
            "webhook-timestamp",
            "<epoch seconds of each attempt>".into(),
        ),
    ];
    if signing_keys > 0 {
        ours.push((
            "webhook-signature",
            vec![
                "v1,<base64 HMAC-SHA256 of \"<webhook-id>.<webhook-timestamp>.<body>\">";
                signing_keys
            ]
            .join(" "),
        ));
    }
    if body.is_some() {
        ours.push(("Content-Type", "application/json".into()));
    }
    let is_ours = |name: &str| ours.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut headers: BTreeMap<String, String> = spec
        .headers
        .iter()
        .filter(|(name, _)| !is_ours(name))
        .map(|(name, _)| (name.clone(), REDACTED.to_owned()))
        .collect();
    if !headers.keys().any(|n| n.eq_ignore_ascii_case("user-agent")) {
        headers.insert("User-Agent".into(), USER_AGENT.into());
    }
    headers.extend(ours.into_iter().map(|(n, v)| (n.to_owned(), v)));
    DryRunRequest {
        method: spec.method.as_str(),
        url: spec.http_endpoint.to_string(),
        headers,
        body,
    }
}

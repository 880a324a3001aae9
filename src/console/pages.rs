//! The console's screens: sign-in and sign-out, the task list, a task's page and its actions,
//! the cluster view. Each handler reads the session, calls the operation the matching
//! `/api/v1` handler calls, and renders its answer.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::session::{self, Session};
use super::view::{self, FireRow, Line, LogRow, TaskRow};
use super::{
    field, form_pairs, page, page_response, query, see_other, ConsoleError, Layout, MessagePage,
};
use crate::api::tasks::parse_task_id;
use crate::api::views::{ClusterMember, LastExecution, StatusCounts};
use crate::api::{self, ApiError, AppState};
use crate::auth::AuthError;

/// Tasks per page of the list, and log rows per page of a task.
const PAGE_SIZE: u64 = 50;
/// The fire times a task's page previews.
const PREVIEW_COUNT: usize = 10;

#[derive(Template)]
#[template(path = "console/signin.html")]
struct SignInPage {
    layout: Layout,
    message: String,
}

fn sign_in_message(m: &str) -> &'static str {
    match m {
        "expired" => "Your session has expired: paste a new token to sign in again.",
        "invalid" => "Your session's token is no longer valid: paste a new one.",
        "signed_out" => "You are signed out.",
        _ => "",
    }
}

pub async fn sign_in_page(req: HttpRequest) -> Result<HttpResponse, ConsoleError> {
    let q = query(&req);
    page(SignInPage {
        layout: Layout::anonymous(),
        message: sign_in_message(field(&q, "m")).to_owned(),
    })
}

/// Signs in with a pasted token: verified as the API verifies it, then kept in the cookie.
pub async fn sign_in(req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ConsoleError> {
    session::same_origin(&req)?;
    let pairs = form_pairs(&body);
    let token = field(&pairs, "token").trim();
    let refuse = |message: String| {
        Ok(page_response(
            StatusCode::UNAUTHORIZED,
            SignInPage {
                layout: Layout::anonymous(),
                message,
            },
        ))
    };
    if token.is_empty() {
        return refuse("Paste an access token (tickwheel token --user ID).".into());
    }
    match session::verify(&req, token) {
        Ok(_) => {
            let mut r = see_other("/");
            r.add_cookie(&session::sign_in_cookie(&req, token))
                .map_err(|e| ConsoleError::Internal(e.to_string()))?;
            Ok(r)
        }
        Err(AuthError::Expired) => refuse("That token has expired: get a new one.".into()),
        Err(e) => refuse(format!("That token is not accepted: {e}.")),
    }
}

pub async fn sign_out(
    req: HttpRequest,
    s: Session,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    s.check(&req, &form_pairs(&body))?;
    let mut r = see_other("/signin?m=signed_out");
    r.add_cookie(&session::sign_out_cookie(&req))
        .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    Ok(r)
}

/// A status with its count and the link that filters by it.
struct Count {
    status: &'static str,
    n: u64,
    href: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "console/tasks.html")]
struct TasksPage {
    layout: Layout,
    user: String,
    own: bool,
    q: String,
    status: String,
    task_type: String,
    counts: Vec<Count>,
    all: u64,
    rows: Vec<TaskRow>,
    showing: String,
    prev: Option<String>,
    next: Option<String>,
    done: String,
}

fn counts_of(c: &StatusCounts) -> [(&'static str, u64); 6] {
    [
        ("pending", c.pending),
        ("running", c.running),
        ("paused", c.paused),
        ("completed", c.completed),
        ("failed", c.failed),
        ("stopped", c.stopped),
    ]
}

fn list_href(user: &str, status: &str, task_type: &str, q: &str, page: u64) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("user", user),
        ("status", status),
        ("type", task_type),
        ("q", q),
    ] {
        if !v.is_empty() {
            out.append_pair(k, v);
        }
    }
    if page > 0 {
        out.append_pair("page", &page.to_string());
    }
    format!("/?{}", out.finish())
}

fn done_message(done: &str) -> &'static str {
    match done {
        "deleted" => "Task deleted.",
        "created" => "Task created.",
        "paused" => "Task paused.",
        "resumed" => "Task resumed.",
        "run" => "Run started: its log rows appear below as it executes.",
        "cancel" => "Task cancelled.",
        "edited" => "Task changed.",
        _ => "",
    }
}

/// The task list: counts per status, filters, search and server-side paging.
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
) -> Result<HttpResponse, ConsoleError> {
    let q = query(&req);
    let user = match field(&q, "user").trim() {
        "" => s.who.user_id.to_string(),
        u => u.to_owned(),
    };
    let status = field(&q, "status").to_owned();
    let task_type = field(&q, "type").to_owned();
    let text = field(&q, "q").to_owned();
    let page_no: u64 = field(&q, "page").parse().unwrap_or(0).min(u32::MAX as u64);
    let mut pairs = vec![
        ("limit".to_owned(), PAGE_SIZE.to_string()),
        ("offset".to_owned(), (page_no * PAGE_SIZE).to_string()),
    ];
    for (k, v) in [("status", &status), ("type", &task_type), ("q", &text)] {
        if !v.is_empty() {
            pairs.push((k.to_owned(), v.clone()));
        }
    }
    let list = api::users::list_of(&state, &s.who, &user, &pairs).await?;
    // Each listed task's latest attempt, as its task view shows it (`last_execution`): one
    // indexed read per row of the page, never of the whole list.
    let mut rows = Vec::with_capacity(list.tasks.len());
    for t in &list.tasks {
        let id = parse_task_id(&t.task_id)?;
        let last = state.store.last_log(id).await.map_err(ApiError::from)?;
        rows.push(TaskRow::new(
            t,
            last.as_ref().map(LastExecution::from).as_ref(),
        ));
    }
    let counts = counts_of(&list.counts);
    let first = page_no * PAGE_SIZE;
    let shown = list.tasks.len() as u64;
    page(TasksPage {
        counts: counts
            .iter()
            .map(|(st, n)| Count {
                status: st,
                n: *n,
                href: list_href(&user, st, &task_type, &text, 0),
                current: status == *st,
            })
            .collect(),
        all: counts.iter().map(|(_, n)| n).sum(),
        rows,
        showing: if shown == 0 {
            format!("no tasks of {} match", list.total)
        } else {
            format!("{}–{} of {}", first + 1, first + shown, list.total)
        },
        prev: (page_no > 0).then(|| list_href(&user, &status, &task_type, &text, page_no - 1)),
        next: (first + shown < list.total)
            .then(|| list_href(&user, &status, &task_type, &text, page_no + 1)),
        own: user == s.who.user_id.to_string(),
        done: done_message(field(&q, "done")).to_owned(),
        layout: Layout::of(&s),
        user,
        q: text,
        status,
        task_type,
    })
}

/// An action the task page offers, as a button.
struct Action {
    name: &'static str,
    label: &'static str,
    /// Destructive: the button leads to a confirmation page first.
    confirm: bool,
}

#[derive(Template)]
#[template(path = "console/task.html")]
struct TaskPage {
    layout: Layout,
    task_id: String,
    endpoint: String,
    status: String,
    lines: Vec<Line>,
    fires: Vec<FireRow>,
    zone: String,
    actions: Vec<Action>,
    editable: bool,
    outcome: String,
    logs: Vec<LogRow>,
    logs_total: u64,
    logs_prev: Option<String>,
    logs_next: Option<String>,
    chart: Option<String>,
    done: String,
}

fn actions_for(status: &str) -> Vec<Action> {
    let active = matches!(status, "pending" | "running");
    let finished = matches!(status, "completed" | "failed" | "stopped");
    let mut out = Vec::new();
    let mut add = |name, label, confirm| {
        out.push(Action {
            name,
            label,
            confirm,
        })
    };
    if active {
        add("pause", "Pause", false);
    }
    if status == "paused" {
        add("resume", "Resume", false);
    }
    if !finished {
        add("run", "Run now", false);
        add("cancel", "Cancel…", true);
    }
    add("delete", "Delete…", true);
    out
}

/// A task: its definition, next fire times, actions, log (filtered, paged) and chart.
pub async fn task(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    s: Session,
) -> Result<HttpResponse, ConsoleError> {
    let task_id = parse_task_id(&path)?;
    let q = query(&req);
    let t = api::tasks::view_of(&state, &s.who, task_id).await?;
    let preview = api::schedules::task_preview_of(&state, &s.who, task_id, PREVIEW_COUNT).await?;
    let outcome = field(&q, "outcome").to_owned();
    let page_no: u64 = field(&q, "page").parse().unwrap_or(0).min(u32::MAX as u64);
    let mut pairs = vec![
        ("limit".to_owned(), PAGE_SIZE.to_string()),
        ("offset".to_owned(), (page_no * PAGE_SIZE).to_string()),
    ];
    if !outcome.is_empty() {
        pairs.push(("outcome".to_owned(), outcome.clone()));
    }
    let logs = api::tasks::logs_of(&state, &s.who, task_id, &pairs).await?;
    let (fires, zone) = view::fires(&preview);
    let log_href = |p: u64| {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        if !outcome.is_empty() {
            out.append_pair("outcome", &outcome);
        }
        out.append_pair("page", &p.to_string());
        format!("/tasks/{task_id}?{}#log", out.finish())
    };
    let shown = logs.logs.len() as u64;
    page(TaskPage {
        layout: Layout::of(&s),
        task_id: t.task_id.clone(),
        endpoint: t.http_endpoint.clone(),
        status: t.status.clone(),
        lines: view::definition(&t),
        fires,
        zone,
        actions: actions_for(&t.status),
        editable: matches!(t.status.as_str(), "pending" | "running"),
        logs: logs.logs.iter().map(LogRow::from).collect(),
        logs_total: logs.total,
        logs_prev: (page_no > 0).then(|| log_href(page_no - 1)),
        logs_next: (page_no * PAGE_SIZE + shown < logs.total).then(|| log_href(page_no + 1)),
        chart: super::chart::svg(&logs.logs),
        done: done_message(field(&q, "done")).to_owned(),
        outcome,
    })
}

#[derive(Template)]
#[template(path = "console/confirm.html")]
struct ConfirmPage {
    layout: Layout,
    task_id: String,
    endpoint: String,
    action: String,
    question: &'static str,
    button: &'static str,
}

/// The confirmation a destructive action asks for before its form is posted.
pub async fn confirm(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    s: Session,
) -> Result<HttpResponse, ConsoleError> {
    let (raw, action) = path.into_inner();
    let task_id = parse_task_id(&raw)?;
    let (question, button) = match action.as_str() {
        "cancel" => (
            "Cancel this task? It stops for good; the task and its log are kept.",
            "Cancel the task",
        ),
        "delete" => (
            "Delete this task? The task and its whole log are removed for good.",
            "Delete permanently",
        ),
        _ => return Err(ApiError::RouteNotFound("no such action".into()).into()),
    };
    let t = api::tasks::view_of(&state, &s.who, task_id).await?;
    page(ConfirmPage {
        layout: Layout::of(&s),
        task_id: t.task_id,
        endpoint: t.http_endpoint,
        action,
        question,
        button,
    })
}

/// Pause, resume, run now, cancel or delete, as the task page's forms post them.
pub async fn act(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    s: Session,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    s.check(&req, &form_pairs(&body))?;
    let (raw, action) = path.into_inner();
    let task_id = parse_task_id(&raw)?;
    let back = format!("/tasks/{task_id}");
    match action.as_str() {
        "pause" => {
            api::tasks::pause_of(&state, &s.who, task_id, None).await?;
        }
        "resume" => {
            api::tasks::resume_of(&state, &s.who, task_id, None).await?;
        }
        "cancel" => {
            api::tasks::cancel_of(&state, &s.who, task_id).await?;
        }
        "delete" => {
            api::tasks::delete_of(&state, &s.who, task_id).await?;
            return Ok(see_other("/?done=deleted"));
        }
        "run" => {
            let r = api::run_now::run_of(&state, &s.who, task_id, s.authorization(), false).await?;
            if !r.status().is_success() {
                return Ok(refused(&s, r, &back).await);
            }
        }
        _ => return Err(ApiError::RouteNotFound("no such action".into()).into()),
    }
    let done = match action.as_str() {
        "pause" => "paused",
        "resume" => "resumed",
        other => other,
    };
    Ok(see_other(&format!("{back}?done={done}")))
}

/// The page for an API answer that refused (here: run now, answered by the task's node).
async fn refused(s: &Session, r: HttpResponse, back: &str) -> HttpResponse {
    let status = r.status();
    let body = actix_web::body::to_bytes(r.into_body())
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| status.to_string());
    page_response(
        status,
        MessagePage {
            layout: Layout::of(s),
            title: "Not possible now".to_owned(),
            message,
            back: Some(back.to_owned()),
        },
    )
}

#[derive(Template)]
#[template(path = "console/cluster.html")]
struct ClusterPage {
    layout: Layout,
    node_id: String,
    members: Vec<ClusterMember>,
    /// This node's fires per second over the last minute.
    fire_rate: String,
    /// This node's fire lateness p99 since it started (a histogram bucket's bound).
    lateness_p99: String,
}

/// The cluster as this node sees it (admin).
pub async fn cluster(
    state: web::Data<AppState>,
    metrics: Option<web::Data<api::metrics::MetricsState>>,
    s: Session,
) -> Result<HttpResponse, ConsoleError> {
    let v = api::cluster::view_of(&state, &s.who).await?;
    // This node's own figures, as its /metrics has them (none when metrics are off).
    let (fire_rate, lateness_p99) = match &metrics {
        Some(m) => (
            crate::metrics::fire_rate().map_or("—".to_owned(), |r| format!("{r:.1} fires/s")),
            crate::metrics::lateness_p99(&crate::metrics::render(&m.handle)).map_or(
                "—".to_owned(),
                |p| match p {
                    p if p.is_infinite() => "over 10 s".to_owned(),
                    p => format!("≤ {} ms", p * 1000.0),
                },
            ),
        ),
        None => ("metrics are off".to_owned(), "metrics are off".to_owned()),
    };
    page(ClusterPage {
        layout: Layout::of(&s),
        node_id: v.node_id,
        members: v.members,
        fire_rate,
        lateness_p99,
    })
}

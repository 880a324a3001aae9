//! The downstream the tasks call: a small actix-web server that answers 200 at once and records
//! each delivery's `webhook-id` (task and scheduled slot), its arrival time, its connection and
//! how many signatures it carries.
//! A background thread finds which node opened each new connection: the client end's socket
//! inode in /proc/net/tcp, looked up among the registered nodes' open file descriptors. The
//! request path never waits for that lookup.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use actix_web::dev::Extensions;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use uuid::Uuid;

use crate::procs::now_ms;

#[derive(Debug, Clone)]
pub struct Delivery {
    pub task: Uuid,
    /// The slot: the scheduled time in epoch ms from `webhook-id: <task_id>:<ms>`.
    pub slot: i64,
    /// Arrival at the sink, epoch ms.
    pub at: i64,
    /// The node that sent it (None if the connection could not be traced to a node).
    pub node: Option<Arc<str>>,
    /// `v1,…` entries in its `webhook-signature` (0 without the header).
    pub signatures: usize,
}

struct Recorded {
    task: Uuid,
    slot: i64,
    at: i64,
    conn: u64,
    signatures: usize,
}

#[derive(Default)]
struct State {
    deliveries: Vec<Recorded>,
    /// Requests without a well-formed `webhook-id`, or whose `x-tickwheel-task-id` disagrees.
    malformed: Vec<String>,
}

/// Connections and the nodes they belong to.
#[derive(Default)]
struct Conns {
    nodes: Vec<(u32, Arc<str>)>,
    /// (connection, client port, accepted) not yet traced.
    pending: Vec<(u64, u16, Instant)>,
    traced: HashMap<u64, Option<Arc<str>>>,
}

#[derive(Clone)]
pub struct Sink {
    pub port: u16,
    state: Arc<Mutex<State>>,
    conns: Arc<Mutex<Conns>>,
}

/// The connection a request came on, stored in the connection's extensions.
struct ConnId(u64);

impl Sink {
    /// Starts the sink on 127.0.0.1 with a free port, inside the current actix system.
    pub fn start() -> Sink {
        let state = Arc::new(Mutex::new(State::default()));
        let conns = Arc::new(Mutex::new(Conns::default()));
        let shared = state.clone();
        let on_conn = conns.clone();
        let next_id = Arc::new(AtomicU64::new(1));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .default_service(web::to(handle))
        })
        .on_connect(move |conn: &dyn Any, ext: &mut Extensions| {
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            if let Some(peer) = conn
                .downcast_ref::<actix_web::rt::net::TcpStream>()
                .and_then(|s| s.peer_addr().ok())
            {
                on_conn
                    .lock()
                    .unwrap()
                    .pending
                    .push((id, peer.port(), Instant::now()));
            }
            ext.insert(ConnId(id));
        })
        .workers(2)
        .disable_signals()
        // A deep listen queue (set before binding): a take-over's burst of new connections
        // overflowed the 128 of a listener bound by `std::net`, and the dropped handshakes
        // were retried a second later, making fires look a second late.
        .backlog(4096)
        .bind(("127.0.0.1", 0))
        .expect("bind sink");
        let port = server.addrs()[0].port();
        let server = server.run();
        actix_web::rt::spawn(server);
        let weak = Arc::downgrade(&conns);
        std::thread::spawn(move || tracer(weak, port));
        Sink { port, state, conns }
    }

    /// Names the process `pid` as node `name` for the attribution of its connections.
    pub fn register(&self, pid: u32, name: &str) {
        self.conns.lock().unwrap().nodes.push((pid, name.into()));
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Everything recorded so far, with the sending node where it is known. Waits (briefly)
    /// for connections not traced yet.
    pub fn snapshot(&self) -> Vec<Delivery> {
        let start = Instant::now();
        while !self.conns.lock().unwrap().pending.is_empty()
            && start.elapsed() < Duration::from_secs(2)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let state = self.state.lock().unwrap();
        let conns = self.conns.lock().unwrap();
        state
            .deliveries
            .iter()
            .map(|r| Delivery {
                task: r.task,
                slot: r.slot,
                at: r.at,
                node: conns.traced.get(&r.conn).cloned().flatten(),
                signatures: r.signatures,
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap().deliveries.len()
    }

    pub fn malformed(&self) -> Vec<String> {
        self.state.lock().unwrap().malformed.clone()
    }
}

/// Traces new connections to nodes every few milliseconds while there are any, until the sink
/// is gone.
fn tracer(conns: Weak<Mutex<Conns>>, sink_port: u16) {
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let Some(conns) = conns.upgrade() else {
            return;
        };
        let nodes = {
            let c = conns.lock().unwrap();
            if c.pending.is_empty() {
                continue;
            }
            c.nodes.clone()
        };
        // Every connection accepted before this instant has its client socket in the table.
        let started = Instant::now();
        let by_port = client_ports(sink_port, &nodes);
        let mut c = conns.lock().unwrap();
        let pending = std::mem::take(&mut c.pending);
        for (id, port, accepted) in pending {
            if accepted <= started {
                c.traced.insert(id, by_port.get(&port).cloned());
            } else {
                c.pending.push((id, port, accepted));
            }
        }
    }
}

/// Client port → node for every socket of a registered node connected to the sink.
fn client_ports(sink_port: u16, nodes: &[(u32, Arc<str>)]) -> HashMap<u16, Arc<str>> {
    let mut node_of_inode = HashMap::new();
    for (pid, name) in nodes {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(inode) = link
                .to_str()
                .and_then(|s| s.strip_prefix("socket:["))
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok())
            {
                node_of_inode.insert(inode, name.clone());
            }
        }
    }
    let remote = format!(":{sink_port:04X} ");
    let mut out = HashMap::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // Cheap pre-filter: the remote address column ends in the sink's port.
            if !line.contains(&remote) {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || !f[2].ends_with(&remote[..remote.len() - 1]) {
                continue;
            }
            let local = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            let node = f[9].parse::<u64>().ok().and_then(|i| node_of_inode.get(&i));
            if let (Some(local), Some(node)) = (local, node) {
                out.insert(local, node.clone());
            }
        }
    }
    out
}

/// The body is taken (and dropped) so that the connection stays open for the next request.
async fn handle(
    req: HttpRequest,
    _body: web::Bytes,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let at = now_ms();
    let conn = req.conn_data::<ConnId>().map_or(0, |c| c.0);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let id = header("webhook-id");
    let parsed = id.as_deref().and_then(|id| {
        let (task, ms) = id.rsplit_once(':')?;
        Some((task.parse::<Uuid>().ok()?, ms.parse::<i64>().ok()?))
    });
    let mut s = state.lock().unwrap();
    match parsed {
        Some((task, slot))
            if header("x-tickwheel-task-id").and_then(|t| t.parse::<Uuid>().ok()) == Some(task) =>
        {
            s.deliveries.push(Recorded {
                task,
                slot,
                at,
                conn,
                signatures: header("webhook-signature").map_or(0, |h| h.split(' ').count()),
            })
        }
        _ => s.malformed.push(format!(
            "webhook-id {:?}, x-tickwheel-task-id {:?}",
            id,
            header("x-tickwheel-task-id")
        )),
    }
    HttpResponse::Ok().finish()
}

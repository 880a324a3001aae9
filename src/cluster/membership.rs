//! The Membership actor: this node's ZooKeeper session, its ephemeral sequential znode under
//! `{root}/members` (data: node id, advertised address, owner token), a watch on the member
//! list, and the partition map computed from it. It tells the TaskRegistry which partitions
//! this node owns, keeps the fencing [`Lease`] current, and on shutdown leaves first (its
//! znode is deleted, so the others take over at once) and closes the session last.
//!
//! Session events: a disconnection is ridden out while the lease lasts (two thirds of the
//! session timeout); a lost session (expired, or closed by the server) revokes the lease,
//! drops every partition at once, and the node joins again as a new member.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use zookeeper_client as zk;

use super::Lease;
use crate::actors::registry::Owned;
use crate::domain::partition::assign;
use crate::metrics::{self, ActorKind};

/// A member as its znode describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub node_id: String,
    pub address: String,
    /// `node_id/incarnation`: unique per process.
    pub owner: String,
}

/// The live members, from one read of the member list (sorted by znode sequence).
#[derive(Message)]
#[rtype(result = "()")]
struct MembersChanged(Vec<Member>);

/// The session is gone: nothing may be fired and no partition is ours until we rejoin.
#[derive(Message)]
#[rtype(result = "()")]
struct SessionLost;

/// What `GET /api/v1/cluster` shows.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    pub node_id: String,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub node_id: String,
    pub address: String,
    pub partitions: Vec<u32>,
}

#[derive(Message)]
#[rtype(result = "ClusterView")]
pub struct GetView;

/// Shutdown, first step: delete this node's znode (the others take its partitions over)
/// and hand every partition over. Answers whether other members remain to take them.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Leave;

/// Shutdown, last step: close the ZooKeeper session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

#[derive(Clone, Debug)]
pub struct MembershipSettings {
    pub node_id: String,
    pub owner: String,
    pub address: String,
    pub connect: String,
    pub root: String,
    pub session_timeout: Duration,
    pub partitions: u32,
}

pub struct Membership {
    settings: MembershipSettings,
    /// The registry: which partitions this node owns.
    registry: Recipient<Owned>,
    lease: Arc<Lease>,
    members: Vec<Member>,
    /// Per partition, the index of its owner in `members`.
    map: Vec<Option<usize>>,
    leave: CancellationToken,
    close: CancellationToken,
    left: Option<tokio::sync::oneshot::Receiver<()>>,
    leaving: bool,
}

impl Membership {
    pub fn new(
        settings: MembershipSettings,
        registry: Recipient<Owned>,
        lease: Arc<Lease>,
    ) -> Self {
        Self {
            settings,
            registry,
            lease,
            members: Vec::new(),
            map: Vec::new(),
            leave: CancellationToken::new(),
            close: CancellationToken::new(),
            left: None,
            leaving: false,
        }
    }

    fn mine(&self) -> Vec<u32> {
        self.map
            .iter()
            .enumerate()
            .filter(|(_, o)| {
                o.and_then(|i| self.members.get(i))
                    .is_some_and(|m| m.node_id == self.settings.node_id)
            })
            .map(|(p, _)| p as u32)
            .collect()
    }

    /// Tells the registry what it owns, with the live members' owner tokens.
    fn owned(&self, partitions: Vec<u32>, hand_over: bool) -> Owned {
        Owned {
            partitions,
            live_owners: self.members.iter().map(|m| m.owner.clone()).collect(),
            hand_over,
        }
    }

    fn publish(&mut self, hand_over: bool) {
        let ids: Vec<&str> = self.members.iter().map(|m| m.node_id.as_str()).collect();
        self.map = assign(&ids, self.settings.partitions);
        let mine = self.mine();
        metrics::cluster_members(self.members.len());
        metrics::partitions_owned(mine.len());
        tracing::info!(
            members = self.members.len(),
            partitions = mine.len(),
            "cluster membership changed"
        );
        metrics::sent(ActorKind::Registry);
        self.registry.do_send(self.owned(mine, hand_over));
    }
}

impl Actor for Membership {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        metrics::live_add(ActorKind::Membership, 1.0);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.left = Some(rx);
        actix_rt::spawn(session_loop(
            self.settings.clone(),
            ctx.address(),
            self.lease.clone(),
            self.leave.clone(),
            self.close.clone(),
            tx,
        ));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        metrics::live_add(ActorKind::Membership, -1.0);
        self.close.cancel();
    }
}

impl Handler<MembersChanged> for Membership {
    type Result = ();

    fn handle(&mut self, msg: MembersChanged, _: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Membership, "MembersChanged");
        if self.leaving {
            return;
        }
        // One entry per node id: a node that rejoined may briefly have its old znode too;
        // the newest (last in sequence order) describes it.
        let mut members: Vec<Member> = Vec::with_capacity(msg.0.len());
        for m in msg.0 {
            match members.iter_mut().find(|x| x.node_id == m.node_id) {
                Some(x) => {
                    if x.owner != m.owner
                        && m.owner != self.settings.owner
                        && x.owner != self.settings.owner
                    {
                        tracing::warn!(node_id = %m.node_id, "two live members share one node id; give every node its own cluster.node_id");
                    }
                    *x = m;
                }
                None => members.push(m),
            }
        }
        if members == self.members {
            return;
        }
        self.members = members;
        self.publish(true);
    }
}

impl Handler<SessionLost> for Membership {
    type Result = ();

    fn handle(&mut self, _: SessionLost, _: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Membership, "SessionLost");
        tracing::warn!(
            "ZooKeeper session lost: this node stops firing, drops its partitions and joins again"
        );
        self.members.clear();
        self.publish(false);
    }
}

impl Handler<GetView> for Membership {
    type Result = MessageResult<GetView>;

    fn handle(&mut self, _: GetView, _: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Membership, "GetView");
        let members = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| MemberView {
                node_id: m.node_id.clone(),
                address: m.address.clone(),
                partitions: self
                    .map
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| **o == Some(i))
                    .map(|(p, _)| p as u32)
                    .collect(),
            })
            .collect();
        MessageResult(ClusterView {
            node_id: self.settings.node_id.clone(),
            members,
        })
    }
}

impl Handler<Leave> for Membership {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, _: Leave, _: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Membership, "Leave");
        self.leaving = true;
        let others = self
            .members
            .iter()
            .any(|m| m.node_id != self.settings.node_id);
        self.members.retain(|m| m.node_id != self.settings.node_id);
        metrics::partitions_owned(0);
        metrics::sent(ActorKind::Registry);
        self.registry.do_send(self.owned(Vec::new(), others));
        self.leave.cancel();
        let left = self.left.take();
        Box::pin(async move {
            if let Some(rx) = left {
                let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
            }
            others
        })
    }
}

impl Handler<Close> for Membership {
    type Result = ();

    fn handle(&mut self, _: Close, _: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Membership, "Close");
        self.close.cancel();
    }
}

enum Ended {
    Leave,
    Lost,
}

fn acls() -> zk::Acls<'static> {
    zk::Acls::anyone_all()
}

/// How often a node cut off from ZooKeeper tries to reach it again. The client's own
/// reconnection backs off exponentially (100 ms, 200 ms, 400 ms, … after the first try): after
/// an outage of 2 s it would try again only about 3 s after the disconnection, past the lease.
const RECONNECT_EVERY: Duration = Duration::from_millis(100);

/// A client for `s`. Detached: dropping it never closes the session, since the session may
/// live on in a newer connection (see [`reconnect`]); [`close_session`] closes it.
fn connector(s: &MembershipSettings) -> zk::Connector {
    zk::Client::connector()
        .with_session_timeout(s.session_timeout)
        .with_connection_timeout(s.session_timeout / 3)
        .with_detached()
}

/// Connects, joins, watches, rejoins after a lost session; on `leave`, deletes the znode and
/// keeps the session (so the lease stays valid while the partitions are handed over) until
/// `close`.
async fn session_loop(
    s: MembershipSettings,
    me: Addr<Membership>,
    lease: Arc<Lease>,
    leave: CancellationToken,
    close: CancellationToken,
    left: tokio::sync::oneshot::Sender<()>,
) {
    let members_path = format!("{}/members", s.root);
    let mut left = Some(left);
    let mut failures = 0u32;
    loop {
        if leave.is_cancelled() {
            if let Some(tx) = left.take() {
                let _ = tx.send(());
            }
            return;
        }
        let connect = connector(&s).connect(&s.connect);
        let client = tokio::select! {
            r = connect => match r {
                Ok(c) => c,
                Err(e) => {
                    if failures == 0 {
                        tracing::warn!(error = %e, zookeeper = %s.connect, "cannot connect to ZooKeeper; retrying");
                    }
                    failures += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = leave.cancelled() => {}
                    }
                    continue;
                }
            },
            _ = leave.cancelled() => continue,
        };
        failures = 0;
        // Fire only within two thirds of the session timeout the server agreed to.
        let timeout = client.session_timeout().min(s.session_timeout);
        let validity = timeout * 2 / 3;
        let data = serde_json::to_vec(&Member {
            node_id: s.node_id.clone(),
            address: s.address.clone(),
            owner: s.owner.clone(),
        })
        .unwrap_or_default();
        let sent = Instant::now();
        let joined = async {
            client
                .mkdir(&members_path, &zk::CreateMode::Persistent.with_acls(acls()))
                .await?;
            let (_, seq) = client
                .create(
                    &format!("{members_path}/m-"),
                    &data,
                    &zk::CreateMode::EphemeralSequential.with_acls(acls()),
                )
                .await?;
            Ok::<_, zk::Error>(format!("{members_path}/m-{seq}"))
        }
        .await;
        let my_path = match joined {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot join the cluster in ZooKeeper; retrying");
                close_session(&s, client).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        lease.extend(sent, validity);
        tracing::info!(node_id = %s.node_id, znode = %my_path, session_timeout_ms = timeout.as_millis() as u64, "joined the cluster");
        // The session's current connection: replaced by `reconnect` when it is lost.
        let (current, clients) = tokio::sync::watch::channel(client);
        let lost = CancellationToken::new();
        let renewer = actix_rt::spawn(renew(
            clients.clone(),
            s.root.clone(),
            lease.clone(),
            timeout,
        ));
        let reconnector = actix_rt::spawn(reconnect(s.clone(), current, lost.clone()));
        let ended = watch_members(clients.clone(), &members_path, &me, &leave, &lost).await;
        let client = clients.borrow().clone();
        match ended {
            Ended::Leave => {
                if let Err(e) = client.delete(&my_path, None).await {
                    tracing::warn!(error = %e, "could not delete this node's znode; it goes with the session");
                }
                tracing::info!("left the cluster; handing partitions over");
                if let Some(tx) = left.take() {
                    let _ = tx.send(());
                }
                close.cancelled().await;
                renewer.abort();
                reconnector.abort();
                drop(clients);
                close_session(&s, client).await;
                return;
            }
            Ended::Lost => {
                renewer.abort();
                reconnector.abort();
                lease.revoke();
                metrics::sent(ActorKind::Membership);
                me.do_send(SessionLost);
            }
        }
    }
}

/// Closes the session of `client` (its clients are detached, so dropping them does not): a
/// client that is not detached takes the session over and, dropped, closes it.
async fn close_session(s: &MembershipSettings, client: zk::Client) {
    let session = client.session().clone();
    drop(client);
    let closer = zk::Client::connector()
        .with_session(session)
        .with_session_timeout(s.session_timeout)
        .with_fail_eagerly()
        .connect(&s.connect);
    if let Ok(Ok(closer)) = tokio::time::timeout(Duration::from_secs(1), closer).await {
        drop(closer);
    }
}

/// Keeps the session connected: when its connection is lost, starts an attempt to open a new
/// one for the same session every [`RECONNECT_EVERY`] (each given a third of the session
/// timeout, so that one stuck on a server still starting does not hold the next back); the
/// first to succeed takes the session over, unless the client reconnects by itself first.
/// Cancels `lost` when ZooKeeper says the session expired.
async fn reconnect(
    s: MembershipSettings,
    current: tokio::sync::watch::Sender<zk::Client>,
    lost: CancellationToken,
) {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    /// Attempts under way at most.
    const MAX_ATTEMPTS: usize = 16;
    loop {
        let client = current.borrow().clone();
        let mut state = client.state_watcher();
        // Until this connection is lost.
        loop {
            match state.state() {
                zk::SessionState::Disconnected => break,
                st if st.is_terminated() => return,
                _ => {
                    state.changed().await;
                }
            }
        }
        let session = client.session().clone();
        let since = Instant::now();
        let mut attempts = FuturesUnordered::new();
        let mut tick = tokio::time::interval(RECONNECT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The client tries at once by itself: the first attempt here comes one period later.
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match state.peek_state() {
                        zk::SessionState::Disconnected => {}
                        st if st.is_terminated() => return,
                        // The client made it by itself.
                        _ => break,
                    }
                    if attempts.len() < MAX_ATTEMPTS {
                        let attempt = connector(&s)
                            .with_session(session.clone())
                            .with_fail_eagerly()
                            .connect(&s.connect);
                        attempts.push(tokio::time::timeout(s.session_timeout / 3, attempt));
                    }
                }
                Some(done) = attempts.next(), if !attempts.is_empty() => match done {
                    Ok(Ok(new)) => {
                        tracing::info!(
                            ms = since.elapsed().as_millis() as u64,
                            "reconnected to ZooKeeper"
                        );
                        // The old client is dropped with its last handle; detached, it
                        // closes nothing.
                        current.send_replace(new);
                        break;
                    }
                    Ok(Err(zk::Error::SessionExpired)) => {
                        lost.cancel();
                        return;
                    }
                    _ => {}
                },
            }
        }
    }
}

/// Extends the lease with every answered request. A request is sent every fortieth of the
/// session timeout whether or not the ones before were answered, each on the session's
/// current connection, so that whatever the order in which answers come, the first answer to
/// a request sent after ZooKeeper is back renews the lease.
async fn renew(
    clients: tokio::sync::watch::Receiver<zk::Client>,
    root: String,
    lease: Arc<Lease>,
    timeout: Duration,
) {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    /// Requests waiting for an answer at most (one session timeout's worth).
    const MAX_OUTSTANDING: usize = 64;
    let every = (timeout / 40).max(Duration::from_millis(50));
    let validity = timeout * 2 / 3;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut asks = FuturesUnordered::new();
    let mut lapsed = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if !lapsed {
                    if let Some(ago) = lease.lapsed_for() {
                        lapsed = true;
                        tracing::warn!(lapsed_ms_ago = ago.as_millis() as u64, "cluster lease lapsed: ZooKeeper has not answered for two thirds of the session timeout; this node holds its fires until it does");
                    }
                }
                if asks.len() < MAX_OUTSTANDING {
                    let client = clients.borrow().clone();
                    let root = root.clone();
                    let sent = Instant::now();
                    asks.push(async move {
                        let r = tokio::time::timeout(timeout, client.check_stat(&root)).await;
                        (sent, matches!(r, Ok(Ok(_))))
                    });
                }
            }
            Some((sent, answered)) = asks.next(), if !asks.is_empty() => {
                if !answered {
                    continue;
                }
                if let Some(lapsed_for) = lease.extend(sent, validity) {
                    tracing::info!(fenced_ms = lapsed_for.as_millis() as u64, "cluster lease renewed: firing resumes, every fire held back is sent");
                }
                lapsed = false;
            }
        }
    }
}

/// Reads the member list and watches it until the session is lost or the node leaves,
/// starting again on the session's new connection whenever it changes.
async fn watch_members(
    mut clients: tokio::sync::watch::Receiver<zk::Client>,
    members_path: &str,
    me: &Addr<Membership>,
    leave: &CancellationToken,
    lost: &CancellationToken,
) -> Ended {
    let mut client = clients.borrow_and_update().clone();
    let mut state = client.state_watcher();
    loop {
        if lost.is_cancelled() || state.peek_state().is_terminated() {
            return Ended::Lost;
        }
        let listed = tokio::select! {
            biased;
            _ = leave.cancelled() => return Ended::Leave,
            Ok(()) = clients.changed() => None,
            r = client.get_and_watch_children(members_path) => Some(r),
        };
        let Some(listed) = listed else {
            // A new connection for the session: list and watch again through it.
            client = clients.borrow_and_update().clone();
            state = client.state_watcher();
            continue;
        };
        let watcher = match listed {
            Ok((children, _, watcher)) => {
                match read_members(&client, members_path, children).await {
                    Ok(members) => {
                        metrics::sent(ActorKind::Membership);
                        me.do_send(MembersChanged(members));
                    }
                    Err(zk::Error::SessionExpired) => return Ended::Lost,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the member list failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
                watcher
            }
            Err(zk::Error::SessionExpired) => return Ended::Lost,
            Err(e) => {
                tracing::warn!(error = %e, "watching the member list failed; retrying");
                let swapped = tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => false,
                    _ = state.changed() => false,
                    Ok(()) = clients.changed() => true,
                    _ = leave.cancelled() => return Ended::Leave,
                    _ = lost.cancelled() => return Ended::Lost,
                };
                if swapped {
                    client = clients.borrow_and_update().clone();
                    state = client.state_watcher();
                }
                continue;
            }
        };
        let swapped = tokio::select! {
            biased;
            _ = leave.cancelled() => return Ended::Leave,
            _ = lost.cancelled() => return Ended::Lost,
            Ok(()) = clients.changed() => true,
            ev = watcher.changed() => {
                if ev.session_state.is_terminated() {
                    return Ended::Lost;
                }
                false
            }
            st = state.changed() => {
                match st {
                    st if st.is_terminated() => return Ended::Lost,
                    zk::SessionState::Disconnected => {
                        tracing::warn!("ZooKeeper connection lost; firing continues while the lease lasts");
                    }
                    _ => {}
                }
                false
            }
        };
        if swapped {
            // A new connection for the session: list and watch again through it.
            client = clients.borrow_and_update().clone();
            state = client.state_watcher();
        }
    }
}

async fn read_members(
    client: &zk::Client,
    members_path: &str,
    mut children: Vec<String>,
) -> Result<Vec<Member>, zk::Error> {
    // Sequence order: the suffix is a zero-padded counter.
    children.sort_by(|a, b| a.rsplit('-').next().cmp(&b.rsplit('-').next()));
    let mut members = Vec::with_capacity(children.len());
    for c in children {
        match client.get_data(&format!("{members_path}/{c}")).await {
            Ok((data, _)) => match serde_json::from_slice::<Member>(&data) {
                Ok(m) => members.push(m),
                Err(e) => tracing::warn!(znode = %c, error = %e, "unreadable member znode ignored"),
            },
            // Left between the listing and the read.
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(members)
}

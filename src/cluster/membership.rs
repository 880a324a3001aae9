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

use super::{assign, Lease};
use crate::actors::registry::{Owned, TaskRegistry};
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
    registry: Addr<TaskRegistry>,
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
        registry: Addr<TaskRegistry>,
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
        let connect = zk::Client::connector()
            .with_session_timeout(s.session_timeout)
            .with_connection_timeout(s.session_timeout / 3)
            .connect(&s.connect);
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
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        lease.extend(sent, validity);
        tracing::info!(node_id = %s.node_id, znode = %my_path, session_timeout_ms = timeout.as_millis() as u64, "joined the cluster");
        let renewer = actix_rt::spawn(renew(
            client.clone(),
            s.root.clone(),
            lease.clone(),
            timeout,
        ));
        let ended = watch_members(&client, &members_path, &me, &leave).await;
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
                drop(client);
                return;
            }
            Ended::Lost => {
                renewer.abort();
                lease.revoke();
                metrics::sent(ActorKind::Membership);
                me.do_send(SessionLost);
                drop(client);
            }
        }
    }
}

/// Extends the lease after every answered request, a sixth of the session timeout apart.
async fn renew(client: zk::Client, root: String, lease: Arc<Lease>, timeout: Duration) {
    let every = (timeout / 6).max(Duration::from_millis(100));
    let validity = timeout * 2 / 3;
    let mut lapsed = false;
    loop {
        let sent = Instant::now();
        if !lapsed && !lease.valid() {
            lapsed = true;
            tracing::warn!("cluster lease lapsed: ZooKeeper has not answered for two thirds of the session timeout; this node holds its fires until it does");
        }
        let pause = match tokio::time::timeout(timeout, client.check_stat(&root)).await {
            Ok(Ok(_)) => {
                lease.extend(sent, validity);
                if lapsed {
                    lapsed = false;
                    tracing::info!("cluster lease renewed: firing resumes (one catch-up fire per task held back)");
                }
                every.saturating_sub(sent.elapsed())
            }
            // Disconnected: try again soon, so firing resumes as soon as ZooKeeper answers.
            _ => Duration::from_millis(50),
        };
        tokio::time::sleep(pause).await;
    }
}

/// Reads the member list and watches it until the session is lost or the node leaves.
async fn watch_members(
    client: &zk::Client,
    members_path: &str,
    me: &Addr<Membership>,
    leave: &CancellationToken,
) -> Ended {
    let mut state = client.state_watcher();
    loop {
        if matches!(
            state.peek_state(),
            zk::SessionState::Expired | zk::SessionState::Closed | zk::SessionState::AuthFailed
        ) {
            return Ended::Lost;
        }
        let listed = tokio::select! {
            r = client.get_and_watch_children(members_path) => r,
            _ = leave.cancelled() => return Ended::Leave,
        };
        let watcher = match listed {
            Ok((children, _, watcher)) => {
                match read_members(client, members_path, children).await {
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
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = state.changed() => {}
                    _ = leave.cancelled() => return Ended::Leave,
                }
                continue;
            }
        };
        tokio::select! {
            ev = watcher.changed() => {
                if matches!(ev.session_state, zk::SessionState::Expired | zk::SessionState::Closed | zk::SessionState::AuthFailed) {
                    return Ended::Lost;
                }
            }
            st = state.changed() => {
                match st {
                    zk::SessionState::Expired | zk::SessionState::Closed | zk::SessionState::AuthFailed => return Ended::Lost,
                    zk::SessionState::Disconnected => {
                        tracing::warn!("ZooKeeper connection lost; firing continues while the lease lasts");
                    }
                    _ => {}
                }
            }
            _ = leave.cancelled() => return Ended::Leave,
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

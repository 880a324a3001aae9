//! Partition ownership on this node: one state per partition, and the only place where it
//! changes. Plain data, no actor: the registry feeds it what happened (the membership's map, a
//! claim committed, a drain finished, …) and carries out the [`Action`] it answers.
//!
//! A partition goes `Unassigned → Claiming → Owned → Releasing → Unassigned`. Its tasks run
//! here only once its claim is committed (from [`Claim::Loading`] on). Two rules order the
//! hand-over within this node: a partition regained while this node still releases it is
//! claimed only once that release is committed, and a partition lost while this node's own
//! claim (or load) of it is under way is released only once that claim has landed — so that
//! neither write can overtake the other in the database.

/// Where one partition stands on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionState {
    /// Not this node's; nothing of it runs here.
    Unassigned,
    /// Given to this node by the membership; claimed in the database before its tasks run.
    Claiming(Claim),
    /// Claimed and loaded: its tasks run here.
    Owned,
    /// Taken away: its actors finish their calls, what they wrote is committed, then the
    /// claim is released in the database.
    Releasing(Release),
}

/// The steps of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Waits for its previous holder to release it (or for the hand-over deadline).
    Waiting,
    /// The claim is being committed.
    Committing,
    /// Claimed; its tasks are being loaded, and the ones loaded run already.
    Loading,
}

/// A release under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub stage: ReleaseStage,
    /// Given back to this node meanwhile: claimed again once the release is committed.
    pub regained: bool,
}

/// The steps of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseStage {
    /// Its actors finish their calls and what they wrote is committed. `after_claim`: this
    /// node's own claim (or load) of it is still under way.
    Draining { after_claim: bool },
    /// Drained; waits for this node's own claim (or load) of it to end.
    AwaitingClaim,
    /// The release is being committed.
    Committing,
}

/// What happened to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The membership's map: the partition is this node's (`true`) or not.
    Assigned(bool),
    /// A claim round takes it: its previous holder let go (or the deadline passed).
    ClaimSent,
    /// Its claim was committed.
    Claimed,
    /// Its claim failed (the claim round tries again).
    ClaimFailed,
    /// The load of its tasks ended (a failed one is made good by the next reconciliation).
    Loaded,
    /// The actors released with it finished and what they wrote was committed.
    Drained,
    /// Its release was committed (or given up on).
    Released,
}

/// What the registry does next for the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Newly given to this node: a claim round must take it.
    Claim,
    /// Taken away: release its actors now and let them drain.
    Drain,
    /// Load its tasks: its claim is committed.
    Load,
    /// Commit its release now.
    CommitRelease,
}

/// An event the state does not expect (a bug in the registry, reported rather than acted on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("partition event {event:?} is not expected in state {state:?}")]
pub struct Unexpected {
    pub state: PartitionState,
    pub event: Event,
}

use Claim::{Committing, Loading, Waiting};
use PartitionState::{Claiming, Owned, Releasing, Unassigned};
use ReleaseStage::{AwaitingClaim, Draining};

impl PartitionState {
    /// Whether the tasks of the partition may run here.
    pub fn runs_tasks(self) -> bool {
        matches!(self, Owned | Claiming(Loading))
    }

    /// The state after `event`, and what to do about it.
    pub fn on(self, event: Event) -> Result<(Self, Option<Action>), Unexpected> {
        let unexpected = Err(Unexpected { state: self, event });
        let releasing = |after_claim| {
            Releasing(Release {
                stage: Draining { after_claim },
                regained: false,
            })
        };
        Ok(match (self, event) {
            (Unassigned, Event::Assigned(false)) => (self, None),
            (Unassigned, Event::Assigned(true)) => (Claiming(Waiting), Some(Action::Claim)),
            (Claiming(_) | Owned, Event::Assigned(true)) => (self, None),
            // Released even if never claimed: a claim of an earlier turn whose release failed
            // is given up now.
            (Claiming(Waiting) | Owned, Event::Assigned(false)) => {
                (releasing(false), Some(Action::Drain))
            }
            (Claiming(Committing | Loading), Event::Assigned(false)) => {
                (releasing(true), Some(Action::Drain))
            }
            (Claiming(Waiting), Event::ClaimSent) => (Claiming(Committing), None),
            (Claiming(Committing), Event::Claimed) => (Claiming(Loading), Some(Action::Load)),
            (Claiming(Committing), Event::ClaimFailed) => (Claiming(Waiting), None),
            (Claiming(Loading), Event::Loaded) => (Owned, None),
            (Releasing(r), Event::Assigned(mine)) => (
                Releasing(Release {
                    regained: mine,
                    ..r
                }),
                (mine && !r.regained).then_some(Action::Claim),
            ),
            (Releasing(r), Event::Drained) => match r.stage {
                Draining { after_claim: false } => (
                    Releasing(Release {
                        stage: ReleaseStage::Committing,
                        ..r
                    }),
                    Some(Action::CommitRelease),
                ),
                Draining { after_claim: true } => (
                    Releasing(Release {
                        stage: AwaitingClaim,
                        ..r
                    }),
                    None,
                ),
                _ => return unexpected,
            },
            // This node's own claim of it landed (or failed), or its load ended: the release
            // may follow.
            (Releasing(r), Event::Claimed | Event::ClaimFailed | Event::Loaded) => match r.stage {
                Draining { after_claim: true } => (
                    Releasing(Release {
                        stage: Draining { after_claim: false },
                        ..r
                    }),
                    None,
                ),
                AwaitingClaim => (
                    Releasing(Release {
                        stage: ReleaseStage::Committing,
                        ..r
                    }),
                    Some(Action::CommitRelease),
                ),
                _ => return unexpected,
            },
            (Releasing(r), Event::Released) if r.stage == ReleaseStage::Committing => {
                if r.regained {
                    (Claiming(Waiting), None)
                } else {
                    (Unassigned, None)
                }
            }
            _ => return unexpected,
        })
    }
}

/// What a claim round does with one of its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Claim it now.
    Claim,
    /// Keep waiting: its previous holder (or this node's own release) has not let go yet.
    Wait,
    /// Not this round's business any more (lost, or claimed by another round).
    Drop,
}

/// Every partition's state, indexed by partition.
#[derive(Debug, Clone)]
pub struct Partitions(Vec<PartitionState>);

impl Partitions {
    /// A single node: every partition is its own from the start.
    pub fn all_owned(partitions: u32) -> Self {
        Self(vec![Owned; partitions as usize])
    }

    /// A cluster member: nothing is its own until the membership says so.
    pub fn none_owned(partitions: u32) -> Self {
        Self(vec![Unassigned; partitions as usize])
    }

    /// How many partitions there are.
    pub fn count(&self) -> u32 {
        self.0.len() as u32
    }

    pub fn state(&self, p: u32) -> Option<PartitionState> {
        self.0.get(p as usize).copied()
    }

    /// Whether the tasks of `p` run here.
    pub fn runs_tasks(&self, p: u32) -> bool {
        self.state(p).is_some_and(PartitionState::runs_tasks)
    }

    /// The partitions whose tasks run here.
    pub fn running(&self) -> Vec<u32> {
        (0..self.count()).filter(|p| self.runs_tasks(*p)).collect()
    }

    /// Whether a release is under way (a hand-over waits for it).
    pub fn releasing(&self) -> bool {
        self.0.iter().any(|s| matches!(s, Releasing(_)))
    }

    /// Applies `event` to `p`.
    pub fn apply(&mut self, p: u32, event: Event) -> Result<Option<Action>, Unexpected> {
        let Some(state) = self.0.get_mut(p as usize) else {
            return Err(Unexpected {
                state: Unassigned,
                event,
            });
        };
        let (next, action) = state.on(event)?;
        *state = next;
        Ok(action)
    }

    /// A claim round's step for `p`: `held` when a live previous holder still has it, `late`
    /// once the round stopped waiting for previous holders. A partition to claim is marked
    /// as being committed.
    pub fn round(&mut self, p: u32, held: bool, late: bool) -> Round {
        match self.state(p) {
            Some(Claiming(Waiting)) if late || !held => match self.apply(p, Event::ClaimSent) {
                Ok(_) => Round::Claim,
                Err(_) => Round::Drop,
            },
            Some(Claiming(Waiting)) => Round::Wait,
            Some(Releasing(Release { regained: true, .. })) => Round::Wait,
            _ => Round::Drop,
        }
    }
}

#[cfg(test)]
mod tests;

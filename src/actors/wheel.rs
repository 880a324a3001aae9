//! TimingWheel actor: drives the hierarchical wheel (`crate::wheel::Wheel`) on its own
//! arbiter, so no other work can delay a tick. It sleeps until the earliest deadline on the
//! wheel (re-planning when an earlier timer arrives), then expires every due slot — catching
//! up on all of them if it woke late — and sends each due task its `Fire`.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use actix::WeakAddr;
use uuid::Uuid;

use super::task::TaskActor;
use crate::metrics::{self, ActorKind};
use crate::time::now_ms;
use crate::wheel::{TimerKey, Wheel};

/// Tells a task actor that its slot `scheduled_ms` is due. `generation` identifies the
/// registration, so a fire for a superseded registration is recognised and ignored.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Fire {
    pub scheduled_ms: i64,
    pub generation: u64,
}

/// Puts (or moves) a task's next fire on the wheel; replaces any earlier registration.
pub struct Register {
    pub task_id: Uuid,
    pub at_ms: i64,
    pub generation: u64,
    /// The task actor, held weakly: a stopped actor is never kept alive by its timer. (A
    /// `WeakAddr` is one pointer; a `WeakRecipient` would box it, per timer.)
    pub recipient: WeakAddr<TaskActor>,
}

/// Takes a task off the wheel, if its registration is still the one made with `generation`
/// (a newer actor for the same task may have registered since).
pub struct Deregister {
    pub task_id: Uuid,
    pub generation: u64,
}

pub enum WheelOp {
    Register(Register),
    Deregister(Deregister),
}

/// Registrations and withdrawals from task actors, applied in order (they arrive through an
/// [`Outbox`](super::outbox::Outbox): one message per turn of the senders' arbiter).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WheelOps(pub Vec<WheelOp>);

/// How many timers are on the wheel, by level (ms, s, min, overflow).
#[derive(Message)]
#[rtype(result = "WheelStats")]
pub struct GetWheelStats;

#[derive(MessageResponse, Debug, Clone, Copy)]
pub struct WheelStats(pub [usize; 4]);

struct Timer {
    task_id: Uuid,
    scheduled_ms: i64,
    generation: u64,
    recipient: WeakAddr<TaskActor>,
}

pub struct TimingWheel {
    wheel: Wheel<Timer>,
    keys: HashMap<Uuid, (TimerKey, u64)>,
    /// The deadline the current wake-up was planned for.
    planned: Option<(u64, SpawnHandle)>,
    due: Vec<(u64, Timer)>,
}

impl Default for TimingWheel {
    fn default() -> Self {
        Self::new()
    }
}

impl TimingWheel {
    pub fn new() -> Self {
        Self {
            wheel: Wheel::new(clock()),
            keys: HashMap::new(),
            planned: None,
            due: Vec::new(),
        }
    }

    fn plan(&mut self, ctx: &mut Context<Self>) {
        let Some(next) = self.wheel.next_expiration() else {
            if let Some((_, h)) = self.planned.take() {
                ctx.cancel_future(h);
            }
            return;
        };
        if let Some((at, h)) = self.planned {
            if at <= next {
                return;
            }
            ctx.cancel_future(h);
        }
        let wait = Duration::from_millis(next.saturating_sub(clock()));
        let handle = ctx.run_later(wait, |act, ctx| {
            act.planned = None;
            act.tick(ctx);
        });
        self.planned = Some((next, handle));
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let mut due = std::mem::take(&mut self.due);
        self.wheel.poll(clock(), &mut due);
        for (_, timer) in due.drain(..) {
            if self.keys.get(&timer.task_id).map(|k| k.1) == Some(timer.generation) {
                self.keys.remove(&timer.task_id);
            }
            if let Some(r) = timer.recipient.upgrade() {
                metrics::sent(ActorKind::Task);
                r.do_send(Fire {
                    scheduled_ms: timer.scheduled_ms,
                    generation: timer.generation,
                });
            }
        }
        self.due = due;
        self.plan(ctx);
    }
}

fn clock() -> u64 {
    u64::try_from(now_ms()).unwrap_or(0)
}

impl Actor for TimingWheel {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX_CAPACITY);
        metrics::live_add(ActorKind::Wheel, 1.0);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        metrics::live_add(ActorKind::Wheel, -1.0);
    }
}

impl TimingWheel {
    fn register(&mut self, msg: Register) {
        if let Some((old, _)) = self.keys.remove(&msg.task_id) {
            self.wheel.remove(old);
        }
        let deadline = u64::try_from(msg.at_ms).unwrap_or(0);
        let key = self.wheel.insert(
            deadline,
            Timer {
                task_id: msg.task_id,
                scheduled_ms: msg.at_ms,
                generation: msg.generation,
                recipient: msg.recipient,
            },
        );
        self.keys.insert(msg.task_id, (key, msg.generation));
    }

    fn deregister(&mut self, msg: Deregister) {
        if let Some(&(key, generation)) = self.keys.get(&msg.task_id) {
            if generation == msg.generation {
                self.keys.remove(&msg.task_id);
                self.wheel.remove(key);
            }
        }
    }
}

impl Handler<WheelOps> for TimingWheel {
    type Result = ();

    fn handle(&mut self, msg: WheelOps, ctx: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Wheel, "WheelOps");
        let mut earliest = u64::MAX;
        for op in msg.0 {
            match op {
                WheelOp::Register(r) => {
                    earliest = earliest.min(u64::try_from(r.at_ms).unwrap_or(0));
                    self.register(r);
                }
                WheelOp::Deregister(d) => self.deregister(d),
            }
        }
        if earliest <= clock() {
            self.tick(ctx);
        } else {
            self.plan(ctx);
        }
    }
}

impl Handler<GetWheelStats> for TimingWheel {
    type Result = WheelStats;

    fn handle(&mut self, _: GetWheelStats, _: &mut Self::Context) -> WheelStats {
        let _m = metrics::handling(ActorKind::Wheel, "GetWheelStats");
        WheelStats(self.wheel.level_counts())
    }
}

//! How a task actor (re)starts: its due slot goes on the wheel, or, when it is overdue, the
//! misfire policy decides (one paced catch-up fire, or the missed slots skipped and logged),
//! and the slots it missed are stored with the next run they lead to.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;

use super::{TaskActor, NEXT_GENERATION};
use crate::domain::run::StartDecision;
use crate::domain::{ExecutionRecord, TaskStatus};
use crate::metrics;
use crate::store::Write;
use crate::time::now_ms;

impl TaskActor {
    /// Puts the task's next slot on the wheel, or if it is overdue a paced catch-up fire for
    /// the slot the run rules pick.
    pub(super) fn start(&mut self, ctx: &mut Context<Self>) {
        let before = self.run.progress().missed_slots;
        match self.run.on_start(now_ms()) {
            StartDecision::Register(at) => self.register(at, ctx),
            StartDecision::CatchUp(slot) => {
                self.record_missed(before);
                let turn = self.deps.pacer.turn();
                self.fire_later(slot, turn, ctx);
            }
            StartDecision::SkipMissed {
                latest,
                skipped,
                next,
            } => {
                tracing::info!(task_id = %self.task_id, skipped, latest_ms = latest, "missed slots skipped (misfire policy skip)");
                metrics::fire("missed_skipped");
                self.push_log(ExecutionRecord::skipped_missed(
                    self.task_id,
                    self.user_id,
                    latest,
                    skipped,
                    now_ms(),
                ));
                self.record_missed(before);
                match next {
                    Some(at) => self.register(at, ctx),
                    None => self.finish(TaskStatus::Completed, ctx),
                }
            }
            StartDecision::Complete => self.finish(TaskStatus::Completed, ctx),
        }
    }

    /// Stores the missed slots the start just counted (beyond the `before` it loaded) with the
    /// next run they lead to.
    fn record_missed(&self, before: i64) {
        let progress = self.run.progress();
        if progress.missed_slots != before {
            self.deps.persistence.push(Write::Missed {
                task_id: self.task_id.to_string(),
                next_run_time: progress.next_run_time,
                missed_slots: progress.missed_slots,
            });
        }
    }

    /// Fires `slot` (overdue) after `wait`, unless the task is registered anew meanwhile.
    pub(super) fn fire_later(&mut self, slot: i64, wait: Duration, ctx: &mut Context<Self>) {
        self.generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = &self.deps.cluster {
            c.queue_next(self.task_id, slot);
        }
        let generation = self.generation;
        ctx.run_later(wait, move |act, ctx| {
            if act.run.is_ended() || act.draining || act.generation != generation {
                return;
            }
            act.fire(slot, ctx);
        });
    }
}

use super::*;

fn releasing(stage: ReleaseStage, regained: bool) -> PartitionState {
    Releasing(Release { stage, regained })
}

/// Applies `events` to partition 0 of a one-partition cluster member, answering the actions.
fn run(start: PartitionState, events: &[Event]) -> (PartitionState, Vec<Option<Action>>) {
    let mut ps = Partitions(vec![start]);
    let actions = events
        .iter()
        .map(|e| ps.apply(0, *e).expect("an expected event"))
        .collect();
    (ps.state(0).expect("partition 0"), actions)
}

const ALL_EVENTS: [Event; 8] = [
    Event::Assigned(true),
    Event::Assigned(false),
    Event::ClaimSent,
    Event::Claimed,
    Event::ClaimFailed,
    Event::Loaded,
    Event::Drained,
    Event::Released,
];

fn all_states() -> Vec<PartitionState> {
    let mut states = vec![
        Unassigned,
        Claiming(Waiting),
        Claiming(Committing),
        Claiming(Loading),
        Owned,
    ];
    for regained in [false, true] {
        for stage in [
            Draining { after_claim: false },
            Draining { after_claim: true },
            AwaitingClaim,
            ReleaseStage::Committing,
        ] {
            states.push(releasing(stage, regained));
        }
    }
    states
}

#[test]
fn a_gained_partition_runs_its_tasks_only_once_its_claim_is_committed() {
    let mut ps = Partitions::none_owned(1);
    assert_eq!(ps.apply(0, Event::Assigned(true)), Ok(Some(Action::Claim)));
    assert!(!ps.runs_tasks(0));
    assert_eq!(ps.round(0, false, false), Round::Claim);
    assert_eq!(ps.state(0), Some(Claiming(Committing)));
    assert!(!ps.runs_tasks(0));
    assert_eq!(ps.apply(0, Event::Claimed), Ok(Some(Action::Load)));
    assert!(ps.runs_tasks(0), "the tasks loaded start at once");
    assert_eq!(ps.apply(0, Event::Loaded), Ok(None));
    assert_eq!(ps.state(0), Some(Owned));
    assert_eq!(ps.running(), vec![0]);
}

#[test]
fn a_lost_partition_stops_its_tasks_at_once_then_drains_then_is_released() {
    let mut ps = Partitions::none_owned(2);
    ps.0[1] = Owned;
    assert_eq!(ps.apply(1, Event::Assigned(false)), Ok(Some(Action::Drain)));
    assert!(!ps.runs_tasks(1));
    assert!(ps.releasing(), "a hand-over waits for it");
    assert_eq!(ps.apply(1, Event::Drained), Ok(Some(Action::CommitRelease)));
    assert!(ps.releasing());
    assert_eq!(ps.apply(1, Event::Released), Ok(None));
    assert_eq!(ps.state(1), Some(Unassigned));
    assert!(!ps.releasing());
}

#[test]
fn a_claim_waits_for_this_nodes_own_release_of_the_same_partition() {
    let mut ps = Partitions::all_owned(1);
    assert_eq!(ps.apply(0, Event::Assigned(false)), Ok(Some(Action::Drain)));
    // Given back while its release is under way: a claim round is started for it, and waits.
    assert_eq!(ps.apply(0, Event::Assigned(true)), Ok(Some(Action::Claim)));
    assert!(!ps.runs_tasks(0));
    assert_eq!(
        ps.round(0, false, true),
        Round::Wait,
        "even past the deadline"
    );
    assert_eq!(ps.apply(0, Event::Drained), Ok(Some(Action::CommitRelease)));
    assert_eq!(ps.round(0, false, false), Round::Wait);
    assert_eq!(ps.apply(0, Event::Released), Ok(None));
    assert_eq!(ps.state(0), Some(Claiming(Waiting)));
    assert_eq!(ps.round(0, false, false), Round::Claim);
}

#[test]
fn a_release_waits_for_this_nodes_own_claim_of_the_same_partition() {
    // Lost while its claim is committed: drained, then released once the claim landed, and
    // its tasks are not loaded.
    let (state, actions) = run(
        Claiming(Committing),
        &[Event::Assigned(false), Event::Drained, Event::Claimed],
    );
    assert_eq!(
        actions,
        vec![Some(Action::Drain), None, Some(Action::CommitRelease)]
    );
    assert_eq!(state, releasing(ReleaseStage::Committing, false));
    // The claim may land before the drain ends, or fail: the release follows the drain.
    for claim_ends in [Event::Claimed, Event::ClaimFailed] {
        let (_, actions) = run(
            Claiming(Committing),
            &[Event::Assigned(false), claim_ends, Event::Drained],
        );
        assert_eq!(
            actions,
            vec![Some(Action::Drain), None, Some(Action::CommitRelease)]
        );
    }
    // Lost while its tasks load: released once the load ended.
    let (_, actions) = run(
        Claiming(Loading),
        &[Event::Assigned(false), Event::Drained, Event::Loaded],
    );
    assert_eq!(
        actions,
        vec![Some(Action::Drain), None, Some(Action::CommitRelease)]
    );
}

#[test]
fn a_partition_lost_before_its_claim_was_sent_is_released_without_waiting() {
    let (state, actions) = run(
        Claiming(Waiting),
        &[Event::Assigned(false), Event::Drained, Event::Released],
    );
    assert_eq!(
        actions,
        vec![Some(Action::Drain), Some(Action::CommitRelease), None]
    );
    assert_eq!(state, Unassigned);
}

#[test]
fn a_failed_claim_waits_to_be_claimed_again() {
    let mut ps = Partitions::none_owned(1);
    ps.apply(0, Event::Assigned(true)).expect("assigned");
    assert_eq!(ps.round(0, false, false), Round::Claim);
    assert_eq!(ps.apply(0, Event::ClaimFailed), Ok(None));
    assert_eq!(ps.state(0), Some(Claiming(Waiting)));
    assert_eq!(ps.round(0, false, false), Round::Claim);
}

#[test]
fn a_claim_round_waits_for_a_live_previous_holder_until_its_deadline() {
    let mut ps = Partitions::none_owned(1);
    ps.apply(0, Event::Assigned(true)).expect("assigned");
    assert_eq!(ps.round(0, true, false), Round::Wait);
    assert_eq!(ps.state(0), Some(Claiming(Waiting)));
    assert_eq!(ps.round(0, true, true), Round::Claim);
}

#[test]
fn a_claim_round_drops_what_was_lost_or_is_claimed_by_another_round() {
    for state in [
        Unassigned,
        Owned,
        Claiming(Committing),
        Claiming(Loading),
        releasing(Draining { after_claim: false }, false),
        releasing(ReleaseStage::Committing, false),
    ] {
        let mut ps = Partitions(vec![state]);
        assert_eq!(ps.round(0, false, true), Round::Drop, "{state:?}");
        assert_eq!(ps.state(0), Some(state), "unchanged");
    }
    let mut ps = Partitions::none_owned(1);
    assert_eq!(ps.round(7, false, true), Round::Drop, "out of range");
}

#[test]
fn the_membership_repeating_its_map_changes_nothing() {
    for state in all_states() {
        let mine = !matches!(
            state,
            Unassigned
                | Releasing(Release {
                    regained: false,
                    ..
                })
        );
        assert_eq!(
            state.on(Event::Assigned(mine)),
            Ok((state, None)),
            "{state:?}"
        );
    }
}

#[test]
fn only_a_claimed_partition_runs_tasks() {
    let running: Vec<_> = all_states()
        .into_iter()
        .filter(|s| s.runs_tasks())
        .collect();
    assert_eq!(running, vec![Claiming(Loading), Owned]);
    let single = Partitions::all_owned(4);
    assert_eq!(single.running(), vec![0, 1, 2, 3]);
    assert!(!single.releasing());
    assert!(Partitions::none_owned(4).running().is_empty());
}

#[test]
fn the_legal_transitions_are_exactly_these() {
    let mut legal = Vec::new();
    for state in all_states() {
        for event in ALL_EVENTS {
            match state.on(event) {
                Ok((next, action)) => legal.push((state, event, next, action)),
                Err(e) => assert_eq!(e, Unexpected { state, event }),
            }
        }
    }
    // Membership events are legal in every state; list the others.
    let others: Vec<_> = legal
        .iter()
        .filter(|(_, e, _, _)| !matches!(e, Event::Assigned(_)))
        .map(|(s, e, n, a)| (*s, *e, *n, *a))
        .collect();
    let r = releasing;
    let mut expected = vec![
        (
            Claiming(Waiting),
            Event::ClaimSent,
            Claiming(Committing),
            None,
        ),
        (
            Claiming(Committing),
            Event::Claimed,
            Claiming(Loading),
            Some(Action::Load),
        ),
        (
            Claiming(Committing),
            Event::ClaimFailed,
            Claiming(Waiting),
            None,
        ),
        (Claiming(Loading), Event::Loaded, Owned, None),
    ];
    for regained in [false, true] {
        let drained_claim = Draining { after_claim: true };
        let drained = Draining { after_claim: false };
        let committing = ReleaseStage::Committing;
        expected.extend([
            (
                r(drained, regained),
                Event::Drained,
                r(committing, regained),
                Some(Action::CommitRelease),
            ),
            (
                r(drained_claim, regained),
                Event::Claimed,
                r(drained, regained),
                None,
            ),
            (
                r(drained_claim, regained),
                Event::ClaimFailed,
                r(drained, regained),
                None,
            ),
            (
                r(drained_claim, regained),
                Event::Loaded,
                r(drained, regained),
                None,
            ),
            (
                r(drained_claim, regained),
                Event::Drained,
                r(AwaitingClaim, regained),
                None,
            ),
            (
                r(AwaitingClaim, regained),
                Event::Claimed,
                r(committing, regained),
                Some(Action::CommitRelease),
            ),
            (
                r(AwaitingClaim, regained),
                Event::ClaimFailed,
                r(committing, regained),
                Some(Action::CommitRelease),
            ),
            (
                r(AwaitingClaim, regained),
                Event::Loaded,
                r(committing, regained),
                Some(Action::CommitRelease),
            ),
            (
                r(committing, regained),
                Event::Released,
                if regained {
                    Claiming(Waiting)
                } else {
                    Unassigned
                },
                None,
            ),
        ]);
    }
    for t in &expected {
        assert!(others.contains(t), "missing {t:?}");
    }
    for t in &others {
        assert!(expected.contains(t), "unexpected {t:?}");
    }
}

#[test]
fn an_event_out_of_turn_changes_nothing() {
    let mut ps = Partitions::all_owned(1);
    assert_eq!(
        ps.apply(0, Event::Released),
        Err(Unexpected {
            state: Owned,
            event: Event::Released
        })
    );
    assert_eq!(ps.state(0), Some(Owned));
    assert!(ps.apply(3, Event::Claimed).is_err(), "out of range");
}

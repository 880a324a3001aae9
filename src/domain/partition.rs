//! Partitions: how the task space is cut up between the nodes of a cluster. Pure functions of
//! their inputs, so that every node (and every version of the service) computes the same
//! partition for a task and the same owner for a partition from the same member list.

use uuid::Uuid;

/// The partition of a task: FNV-1a (32 bit) over the id's 16 bytes, modulo `partitions`, so
/// that every node and every version computes the same value.
pub fn partition_of(task_id: Uuid, partitions: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in task_id.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % partitions.max(1)
}

/// splitmix64's finaliser: a well-mixed 64-bit value from any input.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fnv64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Rendezvous (highest random weight) assignment: partition `p` goes to the member with the
/// highest `mix(hash(node_id), p)`. Every node computes the same map from the same member
/// list, in any order; when a member joins or leaves, only the partitions it wins or held
/// move. Returns, per partition, the index into `members` of its owner (empty list: none).
pub fn assign(members: &[&str], partitions: u32) -> Vec<Option<usize>> {
    let seeds: Vec<u64> = members.iter().map(|m| fnv64(m)).collect();
    (0..partitions)
        .map(|p| {
            let salt = mix64(u64::from(p).wrapping_add(0x9e37_79b9_7f4a_7c15));
            seeds
                .iter()
                .enumerate()
                // Ties (never in practice) go to the smaller node id, so still deterministic.
                .max_by(|(i, a), (j, b)| {
                    mix64(**a ^ salt)
                        .cmp(&mix64(**b ^ salt))
                        .then_with(|| members[*j].cmp(members[*i]))
                })
                .map(|(i, _)| i)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_always_maps_to_the_same_partition_in_range() {
        let id = Uuid::parse_str("550e8400-e29b-41d4-a716-446655440000").unwrap();
        assert_eq!(partition_of(id, 256), partition_of(id, 256));
        assert!(partition_of(id, 64) < 64);
        // The documented hash, pinned: nodes of different versions must agree on it.
        let nil = Uuid::nil();
        let mut h: u32 = 0x811c_9dc5;
        for _ in 0..16 {
            // Every byte of the nil id is 0: the xor changes nothing.
            h = h.wrapping_mul(0x0100_0193);
        }
        assert_eq!(partition_of(nil, 1000), h % 1000);
    }

    #[test]
    fn every_partition_has_exactly_one_owner_and_all_members_get_some() {
        let members = ["n1", "n2", "n3"];
        let map = assign(&members, 256);
        assert_eq!(map.len(), 256);
        let mut per = [0usize; 3];
        for o in &map {
            per[o.expect("an owner")] += 1;
        }
        assert!(per.iter().all(|n| *n > 50), "{per:?}");
        assert!(assign(&[], 8).iter().all(Option::is_none));
    }

    #[test]
    fn the_map_does_not_depend_on_the_order_of_the_member_list() {
        let a = assign(&["n1", "n2", "n3"], 128);
        let b = assign(&["n3", "n1", "n2"], 128);
        let names_a: Vec<_> = a.iter().map(|o| ["n1", "n2", "n3"][o.unwrap()]).collect();
        let names_b: Vec<_> = b.iter().map(|o| ["n3", "n1", "n2"][o.unwrap()]).collect();
        assert_eq!(names_a, names_b);
    }

    #[test]
    fn a_join_moves_only_the_partitions_the_newcomer_wins() {
        let three = ["n1", "n2", "n3"];
        let four = ["n1", "n2", "n3", "n4"];
        let before = assign(&three, 1024);
        let after = assign(&four, 1024);
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            let (b, a) = (b.unwrap(), a.unwrap());
            if four[a] != three[b] {
                assert_eq!(four[a], "n4", "a partition moved between old members");
                moved += 1;
            }
        }
        // About a quarter moves to the newcomer.
        assert!((150..400).contains(&moved), "{moved}");
    }
}

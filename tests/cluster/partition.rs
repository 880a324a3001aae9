//! The partition of a task, as the cluster computes it: FNV-1a (32 bit) over the 16 bytes of
//! the task id, modulo the partition count. The scenarios use the library's function; the
//! test below holds it to the documented definition.

pub use tickwheel::domain::partition::partition_of;

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    /// The documented definition, written out independently of the library.
    fn fnv1a_partition(task: Uuid, partitions: u32) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        for b in task.as_bytes() {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h % partitions
    }

    #[test]
    fn partition_of_is_fnv1a_over_the_uuid_bytes() {
        // Worked out by hand (Python) from the definition.
        assert_eq!(super::partition_of(Uuid::nil(), u32::MAX), 0x6969_1905);
        let example: Uuid = "550e8400-e29b-41d4-a716-446655440000".parse().unwrap();
        assert_eq!(super::partition_of(example, u32::MAX), 0x5cb5_50b2);
        assert_eq!(super::partition_of(example, 256), 178);
        assert_eq!(super::partition_of(example, 64), 50);
        for _ in 0..10_000 {
            let id = Uuid::new_v4();
            for p in [1, 7, 64, 256] {
                assert_eq!(
                    super::partition_of(id, p),
                    fnv1a_partition(id, p),
                    "{id} over {p}"
                );
            }
        }
    }
}

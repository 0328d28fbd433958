//! Method: compare faultline's key-group assignment with `fixtures/key_groups.csv`, which a
//! small Java program (`fixtures/keygroups/KeyGroups.java`) computed on the JVM with the real
//! `String.hashCode` and Flink's `KeyGroupRangeAssignment` arithmetic.

use faultline::job::keygroup::{key_group_for, key_group_range, subtask_for_key_group};

#[test]
fn key_groups_match_flink_for_known_keys() {
    let text = include_str!("../../fixtures/key_groups.csv");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut rows = 0;
    for row in reader.records() {
        let row = row.unwrap();
        let key = &row[0];
        let max_parallelism: u16 = row[1].parse().unwrap();
        let key_group: u16 = row[2].parse().unwrap();
        let parallelism: u16 = row[3].parse().unwrap();
        let subtask: u16 = row[4].parse().unwrap();
        assert_eq!(
            key_group_for(key, max_parallelism),
            key_group,
            "key {key:?} max {max_parallelism}"
        );
        assert_eq!(
            subtask_for_key_group(max_parallelism, parallelism, key_group),
            subtask,
            "key {key:?} p {parallelism}"
        );
        assert!(key_group_range(max_parallelism, parallelism, subtask).contains(key_group));
        rows += 1;
    }
    assert_eq!(rows, 378, "every fixture row was checked");
}

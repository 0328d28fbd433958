//! Method: replay every committed corpus file of every fuzz target (`fuzz/corpus/<target>/`,
//! and the inputs fuzzing found in `fuzz/regressions/<target>/`) through the very entry points
//! the `cargo fuzz` targets call, on stable Rust; regenerate the seeds from fresh checkpoints and
//! savepoints of every backend and require each to be accepted; and feed every truncation and
//! hostile lengths to each decoder, which must answer with an error, never a panic.

use std::path::{Path, PathBuf};

use faultline::fuzzing::{self, Target};

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|entry| entry.expect("readable corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

#[test]
fn every_committed_seed_is_accepted_and_every_regression_replays() {
    for target in Target::ALL {
        let seeds = files_in(&fuzz_dir().join("corpus").join(target.name()));
        assert!(!seeds.is_empty(), "{}: no committed seeds", target.name());
        for seed in &seeds {
            let bytes = std::fs::read(seed).unwrap();
            if let Err(error) = target.run(&bytes) {
                panic!(
                    "{}: seed {} rejected: {error}",
                    target.name(),
                    seed.display()
                );
            }
        }
        // Inputs fuzzing found are named for what the fixed decoder must do with them.
        for input in files_in(&fuzz_dir().join("regressions").join(target.name())) {
            let bytes = std::fs::read(&input).unwrap();
            let name = input.file_name().unwrap().to_string_lossy().into_owned();
            let result = target.run(&bytes);
            match name.split('-').next() {
                Some("reject") => assert!(result.is_err(), "{name} was accepted"),
                Some("accept") => assert!(result.is_ok(), "{name}: {result:?}"),
                _ => panic!("{name}: regression inputs are named accept-* or reject-*"),
            }
        }
    }
}

#[test]
fn seeds_regenerated_from_fresh_checkpoints_are_all_accepted() {
    let out = tempfile::tempdir().unwrap();
    let counts = fuzzing::write_seed_corpus(
        out.path(),
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios"),
    )
    .expect("the corpus runs pass");
    for count in &counts {
        assert!(count.files > 0, "{count:?}");
        for seed in files_in(&out.path().join(count.target.name())) {
            let bytes = std::fs::read(&seed).unwrap();
            if let Err(error) = count.target.run(&bytes) {
                panic!(
                    "{}: {} rejected: {error}",
                    count.target.name(),
                    seed.display()
                );
            }
        }
    }
    assert_eq!(counts.len(), Target::ALL.len());
}

#[test]
fn truncations_and_hostile_lengths_are_errors_not_panics() {
    for target in [
        Target::Metadata,
        Target::Canonical,
        Target::NativeHandle,
        Target::Savepoint,
        Target::ChannelState,
    ] {
        let seeds = files_in(&fuzz_dir().join("corpus").join(target.name()));
        let seed = std::fs::read(&seeds[0]).unwrap();
        // Every proper prefix is incomplete: checksums, counts and lengths must say so.
        let step = (seed.len() / 200).max(1);
        for len in (0..seed.len()).step_by(step) {
            assert!(
                target.run(&seed[..len]).is_err(),
                "{}: a {len}-byte prefix of {} bytes was accepted",
                target.name(),
                seed.len()
            );
        }
        // Every 4-byte window set to 0xff: lengths and counts of 4 GiB must not be trusted.
        let step = (seed.len() / 100).max(1);
        for at in (0..seed.len().saturating_sub(4)).step_by(step) {
            let mut hostile = seed.clone();
            hostile[at..at + 4].fill(0xff);
            // Accepting is possible (a value field), panicking or allocating 4 GiB is not.
            let _ = target.run(&hostile);
        }
    }
    let huge_count = [2u8, 0xff, 0xff, 0xff, 0xff];
    let error = Target::NativeHandle.run(&huge_count).unwrap_err();
    assert!(error.to_string().contains("count"), "{error}");
    let packed_huge = [1u8, 0, b'x', 0xff, 0xff, 0xff, 0xff];
    let error = Target::Savepoint.run(&packed_huge).unwrap_err();
    assert!(error.to_string().contains("remain"), "{error}");
    let escaping = fuzzing::pack(&[]);
    assert!(escaping.is_empty());
    let mut climbing = vec![4u8, 0];
    climbing.extend_from_slice(b"../x");
    climbing.extend_from_slice(&[0, 0, 0, 0]);
    let error = Target::Savepoint.run(&climbing).unwrap_err();
    assert!(error.to_string().contains("unsafe path"), "{error}");
}

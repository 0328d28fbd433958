//! Method: a fraud detector whose emissions depend on its state — an alert at an account's
//! third large transaction — run under at-least-once checkpointing only, where fan-in lets a
//! snapshot count a record its restore then replays, so the alert fires on another record than
//! the model over the input says. The correct detector must pass, judged against the records
//! each stage received, and at least one case must have shown such a shifted alert; its broken
//! twins (the count in a plain field, a record dropped after every restore) must be caught.

use faultline::campaign::{scenario_strategy, Case, KillMode, Seams, StrategyConfig};
use faultline::check::{Note, Property};
use faultline::checkpoint::CheckpointingMode;
use faultline::harness::Harness;
use faultline::job::user::{Output, UserOperator};
use faultline::job::{Datum, Operator, OperatorContext, OperatorError, Record, Transaction};
use faultline::state::{BackendKind, KeyedContext, ValueState};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};

/// What counts as a large transaction.
const LARGE: i64 = 250;
/// The large transactions that raise the alert.
const ALERT_AT: i64 = 3;
/// Large transactions per account.
const LARGE_COUNT: ValueState<i64> = ValueState::new("large");

/// The detector's rule, whoever keeps the count: a large transaction counts, and the third
/// raises the alert (the transaction, with the count as its amount). `count` is the key's
/// count before `tx`; returns the count after it, and the alert if one is raised.
fn count_large(tx: &Transaction, count: i64) -> (i64, Option<Transaction>) {
    if tx.amount_cents < LARGE {
        return (count, None);
    }
    let alert = (count + 1 == ALERT_AT).then(|| Transaction {
        amount_cents: count + 1,
        ..tx.clone()
    });
    (count + 1, alert)
}

/// The correct detector, and its model: the count of large transactions per account in
/// `ValueState`.
fn third_large(
    ctx: &mut KeyedContext<'_>,
    tx: Transaction,
    out: &mut Output<Transaction>,
) -> Result<(), OperatorError> {
    let before = LARGE_COUNT.get(ctx)?.unwrap_or(0);
    let (after, alert) = count_large(&tx, before);
    if after != before {
        LARGE_COUNT.set(ctx, &after)?;
    }
    alert.map_or(Ok(()), |alert| out.emit(&alert))
}

/// Broken twin: the count in a plain field, which no snapshot holds.
#[derive(Default)]
struct PlainFieldAlert {
    large: std::collections::BTreeMap<Datum, i64>,
}

impl Operator for PlainFieldAlert {
    fn process(
        &mut self,
        record: Record,
        _: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let count = self.large.entry(record.key.clone()).or_default();
        let (after, alert) = count_large(&record.value_as()?, *count);
        *count = after;
        if let Some(alert) = alert {
            out.push(record.with_value(&alert)?);
        }
        Ok(())
    }
}

/// Broken twin: drops the first record it sees after every (re)start, as a detector that
/// discards a half-read batch on recovery would.
struct DropsFirstAfterRestart {
    dropped: bool,
    inner: Box<dyn Operator>,
}

impl Operator for DropsFirstAfterRestart {
    fn process(
        &mut self,
        record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        if !self.dropped && ctx.attempt > 0 {
            self.dropped = true;
            return Ok(());
        }
        self.inner.process(record, ctx, out)
    }
}

fn detector() -> UserOperator {
    UserOperator::keyed("third-large-alert", third_large, third_large)
}

fn at_least_once() -> StrategyConfig {
    let mut config = StrategyConfig::default();
    config.backends = vec![BackendKind::Memory];
    config.modes = vec![CheckpointingMode::AtLeastOnce];
    config.user_operators = vec![("third-large-alert".into(), true)];
    config
}

#[test]
fn a_detector_whose_alerts_depend_on_state_passes_at_least_once_with_fan_in() {
    let operators = [detector()];
    let mut seams = Seams::default();
    seams.operators = &operators;
    let strategy = scenario_strategy(at_least_once());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let (mut lineage_judged, mut restored, mut shifted) = (0, 0, 0);
    for case in 0..400 {
        let scenario = strategy.new_tree(&mut runner).unwrap().current();
        let dir = tempfile::tempdir().unwrap();
        let report = Case::new(scenario.clone(), seams)
            .run(dir.path(), &KillMode::Sim)
            .unwrap();
        assert!(
            report.verdict.passed(),
            "case {case}:\n{}\n{}",
            report.verdict,
            scenario.to_toml()
        );
        for note in &report.verdict.notes {
            if let Note::JudgedByLineage {
                restores,
                owed_not_in_model,
            } = note
            {
                lineage_judged += 1;
                restored += usize::from(*restores > 0);
                shifted += usize::from(*owed_not_in_model > 0);
            }
        }
    }
    eprintln!(
        "{lineage_judged} of 400 cases judged by lineage, {restored} restored, {shifted} shifted an alert"
    );
    assert!(
        lineage_judged > 20,
        "{lineage_judged} cases judged by lineage"
    );
    assert!(restored > 10, "{restored} lineage-judged cases restored");
    // The model over the input would have called these cases' output lost.
    assert!(
        shifted > 0,
        "no case shifted an alert ({lineage_judged} judged by lineage, {restored} restored)"
    );
}

/// The properties the first failing case of an at-least-once campaign over the detector that
/// `build` makes broke (none when every case passed).
fn caught_at_least_once(build: fn(u16) -> Box<dyn Operator>) -> Vec<Property> {
    let correct = detector();
    let operators = [UserOperator {
        build: Box::new(build),
        ..correct
    }];
    let report = Harness::new()
        .backends(vec![BackendKind::Memory])
        .modes(&[CheckpointingMode::AtLeastOnce])
        .operators(&operators)
        .try_run()
        .unwrap();
    report
        .failures
        .first()
        .map(|f| f.violations.iter().map(|v| v.property).collect())
        .unwrap_or_default()
}

#[test]
fn a_detector_counting_in_a_plain_field_is_caught_at_least_once() {
    let properties = caught_at_least_once(|_| Box::new(PlainFieldAlert::default()));
    assert!(properties.contains(&Property::State), "{properties:?}");
}

#[test]
fn a_detector_dropping_a_record_after_a_restart_is_caught_at_least_once() {
    let properties = caught_at_least_once(|subtask| {
        Box::new(DropsFirstAfterRestart {
            dropped: false,
            inner: (detector().build)(subtask),
        })
    });
    assert!(
        properties.contains(&Property::Output) || properties.contains(&Property::State),
        "{properties:?}"
    );
}

#[test]
fn built_in_operators_pass_at_least_once_cases_judged_by_lineage_rescaled_ones_included() {
    let mut config = StrategyConfig::default();
    config.backends = vec![BackendKind::Memory];
    config.modes = vec![CheckpointingMode::AtLeastOnce];
    let strategy = scenario_strategy(config);
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let mut rescaled = 0;
    for case in 0..600 {
        let scenario = strategy.new_tree(&mut runner).unwrap().current();
        let dir = tempfile::tempdir().unwrap();
        let report = Case::new(scenario.clone(), Seams::default())
            .run(dir.path(), &KillMode::Sim)
            .unwrap();
        assert!(
            report.verdict.passed(),
            "case {case}:\n{}\n{}",
            report.verdict,
            scenario.to_toml()
        );
        let judged = report
            .verdict
            .notes
            .iter()
            .any(|n| matches!(n, Note::JudgedByLineage { restores, .. } if *restores > 1));
        rescaled += usize::from(judged && scenario.rescale.is_some());
    }
    assert!(
        rescaled > 10,
        "{rescaled} rescaled cases restored more than once"
    );
}

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
use faultline::job::user::{ModelState, UserOperator};
use faultline::job::{Operator, OperatorContext, OperatorError, Record};
use faultline::state::{BackendKind, StateBackend, StateValue, ValueState};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};

/// What counts as a large transaction.
const LARGE: i64 = 250;
/// The large transactions that raise the alert.
const ALERT_AT: i64 = 3;

fn alert(record: &Record, count: i64) -> Record {
    Record {
        id: format!("{}.alert", record.id),
        value: count,
        ..record.clone()
    }
}

/// The detector's rule, whoever keeps the count: a large transaction counts, and the third
/// raises the alert. `count` is the key's count before `record`; returns the count after it.
fn count_large(record: &Record, count: i64, out: &mut Vec<Record>) -> i64 {
    if record.value < LARGE {
        return count;
    }
    if count + 1 == ALERT_AT {
        out.push(alert(record, count + 1));
    }
    count + 1
}

/// The correct detector: the count of large transactions per account in `ValueState`.
#[derive(Default)]
struct ThirdLargeAlert {
    large: Option<ValueState<i64>>,
}

impl Operator for ThirdLargeAlert {
    fn open(&mut self, backend: Option<&mut dyn StateBackend>) -> Result<(), OperatorError> {
        let backend = backend.ok_or_else(|| OperatorError::Failed("keyed: needs state".into()))?;
        self.large = Some(ValueState::declare(backend, "large")?);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let large = self
            .large
            .as_ref()
            .ok_or_else(|| OperatorError::Failed("process before open".into()))?;
        let keyed = ctx.keyed()?;
        let before = large.get(keyed)?.unwrap_or(0);
        let after = count_large(&record, before, out);
        if after != before {
            large.set(keyed, &after)?;
        }
        Ok(())
    }
}

fn third_large_model(state: &mut ModelState, record: Record) -> Vec<Record> {
    let before = match state.get("large", &record.key) {
        Some(StateValue::Int(count)) => *count,
        _ => 0,
    };
    let mut out = Vec::new();
    let after = count_large(&record, before, &mut out);
    if after != before {
        state.set("large", &record.key, StateValue::Int(after));
    }
    out
}

/// Broken twin: the count in a plain field, which no snapshot holds.
#[derive(Default)]
struct PlainFieldAlert {
    large: std::collections::BTreeMap<String, i64>,
    state: ThirdLargeAlert,
}

impl Operator for PlainFieldAlert {
    fn open(&mut self, backend: Option<&mut dyn StateBackend>) -> Result<(), OperatorError> {
        // Declares the state the model describes, and never writes it.
        self.state.open(backend)
    }

    fn process(
        &mut self,
        record: Record,
        _: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let count = self.large.entry(record.key.clone()).or_default();
        *count = count_large(&record, *count, out);
        Ok(())
    }
}

/// Broken twin: drops the first record it sees after every (re)start, as a detector that
/// discards a half-read batch on recovery would.
#[derive(Default)]
struct DropsFirstAfterRestart {
    dropped: bool,
    inner: ThirdLargeAlert,
}

impl Operator for DropsFirstAfterRestart {
    fn open(&mut self, backend: Option<&mut dyn StateBackend>) -> Result<(), OperatorError> {
        self.inner.open(backend)
    }

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
    UserOperator::new(
        "third-large-alert",
        true,
        |_| Box::new(ThirdLargeAlert::default()),
        third_large_model,
    )
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
    let operators = [UserOperator::new(
        "third-large-alert",
        true,
        build,
        third_large_model,
    )];
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
    let properties = caught_at_least_once(|_| Box::new(DropsFirstAfterRestart::default()));
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

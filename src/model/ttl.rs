//! The expiring sum's rules (`OperatorSpec::ExpiringSum`), written apart from
//! `state::ttl` and `job::operator`: each key's sum with the processing time of its last
//! update, and the visibility rule — a sum is gone once `last + ttl <= now` — in plain
//! arithmetic. The model is given the time the engine handled each record, along the events.

use std::collections::BTreeMap;

use crate::job::{transaction_datum, Datum, OperatorError, Record, StageSpec, Transaction};
use crate::state::ttl::TtlUpdate;
use crate::state::{StateAddr, StateView};

/// The state the engine's operator declares.
const STATE: &str = "expiring-sum";

/// One key's sum and the processing time it was last updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamped {
    sum: i64,
    updated_ms: u64,
}

/// Every key's sum, live or not yet dropped.
#[derive(Debug, Clone, Default)]
pub(super) struct ExpiringSumModel {
    sums: BTreeMap<Datum, Stamped>,
}

fn live_at(stamped: &Stamped, ttl_ms: u64, now_ms: u64) -> bool {
    // Saturating: a sum updated near the end of time lives to the end of time.
    now_ms < stamped.updated_ms.saturating_add(ttl_ms)
}

impl ExpiringSumModel {
    /// Applies `record`, handled at `now_ms`, and returns what the operator emits.
    pub(super) fn apply(
        &mut self,
        (ttl_ms, update): (u64, TtlUpdate),
        record: Record,
        now_ms: u64,
    ) -> Result<Vec<Record>, OperatorError> {
        let tx: Transaction = record.value_as()?;
        let live = self
            .sums
            .get(&record.key)
            .filter(|s| live_at(s, ttl_ms, now_ms))
            .copied();
        if live.is_none() {
            self.sums.remove(&record.key);
        }
        let value = if tx.amount_cents.rem_euclid(3) == 0 {
            if let (Some(stamped), TtlUpdate::OnReadAndWrite) = (live, update) {
                let touched = Stamped {
                    updated_ms: now_ms,
                    ..stamped
                };
                self.sums.insert(record.key.clone(), touched);
            }
            live.map_or(0, |s| s.sum)
        } else {
            let sum = live.map_or(0, |s| s.sum).wrapping_add(tx.amount_cents);
            let stamped = Stamped {
                sum,
                updated_ms: now_ms,
            };
            self.sums.insert(record.key.clone(), stamped);
            sum
        };
        Ok(vec![Record {
            value: transaction_datum(&tx.account, value),
            ..record
        }])
    }

    /// Adds the sums live at `now_ms` to `view` (every sum without a time), as the engine's
    /// state view shows them: the value with the time it expires.
    pub(super) fn add_state(
        &self,
        stage: &StageSpec,
        ttl_ms: u64,
        view: &mut StateView,
        now_ms: Option<u64>,
    ) {
        for (key, stamped) in &self.sums {
            if now_ms.is_some_and(|now_ms| !live_at(stamped, ttl_ms, now_ms)) {
                continue;
            }
            let shown = serde_json::json!({
                "expires_at_ms": stamped.updated_ms.saturating_add(ttl_ms),
                "value": stamped.sum,
            });
            let addr = StateAddr {
                stage: stage.name.clone(),
                state: STATE.to_string(),
                key: key.clone(),
                user_key: None,
            };
            // A JSON object of two integers always has a canonical form.
            view.0
                .insert(addr, Datum::of(&shown).expect("two integers encode"));
        }
    }
}

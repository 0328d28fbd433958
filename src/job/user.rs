//! A user's operators, plugged into jobs by name ([`crate::job::OperatorSpec::User`]): the
//! operator itself, built fresh for each subtask and attempt and written against the keyed-state
//! API, and its model — the same semantics as a pure function over a plain map — which the
//! oracle evaluates instead of the engine's code.
//!
//! ```
//! use faultline::job::user::{ModelState, UserOperator};
//! use faultline::job::{Operator, OperatorContext, OperatorError, Record};
//! use faultline::state::StateValue;
//!
//! /// Doubles every value; stateless, so its model needs no state.
//! struct Double;
//!
//! impl Operator for Double {
//!     fn process(
//!         &mut self,
//!         mut record: Record,
//!         _: &mut OperatorContext<'_>,
//!         out: &mut Vec<Record>,
//!     ) -> Result<(), OperatorError> {
//!         record.value = record.value.wrapping_mul(2);
//!         out.push(record);
//!         Ok(())
//!     }
//! }
//!
//! let double = UserOperator::new(
//!     "double",
//!     false,
//!     |_subtask| Box::new(Double),
//!     |_: &mut ModelState, mut record: Record| {
//!         record.value = record.value.wrapping_mul(2);
//!         vec![record]
//!     },
//! );
//! assert!(!double.keyed);
//!
//! // A keyed model records what the operator's keyed state must hold.
//! let mut state = ModelState::default();
//! state.set("total", "account-1", StateValue::Int(42));
//! assert_eq!(state.get("total", "account-1"), Some(&StateValue::Int(42)));
//! ```

use std::collections::BTreeMap;

use super::operator::Operator;
use super::record::Record;
use crate::state::StateValue;

/// The model's view of one keyed stage's state: for each (state name, record key, map key) the
/// value the operator's keyed state must hold. Values use the forms the engine reports:
/// `ValueState<i64>` as [`StateValue::Int`], text as [`StateValue::Text`], a `ListState` as
/// [`StateValue::List`], a `MapState` entry under its map key (as text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelState {
    cells: BTreeMap<(String, String, Option<String>), StateValue>,
}

impl ModelState {
    /// The value of value or list state `state` for `key`.
    pub fn get(&self, state: &str, key: &str) -> Option<&StateValue> {
        self.cells.get(&(state.to_string(), key.to_string(), None))
    }

    /// Sets value or list state `state` for `key`.
    pub fn set(&mut self, state: &str, key: &str, value: StateValue) {
        self.cells
            .insert((state.to_string(), key.to_string(), None), value);
    }

    /// The entry `user_key` of map state `state` for `key`.
    pub fn get_entry(&self, state: &str, key: &str, user_key: &str) -> Option<&StateValue> {
        self.cells.get(&(
            state.to_string(),
            key.to_string(),
            Some(user_key.to_string()),
        ))
    }

    /// Sets the entry `user_key` of map state `state` for `key`.
    pub fn set_entry(&mut self, state: &str, key: &str, user_key: &str, value: StateValue) {
        self.cells.insert(
            (
                state.to_string(),
                key.to_string(),
                Some(user_key.to_string()),
            ),
            value,
        );
    }

    /// Clears a value, a list, or (with `user_key`) one map entry.
    pub fn remove(&mut self, state: &str, key: &str, user_key: Option<&str>) {
        self.cells.remove(&(
            state.to_string(),
            key.to_string(),
            user_key.map(str::to_string),
        ));
    }

    /// Every cell: ((state, key, map key), value), in order.
    pub fn cells(&self) -> impl Iterator<Item = (&(String, String, Option<String>), &StateValue)> {
        self.cells.iter()
    }
}

/// The pure semantics of a user's operator, for the oracle.
pub trait OperatorModel: Send + Sync {
    /// Applies one record to the stage's state and returns what the operator emits.
    fn apply(&self, state: &mut ModelState, record: Record) -> Vec<Record>;
}

impl<F> OperatorModel for F
where
    F: Fn(&mut ModelState, Record) -> Vec<Record> + Send + Sync,
{
    fn apply(&self, state: &mut ModelState, record: Record) -> Vec<Record> {
        self(state, record)
    }
}

/// Builds one subtask's operator (called for every subtask of every attempt).
pub type BuildOperator = dyn Fn(u16) -> Box<dyn Operator> + Send + Sync;

/// A user's operator: jobs name it with `OperatorSpec::User { name, keyed }`.
pub struct UserOperator {
    /// The name jobs use.
    pub name: String,
    /// Whether it uses keyed state (and so is preceded by `key_by`).
    pub keyed: bool,
    /// Builds it.
    pub build: Box<BuildOperator>,
    /// Its model.
    pub model: Box<dyn OperatorModel>,
}

impl UserOperator {
    /// A user operator from its name, whether it is keyed, a builder and a model.
    pub fn new(
        name: &str,
        keyed: bool,
        build: impl Fn(u16) -> Box<dyn Operator> + Send + Sync + 'static,
        model: impl OperatorModel + 'static,
    ) -> Self {
        Self {
            name: name.to_string(),
            keyed,
            build: Box::new(build),
            model: Box::new(model),
        }
    }
}

impl std::fmt::Debug for UserOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserOperator")
            .field("name", &self.name)
            .field("keyed", &self.keyed)
            .finish()
    }
}

/// Finds `name` among `operators`.
pub fn find<'a>(operators: &'a [UserOperator], name: &str) -> Option<&'a UserOperator> {
    operators.iter().find(|op| op.name == name)
}

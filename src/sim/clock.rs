//! The virtual clock: simulated milliseconds that only the runtime advances.
//!
//! ```
//! use faultline::sim::Clock;
//!
//! let mut clock = Clock::new();
//! clock.advance_ms(5);
//! clock.advance_to_ms(3); // never backwards
//! assert_eq!(clock.now_ms(), 5);
//! clock.advance_to_ms(40);
//! assert_eq!(clock.now_ms(), 40);
//! ```

/// Simulated time in milliseconds since the case started. It never goes backwards.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    now_ms: u64,
}

impl Clock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self { now_ms: 0 }
    }

    /// The current simulated time.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Moves time forward by `delta_ms`.
    pub fn advance_ms(&mut self, delta_ms: u64) {
        self.now_ms = self
            .now_ms
            .checked_add(delta_ms)
            .expect("virtual clock overflow: a case ran for 584 million years");
    }

    /// Moves time forward to `target_ms` if it lies in the future; earlier targets are no-ops,
    /// because a timer that is already due must not drag the clock backwards.
    pub fn advance_to_ms(&mut self, target_ms: u64) {
        if target_ms > self.now_ms {
            self.now_ms = target_ms;
        }
        debug_assert!(self.now_ms >= target_ms);
    }
}

//! Panics inside a case are bugs found: an engine assertion that fires, or a user's operator,
//! sink, backend or model that panics where the engine does not supervise it. [`catch`] runs a
//! case and turns such a panic into a value — its message and where it was raised — so the
//! case can be reported as an `assertion` violation, shrunk and replayed like any other, and
//! the campaign goes on. While a case runs, panics are kept quiet (the report carries them);
//! outside one, the previous panic hook prints as usual.

use std::cell::{Cell, RefCell};
use std::sync::Once;

/// A panic caught inside a case.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Panic {
    /// Its message.
    pub message: String,
    /// Where it was raised: `src/engine/attempt.rs:140:9`.
    pub location: Option<String>,
}

thread_local! {
    /// Cases running on this thread (a case inside a case counts twice).
    static QUIET: Cell<u32> = const { Cell::new(0) };
    /// The last panic raised on this thread while a case ran.
    static CAUGHT: RefCell<Option<Panic>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs, once per process, a panic hook that keeps the panics of running cases (quietly)
/// and leaves every other panic to the hook that was there before.
fn install() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) == 0 {
                previous(info);
                return;
            }
            let panic = Panic {
                message: payload_message(info.payload()),
                location: info.location().map(ToString::to_string),
            };
            CAUGHT.with(|caught| *caught.borrow_mut() = Some(panic));
        }));
    });
}

/// Runs `case`; a panic inside it is returned as a [`Panic`] instead of unwinding further.
pub fn catch<T>(case: impl FnOnce() -> T) -> Result<T, Panic> {
    install();
    // The hook keeps the last panic of the thread; the one that ends this case is the last
    // raised inside it, so none from before may stand in for it.
    CAUGHT.with(|caught| caught.borrow_mut().take());
    QUIET.with(|quiet| quiet.set(quiet.get() + 1));
    #[allow(clippy::disallowed_methods)]
    // The case runner is the one place besides the engine's supervisor that catches panics: a
    // panic inside a case is that case's violation, not the campaign's end.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(case));
    QUIET.with(|quiet| quiet.set(quiet.get() - 1));
    result.map_err(|payload| {
        CAUGHT
            .with(|caught| caught.borrow_mut().take())
            .unwrap_or_else(|| Panic {
                message: payload_message(&*payload),
                location: None,
            })
    })
}

/// A panic payload's text.
fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-text payload".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_case_comes_back_with_its_message_and_location() {
        let caught = catch(|| -> u32 { panic!("broken on purpose: {}", 7) }).unwrap_err();
        assert_eq!(caught.message, "broken on purpose: 7");
        assert!(
            caught
                .location
                .as_deref()
                .is_some_and(|l| l.starts_with("src/campaign/panic.rs")),
            "{caught:?}"
        );
        assert_eq!(catch(|| 3), Ok(3));
    }
}

//! The cancel hook. Pure code cannot ask Postgres whether the statement was cancelled, so every
//! long-running function takes an [`Interrupt`] and calls it periodically on the caller's thread:
//! per page or part, every few thousand tokens or events, between forward passes of the model, and
//! every ≤ [`POLL_STEP`] while waiting for the network. In the extension the hook is
//! `|| pgrx::check_for_interrupts!()`, which raises the pending cancel or timeout by unwinding, so
//! code here holds no lock across a call to it (other than poison-tolerant ones) and leaves nothing
//! half-written that outlives the unwinding.

use std::time::{Duration, Instant};

/// Called periodically by long-running functions; returns normally to go on, unwinds to stop.
pub type Interrupt<'a> = &'a dyn Fn();

/// A hook that never interrupts (tools, tests, callers without a cancel mechanism).
pub fn never() {}

/// The longest a function waits (sleeps, or blocks on a network reply) between two calls of the
/// hook.
pub const POLL_STEP: Duration = Duration::from_millis(100);

/// Loop iterations between two calls of the hook in tight loops (tokenizers, event loops).
pub const EVERY: usize = 4096;

/// Sleep `total` in steps of at most [`POLL_STEP`], calling `interrupt` before each step.
pub fn sleep(total: Duration, interrupt: Interrupt<'_>) {
    let end = Instant::now() + total;
    loop {
        interrupt();
        let now = Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(POLL_STEP));
    }
}

/// Counts loop iterations and calls the hook every [`EVERY`] of them.
pub struct Ticker<'a> {
    interrupt: Interrupt<'a>,
    n: usize,
}

impl<'a> Ticker<'a> {
    pub fn new(interrupt: Interrupt<'a>) -> Self {
        Ticker { interrupt, n: 0 }
    }

    /// One iteration; calls the hook on every [`EVERY`]th.
    #[inline]
    pub fn tick(&mut self) {
        self.n += 1;
        if self.n % EVERY == 0 {
            (self.interrupt)();
        }
    }

    /// Call the hook now (per page, per part).
    pub fn now(&self) {
        (self.interrupt)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn sleep_calls_the_hook_in_short_steps() {
        let calls = Cell::new(0);
        let t = Instant::now();
        sleep(Duration::from_millis(350), &|| calls.set(calls.get() + 1));
        assert!(t.elapsed() >= Duration::from_millis(350));
        assert!(calls.get() >= 4, "{} calls", calls.get());
    }

    #[test]
    fn ticker_calls_every_n() {
        let calls = Cell::new(0);
        let hook = || calls.set(calls.get() + 1);
        let mut t = Ticker::new(&hook);
        for _ in 0..EVERY * 3 {
            t.tick();
        }
        assert_eq!(calls.get(), 3);
    }
}

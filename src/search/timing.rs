//! `rag.search_timing`: where a search's time went, sent to the caller as a NOTICE, e.g.
//!
//! `rag.hybrid_search timing (ms): model lookup 0.05, query embedding 5.91, candidates 19.80, fusion 0.02,
//! result rows 0.41; total 26.30`
//!
//! The phases are the function's own steps on the backend's clock, from the function's start; `total`
//! ends when its rows are ready (the executor and the network add a little). A DBA reads it to tell a
//! slow embedding provider from a slow index; the search benchmark reads `query embedding` to time
//! hybrid search without its embedding, call by call. Off (the default), it costs one setting read.
//! The text is `ragbench_core::timing::render`.

use crate::guc;
use std::cell::RefCell;
use std::time::{Duration, Instant};

pub struct Stopwatch {
    /// `None` when `rag.search_timing` is off (or for a caller that reports nothing): every method is
    /// then a no-op.
    clock: Option<RefCell<Clock>>,
}

struct Clock {
    start: Instant,
    mark: Instant,
    phases: Vec<(&'static str, Duration)>,
}

impl Stopwatch {
    /// Running when `rag.search_timing` is on.
    pub fn start() -> Self {
        if !guc::SEARCH_TIMING.get() {
            return Self::off();
        }
        let now = Instant::now();
        Stopwatch { clock: Some(RefCell::new(Clock { start: now, mark: now, phases: Vec::new() })) }
    }

    /// Never running: for searches made on behalf of another function (chat's retrieval).
    pub fn off() -> Self {
        Stopwatch { clock: None }
    }

    /// Ends the phase `name`: the time since the previous phase ended (or since the start).
    pub fn phase(&self, name: &'static str) {
        if let Some(c) = &self.clock {
            let mut c = c.borrow_mut();
            let now = Instant::now();
            let since = now - c.mark;
            c.phases.push((name, since));
            c.mark = now;
        }
    }

    /// Sends the NOTICE for `function`, when running.
    pub fn report(&self, function: &str) {
        if let Some(c) = &self.clock {
            let c = c.borrow();
            pgrx::notice!("{}", ragbench_core::timing::render(function, &c.phases, c.start.elapsed()));
        }
    }
}

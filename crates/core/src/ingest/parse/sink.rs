//! The text sink shared by the HTML and Markdown parsers: collapses whitespace, handles block
//! breaks and list prefixes, cuts sections at headings and keeps the heading path.
//!
//! It also keeps the parsers' budgets: the text it produces (section text plus the heading path
//! copied into each section) is counted against [`Limits::max_text_bytes`], list nesting against
//! [`Limits::max_nesting_depth`], headings are cut at [`MAX_HEADING_BYTES`], list indentation at
//! [`MAX_LIST_INDENT_LEVELS`], and the cancel hook is called every few thousand events. The first
//! limit crossed is kept; the parsers stop at [`TextSink::stopped`] and [`TextSink::finish`]
//! returns the error.

use super::*;
use crate::interrupt::{Interrupt, Ticker};
use crate::limits::{LimitExceeded, Limits, MAX_LIST_INDENT_LEVELS};

/// Longest heading kept (bytes; longer ones are cut at a character boundary). Headings are copied
/// into every section and chunk below them, so they must stay short.
pub(crate) const MAX_HEADING_BYTES: usize = 256;

/// (level, text) of each heading above the current position.
pub(crate) type HeadingPath = Vec<(usize, String)>;

/// Collects text for both the HTML and Markdown parsers: collapses
/// whitespace, handles block breaks and list prefixes, cuts sections at
/// headings and maintains the heading path.
pub(crate) struct TextSink<'a> {
    limits: &'a Limits,
    ticker: Ticker<'a>,
    /// Bytes of finished sections (text and heading paths).
    done_bytes: usize,
    /// The first limit crossed.
    error: Option<LimitExceeded>,
    sections: Vec<Section>,
    stack: HeadingPath,
    buf: String,
    /// Number of newlines wanted before the next visible character (0..=2).
    pending_nl: u8,
    pending_space: bool,
    /// Written right before the next visible character (list bullets).
    pending_prefix: Option<String>,
    /// Heading being captured: (level, text).
    heading: Option<(usize, String)>,
    first_h1: Option<String>,
}

impl<'a> TextSink<'a> {
    pub(crate) fn new(limits: &'a Limits, interrupt: Interrupt<'a>) -> Self {
        TextSink {
            limits,
            ticker: Ticker::new(interrupt),
            done_bytes: 0,
            error: None,
            sections: Vec::new(),
            stack: Vec::new(),
            buf: String::new(),
            pending_nl: 0,
            pending_space: false,
            pending_prefix: None,
            heading: None,
            first_h1: None,
        }
    }

    /// Text whose whitespace is collapsed.
    pub(crate) fn text(&mut self, s: &str) {
        if let Some((_, h)) = self.heading.as_mut() {
            for c in s.chars() {
                if h.len() + c.len_utf8() > MAX_HEADING_BYTES {
                    break;
                }
                if c.is_whitespace() {
                    if !h.is_empty() && !h.ends_with(' ') {
                        h.push(' ');
                    }
                } else if !is_invisible(c) {
                    h.push(c);
                }
            }
            return;
        }
        for c in s.chars() {
            if c.is_whitespace() {
                self.pending_space = true;
            } else if !is_invisible(c) {
                self.flush_pending(true);
                self.buf.push(c);
            }
        }
        self.check_budget();
    }

    /// One parser event: calls the cancel hook every few thousand events.
    pub(crate) fn tick(&mut self) {
        self.ticker.tick();
    }

    /// A limit was crossed: the parser should stop feeding text.
    pub(crate) fn stopped(&self) -> bool {
        self.error.is_some()
    }

    fn fail(&mut self, e: LimitExceeded) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Record an error once the text produced so far is over the budget.
    fn check_budget(&mut self) {
        let total = self.done_bytes.saturating_add(self.buf.len());
        if let Err(e) = self.limits.check_text(total) {
            self.fail(e);
        }
    }

    /// A list (or quote, or table) opened at nesting `depth`; refused over the nesting limit.
    pub(crate) fn nesting(&mut self, what: &'static str, depth: usize) {
        if let Err(e) = self.limits.check_nesting(what, depth) {
            self.fail(e);
        }
    }

    /// The prefix of a list item at list nesting `depth` (1 = top level): indentation capped at
    /// [`MAX_LIST_INDENT_LEVELS`], so that prefixes never grow as depth × items.
    pub(crate) fn list_prefix(depth: usize, marker: &str) -> String {
        let level = depth.saturating_sub(1).min(MAX_LIST_INDENT_LEVELS);
        format!("{}{marker}", "  ".repeat(level))
    }

    /// Preformatted text: spaces and newlines are kept.
    pub(crate) fn raw(&mut self, s: &str) {
        if self.heading.is_some() {
            self.text(s);
            return;
        }
        if s.is_empty() {
            return;
        }
        self.flush_pending(false);
        push_raw_clean(&mut self.buf, s);
        self.check_budget();
    }

    pub(crate) fn flush_pending(&mut self, allow_space: bool) {
        if self.pending_nl > 0 {
            if !self.buf.is_empty() {
                let have = self.buf.len() - self.buf.trim_end_matches('\n').len();
                for _ in have..self.pending_nl as usize {
                    self.buf.push('\n');
                }
            }
        } else if allow_space
            && self.pending_space
            && !self.buf.is_empty()
            && !self.buf.ends_with(|c: char| c.is_whitespace())
        {
            self.buf.push(' ');
        }
        if let Some(p) = self.pending_prefix.take() {
            if self.pending_nl == 0 && !self.buf.is_empty() && !self.buf.ends_with('\n') {
                self.buf.push('\n');
            }
            self.buf.push_str(&p);
        }
        self.pending_nl = 0;
        self.pending_space = false;
    }

    /// Request a line break (1) or paragraph break (2).
    pub(crate) fn brk(&mut self, n: u8) {
        if let Some((_, h)) = self.heading.as_mut() {
            if !h.is_empty() && !h.ends_with(' ') {
                h.push(' ');
            }
            return;
        }
        self.pending_nl = self.pending_nl.max(n.min(2));
    }

    /// `<br>`: each one adds a newline, at most a blank line.
    pub(crate) fn line_break(&mut self) {
        if self.heading.is_some() {
            self.brk(1);
        } else {
            self.pending_nl = (self.pending_nl + 1).min(2);
        }
    }

    pub(crate) fn list_item(&mut self, prefix: String) {
        self.brk(1);
        if self.heading.is_none() {
            self.pending_prefix = Some(prefix);
        }
    }

    pub(crate) fn finish_section(&mut self) {
        let text = finalize_text(&self.buf);
        if !text.is_empty() {
            let headings: Vec<String> = self.stack.iter().map(|(_, h)| h.clone()).collect();
            let bytes = text.len() + headings.iter().map(String::len).sum::<usize>();
            self.done_bytes = self.done_bytes.saturating_add(bytes);
            self.sections.push(Section { headings, text });
        }
        self.buf.clear();
        self.pending_nl = 0;
        self.pending_space = false;
        self.pending_prefix = None;
        self.check_budget();
    }

    pub(crate) fn start_heading(&mut self, level: usize) {
        if self.heading.is_some() {
            self.end_heading();
        }
        self.finish_section();
        self.heading = Some((level, String::new()));
    }

    pub(crate) fn end_heading(&mut self) {
        if let Some((level, h)) = self.heading.take() {
            let h = h.trim().to_string();
            if h.is_empty() {
                return;
            }
            if level == 1 && self.first_h1.is_none() {
                self.first_h1 = Some(h.clone());
            }
            while self.stack.last().is_some_and(|(l, _)| *l >= level) {
                self.stack.pop();
            }
            self.stack.push((level, h));
        }
    }

    /// Snapshot of the heading path (see [`TextSink::restore_headings`]).
    pub(crate) fn heading_snapshot(&self) -> HeadingPath {
        self.stack.clone()
    }

    /// Close the current section and go back to an earlier heading path
    /// (used when an admonition box such as "Note" ends).
    pub(crate) fn restore_headings(&mut self, saved: HeadingPath) {
        self.end_heading();
        if self.stack != saved {
            self.finish_section();
            self.stack = saved;
        }
    }

    pub(crate) fn in_heading(&self) -> bool {
        self.heading.is_some()
    }

    /// The sections and the first level-1 heading, or the first limit crossed.
    pub(crate) fn finish(mut self) -> Result<(Vec<Section>, Option<String>), LimitExceeded> {
        self.end_heading();
        self.finish_section();
        self.check_budget();
        match self.error {
            Some(e) => Err(e),
            None => Ok((self.sections, self.first_h1)),
        }
    }
}


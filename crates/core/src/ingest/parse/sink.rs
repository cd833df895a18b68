//! The text sink shared by the HTML and Markdown parsers: collapses whitespace, handles block
//! breaks and list prefixes, cuts sections at headings and keeps the heading path.

use super::*;

/// (level, text) of each heading above the current position.
pub(crate) type HeadingPath = Vec<(usize, String)>;

/// Collects text for both the HTML and Markdown parsers: collapses
/// whitespace, handles block breaks and list prefixes, cuts sections at
/// headings and maintains the heading path.
pub(crate) struct TextSink {
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

impl TextSink {
    pub(crate) fn new() -> Self {
        TextSink {
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
            let headings = self.stack.iter().map(|(_, h)| h.clone()).collect();
            self.sections.push(Section { headings, text });
        }
        self.buf.clear();
        self.pending_nl = 0;
        self.pending_space = false;
        self.pending_prefix = None;
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

    pub(crate) fn finish(mut self) -> (Vec<Section>, Option<String>) {
        self.end_heading();
        self.finish_section();
        (self.sections, self.first_h1)
    }
}


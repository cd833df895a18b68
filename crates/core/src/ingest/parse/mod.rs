//! Document parsing: turns raw document text (plain text, Markdown or HTML)
//! into clean, structured text split into [`Section`]s, each carrying the path
//! of headings above it.
//!
//! Pure logic, no Postgres API. HTML is handled by a small, dependency-free,
//! error-tolerant tokenizer (unclosed tags, quoted `>` in attributes, comments,
//! CDATA, uppercase tags, stray `<`); Markdown is handled with `pulldown-cmark`.
//! Both feed the same [`sink::TextSink`], which collapses whitespace, keeps
//! preformatted text verbatim and cuts sections at headings.
//!
//! Files: this one holds the types, format detection and plain text; `html.rs`
//! (tokenizer), `entities.rs` (character references), `markdown.rs`, `sink.rs`.

mod entities;
mod html;
mod markdown;
mod sink;
#[cfg(test)]
mod tests;

pub(crate) use entities::decode_entities;
use html::parse_html;
use markdown::parse_markdown;
use crate::interrupt::{self, Interrupt};
use crate::limits::{LimitExceeded, Limits};
use std::fmt;

/// The format a document was parsed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocFormat {
    PlainText,
    Markdown,
    Html,
}

impl DocFormat {
    /// Short stable name: `"text"`, `"markdown"` or `"html"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DocFormat::PlainText => "text",
            DocFormat::Markdown => "markdown",
            DocFormat::Html => "html",
        }
    }
}

impl fmt::Display for DocFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run of body text together with the headings above it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Heading path, outermost first (e.g. `["Chapter 9", "9.2 Indexes"]`).
    pub headings: Vec<String>,
    /// Cleaned text: paragraphs separated by a blank line, no trailing spaces.
    pub text: String,
}

/// Result of [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedDocument {
    pub format: DocFormat,
    pub title: Option<String>,
    pub sections: Vec<Section>,
}

/// Why a document could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing but whitespace/markup was left after parsing.
    Empty { file_name: String },
    /// The content contains a NUL character (`\0`) at this byte offset.
    NulCharacter { file_name: String, offset: usize },
    /// The document is over one of the [`Limits`].
    Limit(LimitExceeded),
}

impl From<LimitExceeded> for ParseError {
    fn from(e: LimitExceeded) -> Self {
        ParseError::Limit(e)
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty { file_name } => write!(
                f,
                "document \"{file_name}\" contains no text after parsing (it is empty, whitespace only, or only markup)"
            ),
            ParseError::NulCharacter { file_name, offset } => write!(
                f,
                "document \"{file_name}\" contains a NUL character (\\0) at byte offset {offset}; \
                 text documents cannot contain NUL bytes (is it a binary file, or UTF-16 encoded?)"
            ),
            ParseError::Limit(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ParseError {}

// ---------------------------------------------------------------------------
// Format detection
// ---------------------------------------------------------------------------

/// Guess the format: first by file extension, then by sniffing the content.
pub fn detect_format(file_name: &str, content: &str) -> DocFormat {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    if let Some((_, ext)) = base.rsplit_once('.') {
        match ext.to_ascii_lowercase().as_str() {
            "md" | "markdown" | "mdown" | "mkd" | "mkdn" | "mdwn" | "mdtxt" | "mdtext" | "mdx"
            | "rmd" => return DocFormat::Markdown,
            "html" | "htm" | "xhtml" | "xht" | "shtml" | "shtm" => return DocFormat::Html,
            "txt" | "text" | "log" | "csv" | "tsv" | "rst" | "adoc" | "asciidoc" | "sql" => {
                return DocFormat::PlainText
            }
            _ => {}
        }
    }
    sniff_format(content)
}

fn sniff_format(content: &str) -> DocFormat {
    let head = prefix_at_char_boundary(content.trim_start_matches('\u{feff}'), 16 * 1024);
    let trimmed = head.trim_start();
    let lower_start: String = prefix_at_char_boundary(trimmed, 512).to_ascii_lowercase();
    if lower_start.starts_with("<!doctype html")
        || lower_start.starts_with("<html")
        || (lower_start.starts_with("<?xml") && lower_start.contains("<html"))
    {
        return DocFormat::Html;
    }
    // Count things that look like well-known HTML tags.
    let lower = head.to_ascii_lowercase();
    const TAGS: &[&str] = &[
        "<p>", "<p ", "</p>", "<div", "</div>", "<br", "<span", "</span>", "<a href", "</a>",
        "<li>", "<li ", "</li>", "<ul>", "<table", "<td", "<tr", "<h1", "<h2", "<h3", "</h1>",
        "</h2>", "</h3>", "<body", "<head", "<b>", "</b>", "<i>", "</i>", "<em>", "<strong>",
        "<pre", "<code>", "<img ",
    ];
    let tag_hits: usize = TAGS.iter().map(|t| lower.matches(t).count()).sum();
    let mut md_score = 0usize;
    let mut first_line = true;
    let mut prev_nonblank = false;
    for line in head.lines().take(400) {
        let t = line.trim_end();
        if t.trim().is_empty() {
            prev_nonblank = false;
            continue;
        }
        if atx_heading_level(t).is_some() {
            if first_line {
                return if tag_hits >= 5 { DocFormat::Html } else { DocFormat::Markdown };
            }
            md_score += 3;
        } else if t.starts_with("```") || t.starts_with("~~~") {
            md_score += 3;
        } else if prev_nonblank
            && t.len() >= 3
            && (t.chars().all(|c| c == '=') || t.chars().all(|c| c == '-'))
        {
            md_score += 2; // setext underline
        } else {
            let ts = t.trim_start();
            if ts.starts_with("- ") || ts.starts_with("* ") || ts.starts_with("> ") {
                md_score += 1;
            }
        }
        if t.contains("](") {
            md_score += 2;
        }
        if t.contains("**") || t.contains("__") || t.contains(" `") {
            md_score += 1;
        }
        first_line = false;
        prev_nonblank = true;
    }
    if tag_hits >= 5 && tag_hits * 2 > md_score {
        DocFormat::Html
    } else if md_score >= 4 {
        DocFormat::Markdown
    } else {
        DocFormat::PlainText
    }
}

/// `Some(level)` if the line is an ATX heading (`# Title`, up to 3 spaces indent).
fn atx_heading_level(line: &str) -> Option<usize> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let t = &line[indent..];
    let hashes = t.len() - t.trim_start_matches('#').len();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &t[hashes..];
    if rest.starts_with(' ') || rest.starts_with('\t') {
        if rest.trim().is_empty() {
            None
        } else {
            Some(hashes)
        }
    } else {
        None
    }
}

fn prefix_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

// ---------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------

/// Parse a document with the default [`Limits`] and no cancel hook (tools and tests; the
/// extension uses [`parse_with`]). The format is chosen by [`detect_format`].
///
/// Errors: [`ParseError::NulCharacter`] if the content contains `\0`,
/// [`ParseError::Empty`] if no text is left after parsing.
pub fn parse(file_name: &str, content: &str) -> Result<ParsedDocument, ParseError> {
    parse_with(file_name, content, None, &Limits::default(), &interrupt::never)
}

/// [`parse`] in a known format (text extracted from a PDF or DOCX, say).
pub fn parse_as(file_name: &str, content: &str, format: DocFormat) -> Result<ParsedDocument, ParseError> {
    parse_with(file_name, content, Some(format), &Limits::default(), &interrupt::never)
}

/// Parse a document as `format` (`None`: [`detect_format`]) within `limits`, calling `interrupt`
/// every few thousand parser events. Besides the errors of [`parse`], the text produced (list
/// prefixes included) over [`Limits::max_text_bytes`] and lists nested deeper than
/// [`Limits::max_nesting_depth`] are [`ParseError::Limit`].
pub fn parse_with(
    file_name: &str,
    content: &str,
    format: Option<DocFormat>,
    limits: &Limits,
    interrupt: Interrupt<'_>,
) -> Result<ParsedDocument, ParseError> {
    if let Some(offset) = content.bytes().position(|b| b == 0) {
        return Err(ParseError::NulCharacter { file_name: file_name.to_string(), offset });
    }
    let body = content.strip_prefix('\u{feff}').unwrap_or(content);
    let format = format.unwrap_or_else(|| detect_format(file_name, body));
    let (title, sections) = match format {
        DocFormat::PlainText => {
            let sections = parse_plain(body);
            limits.check_text(sections.iter().map(|s| s.text.len()).sum())?;
            (None, sections)
        }
        DocFormat::Markdown => parse_markdown(body, limits, interrupt)?,
        DocFormat::Html => parse_html(body, limits, interrupt)?,
    };
    if sections.is_empty() {
        return Err(ParseError::Empty { file_name: file_name.to_string() });
    }
    Ok(ParsedDocument { format, title, sections })
}

// ---------------------------------------------------------------------------
// Plain text
// ---------------------------------------------------------------------------

fn parse_plain(content: &str) -> Vec<Section> {
    let mut raw = String::with_capacity(content.len());
    push_raw_clean(&mut raw, content);
    let text = finalize_text(&raw);
    if text.is_empty() {
        Vec::new()
    } else {
        vec![Section { headings: Vec::new(), text }]
    }
}

/// Append `s` keeping its layout, but normalising line ends (CRLF, CR, form
/// feed -> LF), turning NBSP into a space and dropping other control and
/// invisible characters.
fn push_raw_clean(out: &mut String, s: &str) {
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            '\n' | '\u{0c}' | '\u{0b}' | '\u{2028}' | '\u{2029}' => out.push('\n'),
            '\t' => out.push('\t'),
            '\u{a0}' | '\u{2007}' | '\u{202f}' => out.push(' '),
            c if is_invisible(c) => {}
            c => out.push(c),
        }
    }
}

fn is_invisible(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{ad}' | '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{2060}' | '\u{feff}')
}

/// Trim trailing whitespace of every line, collapse runs of blank lines into
/// one, drop leading/trailing blank lines (leading indentation of the first
/// line is kept, it may be code).
fn finalize_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank_run = 0usize;
    for line in s.split('\n') {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
            if blank_run > 0 {
                out.push('\n');
            }
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}


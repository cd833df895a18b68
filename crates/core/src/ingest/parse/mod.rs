//! Document parsing: turns raw document text (plain text, Markdown or HTML)
//! into clean, structured text split into [`Section`]s, each carrying the path
//! of headings above it.
//!
//! Pure logic, no Postgres API. HTML is handled by a small, dependency-free,
//! error-tolerant tokenizer (unclosed tags, quoted `>` in attributes, comments,
//! CDATA, uppercase tags, stray `<`); Markdown is handled with `pulldown-cmark`.
//! Both feed the same [`TextSink`], which collapses whitespace, keeps
//! preformatted text verbatim and cuts sections at headings.

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

/// Parse a document. The format is chosen by [`detect_format`].
///
/// Errors: [`ParseError::NulCharacter`] if the content contains `\0`,
/// [`ParseError::Empty`] if no text is left after parsing.
pub fn parse(file_name: &str, content: &str) -> Result<ParsedDocument, ParseError> {
    let body = content.strip_prefix('\u{feff}').unwrap_or(content);
    parse_as(file_name, content, detect_format(file_name, body))
}

/// Parse a document in a known format (text extracted from a PDF or DOCX, say).
pub fn parse_as(file_name: &str, content: &str, format: DocFormat) -> Result<ParsedDocument, ParseError> {
    if let Some(offset) = content.bytes().position(|b| b == 0) {
        return Err(ParseError::NulCharacter { file_name: file_name.to_string(), offset });
    }
    let body = content.strip_prefix('\u{feff}').unwrap_or(content);
    let (title, sections) = match format {
        DocFormat::PlainText => (None, parse_plain(body)),
        DocFormat::Markdown => parse_markdown(body),
        DocFormat::Html => parse_html(body),
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

// ---------------------------------------------------------------------------
// Shared text sink
// ---------------------------------------------------------------------------

/// (level, text) of each heading above the current position.
type HeadingPath = Vec<(usize, String)>;

/// Collects text for both the HTML and Markdown parsers: collapses
/// whitespace, handles block breaks and list prefixes, cuts sections at
/// headings and maintains the heading path.
struct TextSink {
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
    fn new() -> Self {
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
    fn text(&mut self, s: &str) {
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
    fn raw(&mut self, s: &str) {
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

    fn flush_pending(&mut self, allow_space: bool) {
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
    fn brk(&mut self, n: u8) {
        if let Some((_, h)) = self.heading.as_mut() {
            if !h.is_empty() && !h.ends_with(' ') {
                h.push(' ');
            }
            return;
        }
        self.pending_nl = self.pending_nl.max(n.min(2));
    }

    /// `<br>`: each one adds a newline, at most a blank line.
    fn line_break(&mut self) {
        if self.heading.is_some() {
            self.brk(1);
        } else {
            self.pending_nl = (self.pending_nl + 1).min(2);
        }
    }

    fn list_item(&mut self, prefix: String) {
        self.brk(1);
        if self.heading.is_none() {
            self.pending_prefix = Some(prefix);
        }
    }

    fn finish_section(&mut self) {
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

    fn start_heading(&mut self, level: usize) {
        if self.heading.is_some() {
            self.end_heading();
        }
        self.finish_section();
        self.heading = Some((level, String::new()));
    }

    fn end_heading(&mut self) {
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
    fn heading_snapshot(&self) -> HeadingPath {
        self.stack.clone()
    }

    /// Close the current section and go back to an earlier heading path
    /// (used when an admonition box such as "Note" ends).
    fn restore_headings(&mut self, saved: HeadingPath) {
        self.end_heading();
        if self.stack != saved {
            self.finish_section();
            self.stack = saved;
        }
    }

    fn in_heading(&self) -> bool {
        self.heading.is_some()
    }

    fn finish(mut self) -> (Vec<Section>, Option<String>) {
        self.end_heading();
        self.finish_section();
        (self.sections, self.first_h1)
    }
}

// ---------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------

/// Attributes of a start tag: (lower-case name, raw value).
type Attrs<'a> = Vec<(String, &'a str)>;

#[derive(Debug)]
enum Token<'a> {
    Text(&'a str),
    /// Text that must not be entity-decoded (CDATA).
    Cdata(&'a str),
    Start { name: String, attrs: Attrs<'a>, self_closing: bool },
    End { name: String },
    /// Content of a raw-text/RCDATA element (title, textarea): entity-decoded text.
    RcData(&'a str),
}

/// Error-tolerant HTML tokenizer. Works on bytes but only ever slices at
/// ASCII positions, so slices are always valid UTF-8.
struct Tokenizer<'a> {
    src: &'a str,
    pos: usize,
    /// Pending raw-text element content to be returned after a start tag.
    pending: Option<Token<'a>>,
}

impl<'a> Tokenizer<'a> {
    fn new(src: &'a str) -> Self {
        Tokenizer { src, pos: 0, pending: None }
    }

    fn find_from(&self, from: usize, pat: &str) -> Option<usize> {
        self.src.get(from..).and_then(|s| s.find(pat)).map(|i| i + from)
    }

    /// Find `</name` case-insensitively from `from`.
    fn find_end_tag(&self, from: usize, name: &str) -> Option<usize> {
        let bytes = self.src.as_bytes();
        let n = name.len();
        let mut i = from;
        while let Some(off) = memchr_lt(&bytes[i..]) {
            let p = i + off;
            if bytes.get(p + 1) == Some(&b'/')
                && bytes.len() >= p + 2 + n
                && bytes[p + 2..p + 2 + n].eq_ignore_ascii_case(name.as_bytes())
                && bytes
                    .get(p + 2 + n)
                    .is_none_or(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')
            {
                return Some(p);
            }
            i = p + 1;
        }
        None
    }

    fn next_token(&mut self) -> Option<Token<'a>> {
        if let Some(t) = self.pending.take() {
            return Some(t);
        }
        let bytes = self.src.as_bytes();
        let len = bytes.len();
        if self.pos >= len {
            return None;
        }
        let start = self.pos;
        if bytes[start] != b'<' {
            let end = memchr_lt(&bytes[start..]).map_or(len, |o| start + o);
            self.pos = end;
            return Some(Token::Text(&self.src[start..end]));
        }
        // bytes[start] == '<'
        let rest = &bytes[start..];
        if rest.starts_with(b"<!--") {
            self.pos = self.find_from(start + 4, "-->").map_or(len, |e| e + 3);
            return self.next_token();
        }
        if rest.len() >= 9 && rest[..9].eq_ignore_ascii_case(b"<![cdata[") {
            let cstart = start + 9;
            let (cend, next) = self.find_from(cstart, "]]>").map_or((len, len), |e| (e, e + 3));
            self.pos = next;
            return Some(Token::Cdata(&self.src[cstart..cend]));
        }
        if rest.starts_with(b"<!") || rest.starts_with(b"<?") {
            // doctype, processing instruction, bogus comment
            self.pos = self.find_from(start + 2, ">").map_or(len, |e| e + 1);
            return self.next_token();
        }
        if rest.starts_with(b"</") {
            if rest.get(2).is_some_and(|b| b.is_ascii_alphabetic()) {
                let name_end = scan_name(bytes, start + 2);
                let name = self.src[start + 2..name_end].to_ascii_lowercase();
                // skip to '>' (attributes on end tags are ignored, quotes respected)
                let (_, after) = self.scan_attrs(name_end);
                self.pos = after;
                return Some(Token::End { name });
            }
            if rest.get(2) == Some(&b'>') {
                self.pos = start + 3;
                return self.next_token();
            }
            // "</" followed by junk: bogus comment up to '>'
            self.pos = self.find_from(start + 2, ">").map_or(len, |e| e + 1);
            return self.next_token();
        }
        if rest.get(1).is_some_and(|b| b.is_ascii_alphabetic()) {
            let name_end = scan_name(bytes, start + 1);
            let name = self.src[start + 1..name_end].to_ascii_lowercase();
            let (attrs_raw, after) = self.scan_attrs(name_end);
            let (attrs, self_closing) = attrs_raw;
            self.pos = after;
            if !self_closing {
                match name.as_str() {
                    "script" | "style" | "xmp" | "iframe" | "noembed" | "noframes" => {
                        let end = self.find_end_tag(after, &name).unwrap_or(len);
                        self.pos = end; // the end tag is tokenized normally next
                    }
                    "title" | "textarea" => {
                        let end = self.find_end_tag(after, &name).unwrap_or(len);
                        self.pending = Some(Token::RcData(&self.src[after..end]));
                        self.pos = end;
                    }
                    "plaintext" => {
                        self.pending = Some(Token::Text(&self.src[after..]));
                        self.pos = len;
                    }
                    _ => {}
                }
            }
            return Some(Token::Start { name, attrs, self_closing });
        }
        // A lone '<' (e.g. "a < b"): literal text.
        let end = memchr_lt(&bytes[start + 1..]).map_or(len, |o| start + 1 + o);
        self.pos = end;
        Some(Token::Text(&self.src[start..end]))
    }

    /// Parse attributes starting at `i` until the closing '>'. Quoted values
    /// may contain '>'. Returns ((attrs, self_closing), position after '>').
    fn scan_attrs(&self, mut i: usize) -> ((Attrs<'a>, bool), usize) {
        let bytes = self.src.as_bytes();
        let len = bytes.len();
        let mut attrs = Vec::new();
        let mut self_closing = false;
        loop {
            while i < len && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
                self_closing = bytes[i] == b'/';
                i += 1;
            }
            if i >= len {
                return ((attrs, self_closing), len);
            }
            if bytes[i] == b'>' {
                return ((attrs, self_closing), i + 1);
            }
            if bytes[i] == b'<' {
                // Unterminated tag; let the next tag start here.
                return ((attrs, false), i);
            }
            self_closing = false;
            let ns = i;
            while i < len
                && !bytes[i].is_ascii_whitespace()
                && !matches!(bytes[i], b'=' | b'>' | b'/' | b'<')
            {
                i += 1;
            }
            if i == ns {
                // Stray character such as a quote or '='; skip it.
                i += 1;
                continue;
            }
            let name = self.src[ns..i].to_ascii_lowercase();
            let mut j = i;
            while j < len && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            let mut value = "";
            if j < len && bytes[j] == b'=' {
                j += 1;
                while j < len && bytes[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < len && (bytes[j] == b'"' || bytes[j] == b'\'') {
                    let q = bytes[j];
                    let vs = j + 1;
                    match bytes[vs..].iter().position(|&b| b == q) {
                        Some(o) => {
                            value = &self.src[vs..vs + o];
                            j = vs + o + 1;
                        }
                        None => {
                            // Unterminated quote: take up to the next '>'.
                            let e = self.find_from(vs, ">").unwrap_or(len);
                            value = &self.src[vs..e];
                            j = e;
                        }
                    }
                } else {
                    let vs = j;
                    while j < len && !bytes[j].is_ascii_whitespace() && bytes[j] != b'>' {
                        j += 1;
                    }
                    value = &self.src[vs..j];
                }
                i = j;
            }
            attrs.push((name, value));
        }
    }
}

fn memchr_lt(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'<')
}

fn scan_name(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len()
        && !bytes[i].is_ascii_whitespace()
        && !matches!(bytes[i], b'>' | b'/' | b'<')
        && bytes[i].is_ascii()
    {
        i += 1;
    }
    i
}

fn is_void(name: &str) -> bool {
    matches!(
        name,
        "area" | "base" | "br" | "col" | "embed" | "hr" | "img" | "input" | "link" | "meta"
            | "param" | "source" | "track" | "wbr" | "keygen" | "basefont" | "frame"
    )
}

fn heading_level(name: &str) -> Option<usize> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

/// Block elements that start/end a paragraph (blank line).
fn is_paragraph_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "section" | "article" | "main" | "header" | "footer" | "aside" | "blockquote"
            | "pre" | "table" | "ul" | "ol" | "dl" | "menu" | "figure" | "form" | "fieldset"
            | "address" | "hr" | "details" | "center" | "listing" | "hgroup" | "body" | "html"
    )
}

/// Block elements that start/end a line.
fn is_line_block(name: &str) -> bool {
    matches!(
        name,
        "div" | "li" | "tr" | "td" | "th" | "dt" | "dd" | "caption" | "figcaption" | "summary"
            | "legend" | "option" | "thead" | "tbody" | "tfoot" | "nav" | "dir" | "frameset"
            | "noscript" | "label" | "select" | "textarea" | "tt-block"
    )
}

/// Elements whose whole subtree is dropped.
fn is_skipped_element(name: &str) -> bool {
    matches!(
        name,
        "script" | "style" | "noscript" | "template" | "svg" | "math" | "iframe" | "object"
            | "canvas" | "nav" | "button" | "select" | "datalist" | "map" | "audio" | "video"
            | "noembed" | "noframes"
    )
}

/// Page chrome recognised by attributes (navigation bars, hidden elements).
fn is_chrome(attrs: &[(String, &str)]) -> bool {
    for (k, v) in attrs {
        match k.as_str() {
            "hidden" => return true,
            "aria-hidden" if v.eq_ignore_ascii_case("true") => return true,
            "role" => {
                let v = v.to_ascii_lowercase();
                if matches!(v.as_str(), "navigation" | "banner" | "contentinfo" | "search") {
                    return true;
                }
            }
            "style" => {
                let compact: String =
                    v.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
                if compact.contains("display:none") || compact.contains("visibility:hidden") {
                    return true;
                }
            }
            "class" | "id" => {
                for tok in v.split_whitespace() {
                    let t = tok.to_ascii_lowercase();
                    if matches!(
                        t.as_str(),
                        "navheader"
                            | "navfooter"
                            | "navbar"
                            | "navigation"
                            | "breadcrumb"
                            | "breadcrumbs"
                            | "skip-link"
                            | "skiplink"
                            | "site-header"
                            | "site-footer"
                            | "cookie-banner"
                            | "cookie-notice"
                            | "sr-only"
                            | "visually-hidden"
                    ) {
                        return true;
                    }
                }
            }
            _ => {}
        }
    }
    false
}

/// Admonition boxes ("Note", "Tip", ...): a heading inside one only applies
/// until the box ends.
fn is_admonition(name: &str, attrs: &[(String, &str)]) -> bool {
    name == "aside"
        || attrs.iter().any(|(k, v)| {
            k == "class"
                && v.split_whitespace().any(|t| {
                    matches!(
                        t.to_ascii_lowercase().as_str(),
                        "note" | "tip" | "warning" | "caution" | "important" | "admonition"
                            | "callout" | "sidebar" | "notice"
                    )
                })
        })
}

fn parse_html(content: &str) -> (Option<String>, Vec<Section>) {
    let mut sink = TextSink::new();
    let title = html_into_sink(content, &mut sink);
    let (sections, first_h1) = sink.finish();
    (title.or(first_h1), sections)
}

/// Feed an HTML document or fragment into `sink`; returns the `<title>`.
fn html_into_sink(content: &str, sink: &mut TextSink) -> Option<String> {
    let mut tok = Tokenizer::new(content);
    let mut title: Option<String> = None;
    let mut in_head = false;
    let mut in_title = false;
    // (element name, nesting depth) of a dropped subtree.
    let mut skip: Option<(String, usize)> = None;
    let mut pre_depth = 0usize;
    // One entry per open list: None = unordered, Some(n) = next number.
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut first_pre_text = false;
    // Open admonition boxes: (element name, nesting depth, heading path at open).
    let mut boxes: Vec<(String, usize, HeadingPath)> = Vec::new();

    while let Some(t) = tok.next_token() {
        if let Some((sname, depth)) = skip.as_mut() {
            match &t {
                Token::Start { name, self_closing, .. }
                    if name == sname && !*self_closing && !is_void(name) =>
                {
                    *depth += 1
                }
                Token::End { name } if name == sname => {
                    *depth -= 1;
                    if *depth == 0 {
                        skip = None;
                    }
                }
                Token::End { name } if name == "body" || name == "html" => skip = None,
                _ => {}
            }
            continue;
        }
        match t {
            Token::Text(s) | Token::RcData(s) => {
                if in_title {
                    if title.is_none() {
                        let t = collapse_ws(&decode_entities(s));
                        if !t.is_empty() {
                            title = Some(t);
                        }
                    }
                    continue;
                }
                if in_head {
                    continue;
                }
                let decoded = decode_entities(s);
                if pre_depth > 0 {
                    let mut d: &str = &decoded;
                    if first_pre_text {
                        // HTML ignores a newline right after <pre>.
                        d = d.strip_prefix("\r\n").or_else(|| d.strip_prefix('\n')).unwrap_or(d);
                    }
                    first_pre_text = false;
                    sink.raw(d);
                } else {
                    sink.text(&decoded);
                }
            }
            Token::Cdata(s) => {
                if !in_head && !in_title {
                    if pre_depth > 0 {
                        sink.raw(s);
                    } else {
                        sink.text(s);
                    }
                }
            }
            Token::Start { name, attrs, self_closing } => {
                let n = name.as_str();
                match n {
                    "head" => {
                        in_head = true;
                        continue;
                    }
                    "body" => {
                        in_head = false;
                    }
                    "title" => {
                        in_title = !self_closing;
                        continue;
                    }
                    "meta" | "link" | "base" => continue,
                    _ => {}
                }
                if in_head && !matches!(n, "script" | "style" | "noscript" | "template" | "object") {
                    // A body element without </head>: the head is over.
                    in_head = false;
                }
                if is_skipped_element(n) || (!is_void(n) && is_chrome(&attrs)) {
                    if !self_closing && !is_void(n) {
                        skip = Some((name.clone(), 1));
                    }
                    continue;
                }
                if !self_closing && !is_void(n) {
                    if let Some(b) = boxes.last_mut().filter(|b| b.0 == n) {
                        b.1 += 1;
                    } else if is_admonition(n, &attrs) {
                        boxes.push((name.clone(), 1, sink.heading_snapshot()));
                    }
                }
                if let Some(level) = heading_level(n) {
                    sink.start_heading(level);
                    continue;
                }
                if sink.in_heading()
                    && matches!(n, "p" | "div" | "table" | "ul" | "ol" | "pre" | "section" | "article")
                {
                    // Tolerate an unclosed heading.
                    sink.end_heading();
                }
                match n {
                    "br" => sink.line_break(),
                    "pre" | "listing" | "plaintext" | "xmp" => {
                        sink.brk(2);
                        if !self_closing {
                            pre_depth += 1;
                            first_pre_text = true;
                        }
                    }
                    "ul" | "menu" | "dir" => {
                        sink.brk(2);
                        if !self_closing {
                            lists.push(None);
                        }
                    }
                    "ol" => {
                        sink.brk(2);
                        if !self_closing {
                            let start = attrs
                                .iter()
                                .find(|(k, _)| k == "start")
                                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                                .unwrap_or(1);
                            lists.push(Some(start));
                        }
                    }
                    "li" => {
                        let indent = "  ".repeat(lists.len().saturating_sub(1));
                        let marker = match lists.last_mut() {
                            Some(Some(k)) => {
                                let m = format!("{k}. ");
                                *k = k.saturating_add(1);
                                m
                            }
                            _ => "- ".to_string(),
                        };
                        sink.list_item(format!("{indent}{marker}"));
                    }
                    "img" => {
                        // Keep meaningful alt text inline.
                        if let Some((_, alt)) = attrs.iter().find(|(k, _)| k == "alt") {
                            let alt = collapse_ws(&decode_entities(alt));
                            if !alt.is_empty() {
                                sink.text(" ");
                                sink.text(&alt);
                                sink.text(" ");
                            }
                        }
                    }
                    "td" | "th" => sink.brk(1),
                    _ if is_paragraph_block(n) => sink.brk(2),
                    _ if is_line_block(n) => sink.brk(1),
                    _ => {}
                }
            }
            Token::End { name } => {
                let n = name.as_str();
                match n {
                    "head" => {
                        in_head = false;
                        continue;
                    }
                    "title" => {
                        in_title = false;
                        continue;
                    }
                    _ => {}
                }
                if heading_level(n).is_some() {
                    sink.end_heading();
                    continue;
                }
                if let Some(b) = boxes.last_mut().filter(|b| b.0 == n) {
                    b.1 -= 1;
                    if b.1 == 0 {
                        if let Some((_, _, saved)) = boxes.pop() {
                            sink.restore_headings(saved);
                        }
                    }
                }
                match n {
                    "pre" | "listing" | "xmp" => {
                        pre_depth = pre_depth.saturating_sub(1);
                        sink.brk(2);
                    }
                    "ul" | "ol" | "menu" | "dir" => {
                        lists.pop();
                        sink.brk(2);
                    }
                    "br" => sink.line_break(), // "</br>" is treated as <br> by browsers
                    _ if is_paragraph_block(n) => sink.brk(2),
                    _ if is_line_block(n) => sink.brk(1),
                    _ => {}
                }
            }
        }
    }
    title
}

fn collapse_ws(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s.split(|c: char| c.is_whitespace()).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(w.chars().filter(|c| !is_invisible(*c)));
    }
    out
}

/// Decode HTML character references (`&amp;`, `&#8212;`, `&#x2014;`, ...).
/// Unknown references are left as they are.
pub(crate) fn decode_entities(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('&') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match decode_one(after, &mut out) {
            Some(consumed) => rest = &after[consumed..],
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

enum Decoded {
    Char(char),
    Str(&'static str),
}

impl Decoded {
    fn push_to(&self, out: &mut String) {
        match self {
            Decoded::Char(c) => out.push(*c),
            Decoded::Str(s) => out.push_str(s),
        }
    }
}

/// Decode one reference into `out`; `s` starts right after '&'. Returns
/// the number of bytes consumed (including a trailing ';').
fn decode_one(s: &str, out: &mut String) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() == Some(&b'#') {
        let (hex, digits_start) = match b.get(1) {
            Some(b'x') | Some(b'X') => (true, 2),
            _ => (false, 1),
        };
        let mut i = digits_start;
        while i < b.len()
            && (if hex { b[i].is_ascii_hexdigit() } else { b[i].is_ascii_digit() })
            && i - digits_start < 8
        {
            i += 1;
        }
        if i == digits_start {
            return None;
        }
        let num = u32::from_str_radix(&s[digits_start..i], if hex { 16 } else { 10 }).ok()?;
        // swallow any remaining digits of an absurdly long number
        while i < b.len() && (if hex { b[i].is_ascii_hexdigit() } else { b[i].is_ascii_digit() }) {
            i += 1;
        }
        let consumed = if b.get(i) == Some(&b';') { i + 1 } else { i };
        let c = match num {
            0x80..=0x9f => windows_1252(num),
            _ => char::from_u32(num).filter(|c| *c != '\0').unwrap_or('\u{fffd}'),
        };
        out.push(c);
        return Some(consumed);
    }
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_alphanumeric() && i < 32 {
        i += 1;
    }
    if i == 0 {
        return None;
    }
    let name = &s[..i];
    if b.get(i) == Some(&b';') {
        let d = named_entity(name)?;
        d.push_to(out);
        Some(i + 1)
    } else {
        // Legacy references without ';' (only the common ones).
        match name {
            "amp" | "lt" | "gt" | "quot" | "nbsp" | "copy" | "reg" | "AMP" | "LT" | "GT" => {
                let d = named_entity(name)?;
                d.push_to(out);
                Some(i)
            }
            _ => None,
        }
    }
}

fn windows_1252(n: u32) -> char {
    const MAP: [char; 32] = [
        '€', '\u{fffd}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{fffd}', 'Ž',
        '\u{fffd}', '\u{fffd}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ',
        '\u{fffd}', 'ž', 'Ÿ',
    ];
    MAP.get((n as usize).wrapping_sub(0x80)).copied().unwrap_or('\u{fffd}')
}

fn named_entity(name: &str) -> Option<Decoded> {
    // Latin-1 block U+00A0..U+00FF in order.
    const LATIN1: [&str; 96] = [
        "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy", "ordf",
        "laquo", "not", "shy", "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute", "micro",
        "para", "middot", "cedil", "sup1", "ordm", "raquo", "frac14", "frac12", "frac34", "iquest",
        "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig", "Ccedil", "Egrave",
        "Eacute", "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml", "ETH", "Ntilde", "Ograve",
        "Oacute", "Ocirc", "Otilde", "Ouml", "times", "Oslash", "Ugrave", "Uacute", "Ucirc",
        "Uuml", "Yacute", "THORN", "szlig", "agrave", "aacute", "acirc", "atilde", "auml", "aring",
        "aelig", "ccedil", "egrave", "eacute", "ecirc", "euml", "igrave", "iacute", "icirc",
        "iuml", "eth", "ntilde", "ograve", "oacute", "ocirc", "otilde", "ouml", "divide", "oslash",
        "ugrave", "uacute", "ucirc", "uuml", "yacute", "thorn", "yuml",
    ];
    const GREEK_UPPER: [&str; 25] = [
        "Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta", "Theta", "Iota", "Kappa",
        "Lambda", "Mu", "Nu", "Xi", "Omicron", "Pi", "Rho", "", "Sigma", "Tau", "Upsilon", "Phi",
        "Chi", "Psi", "Omega",
    ];
    const GREEK_LOWER: [&str; 25] = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
        "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigmaf", "sigma", "tau", "upsilon",
        "phi", "chi", "psi", "omega",
    ];
    let c = match name {
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "ensp" | "emsp" | "thinsp" | "emsp13" | "emsp14" | "numsp" | "puncsp" | "hairsp"
        | "MediumSpace" | "NonBreakingSpace" => ' ',
        "zwnj" | "zwj" | "lrm" | "rlm" | "ZeroWidthSpace" | "NoBreak" => return Some(Decoded::Str("")),
        "ndash" => '–',
        "mdash" => '—',
        "horbar" => '―',
        "hyphen" | "dash" => '‐',
        "lsquo" => '‘',
        "rsquo" | "rsquor" => '’',
        "sbquo" => '‚',
        "ldquo" => '“',
        "rdquo" | "rdquor" => '”',
        "bdquo" => '„',
        "lsaquo" => '‹',
        "rsaquo" => '›',
        "dagger" => '†',
        "Dagger" | "ddagger" => '‡',
        "bull" | "bullet" => '•',
        "hellip" | "mldr" => '…',
        "permil" => '‰',
        "prime" => '′',
        "Prime" => '″',
        "oline" => '‾',
        "frasl" => '⁄',
        "euro" => '€',
        "trade" | "TRADE" => '™',
        "larr" | "leftarrow" => '←',
        "uarr" => '↑',
        "rarr" | "rightarrow" => '→',
        "darr" => '↓',
        "harr" => '↔',
        "lArr" | "Leftarrow" => '⇐',
        "rArr" | "Rightarrow" | "Implies" => '⇒',
        "hArr" | "iff" => '⇔',
        "forall" => '∀',
        "part" => '∂',
        "exist" => '∃',
        "empty" => '∅',
        "nabla" => '∇',
        "isin" => '∈',
        "notin" => '∉',
        "ni" => '∋',
        "prod" => '∏',
        "sum" => '∑',
        "minus" => '−',
        "lowast" => '∗',
        "radic" => '√',
        "prop" => '∝',
        "infin" => '∞',
        "ang" => '∠',
        "and" => '∧',
        "or" => '∨',
        "cap" => '∩',
        "cup" => '∪',
        "int" => '∫',
        "there4" => '∴',
        "sim" => '∼',
        "cong" => '≅',
        "asymp" => '≈',
        "ne" => '≠',
        "equiv" => '≡',
        "le" => '≤',
        "ge" => '≥',
        "sub" => '⊂',
        "sup" => '⊃',
        "nsub" => '⊄',
        "sube" => '⊆',
        "supe" => '⊇',
        "oplus" => '⊕',
        "otimes" => '⊗',
        "perp" => '⊥',
        "sdot" => '⋅',
        "lceil" => '⌈',
        "rceil" => '⌉',
        "lfloor" => '⌊',
        "rfloor" => '⌋',
        "lang" => '⟨',
        "rang" => '⟩',
        "loz" => '◊',
        "spades" => '♠',
        "clubs" => '♣',
        "hearts" => '♥',
        "diams" => '♦',
        "circ" => 'ˆ',
        "tilde" => '˜',
        "OElig" => 'Œ',
        "oelig" => 'œ',
        "Scaron" => 'Š',
        "scaron" => 'š',
        "Yuml" => 'Ÿ',
        "fnof" => 'ƒ',
        "thetasym" => 'ϑ',
        "upsih" => 'ϒ',
        "piv" => 'ϖ',
        "check" | "checkmark" => '✓',
        "star" => '☆',
        "starf" => '★',
        "COPY" => '©',
        "REG" => '®',
        "Tab" => '\t',
        "NewLine" => '\n',
        "lpar" => '(',
        "rpar" => ')',
        "lsqb" | "lbrack" => '[',
        "rsqb" | "rbrack" => ']',
        "lcub" | "lbrace" => '{',
        "rcub" | "rbrace" => '}',
        "colon" => ':',
        "semi" => ';',
        "comma" => ',',
        "period" => '.',
        "excl" => '!',
        "quest" => '?',
        "num" => '#',
        "dollar" => '$',
        "percnt" => '%',
        "ast" | "midast" => '*',
        "plus" => '+',
        "equals" => '=',
        "sol" => '/',
        "bsol" => '\\',
        "verbar" | "vert" | "VerticalLine" => '|',
        "grave" | "DiacriticalGrave" => '`',
        "Hat" => '^',
        "lowbar" | "UnderBar" => '_',
        "commat" => '@',
        _ => {
            if let Some(i) = LATIN1.iter().position(|n| *n == name) {
                return char::from_u32(0xa0 + i as u32).map(Decoded::Char);
            }
            if let Some(i) = GREEK_UPPER.iter().position(|n| !n.is_empty() && *n == name) {
                return char::from_u32(0x391 + i as u32).map(Decoded::Char);
            }
            if let Some(i) = GREEK_LOWER.iter().position(|n| *n == name) {
                return char::from_u32(0x3b1 + i as u32).map(Decoded::Char);
            }
            return None;
        }
    };
    Some(Decoded::Char(c))
}

// ---------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------

fn parse_markdown(content: &str) -> (Option<String>, Vec<Section>) {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_FOOTNOTES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    opts.insert(Options::ENABLE_TASKLISTS);
    opts.insert(Options::ENABLE_HEADING_ATTRIBUTES);
    opts.insert(Options::ENABLE_YAML_STYLE_METADATA_BLOCKS);

    let mut sink = TextSink::new();
    let mut meta_title: Option<String> = None;
    let mut in_meta = false;
    let mut image_depth = 0usize;
    let mut code_depth = 0usize;
    let mut html_block: Option<String> = None;
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut first_cell = true;

    for ev in Parser::new_ext(content, opts) {
        if image_depth > 0 {
            match ev {
                Event::Start(Tag::Image { .. }) => image_depth += 1,
                Event::End(TagEnd::Image) => image_depth -= 1,
                _ => {}
            }
            continue;
        }
        if let Some(buf) = html_block.as_mut() {
            match ev {
                Event::End(TagEnd::HtmlBlock) => {
                    let html = std::mem::take(buf);
                    html_block = None;
                    sink.brk(2);
                    let _ = html_into_sink(&html, &mut sink);
                    sink.brk(2);
                }
                Event::Html(s) | Event::Text(s) | Event::InlineHtml(s) => buf.push_str(&s),
                _ => {}
            }
            continue;
        }
        match ev {
            Event::Start(tag) => match tag {
                Tag::Heading { level, .. } => sink.start_heading(level as usize),
                Tag::Paragraph | Tag::BlockQuote(_) | Tag::Table(_) | Tag::FootnoteDefinition(_) => {
                    sink.brk(2)
                }
                Tag::DefinitionList => sink.brk(2),
                Tag::DefinitionListTitle | Tag::DefinitionListDefinition => sink.brk(1),
                Tag::CodeBlock(_) => {
                    sink.brk(2);
                    code_depth += 1;
                }
                Tag::HtmlBlock => html_block = Some(String::new()),
                Tag::List(start) => {
                    sink.brk(if lists.is_empty() { 2 } else { 1 });
                    lists.push(start);
                }
                Tag::Item => {
                    let indent = "  ".repeat(lists.len().saturating_sub(1));
                    let marker = match lists.last_mut() {
                        Some(Some(k)) => {
                            let m = format!("{k}. ");
                            *k = k.saturating_add(1);
                            m
                        }
                        _ => "- ".to_string(),
                    };
                    sink.list_item(format!("{indent}{marker}"));
                }
                Tag::TableHead | Tag::TableRow => {
                    sink.brk(1);
                    first_cell = true;
                }
                Tag::TableCell => {
                    if !first_cell {
                        sink.text(" | ");
                    }
                    first_cell = false;
                }
                Tag::Image { .. } => image_depth = 1,
                Tag::MetadataBlock(_) => in_meta = true,
                _ => {} // emphasis, strong, strikethrough, links: keep the text only
            },
            Event::End(tag) => match tag {
                TagEnd::Heading(_) => sink.end_heading(),
                TagEnd::Paragraph
                | TagEnd::BlockQuote(_)
                | TagEnd::Table
                | TagEnd::FootnoteDefinition
                | TagEnd::DefinitionList => sink.brk(2),
                TagEnd::CodeBlock => {
                    code_depth = code_depth.saturating_sub(1);
                    sink.brk(2);
                }
                TagEnd::List(_) => {
                    lists.pop();
                    sink.brk(if lists.is_empty() { 2 } else { 1 });
                }
                TagEnd::Item | TagEnd::DefinitionListTitle | TagEnd::DefinitionListDefinition => {
                    sink.brk(1)
                }
                TagEnd::TableHead | TagEnd::TableRow => sink.brk(1),
                TagEnd::MetadataBlock(_) => in_meta = false,
                _ => {}
            },
            Event::Text(s) => {
                if in_meta {
                    if meta_title.is_none() {
                        meta_title = yaml_title(&s);
                    }
                } else if code_depth > 0 {
                    sink.raw(&s);
                } else {
                    sink.text(&s);
                }
            }
            Event::Code(s) | Event::InlineMath(s) => sink.text(&s),
            Event::DisplayMath(s) => {
                sink.brk(2);
                sink.raw(&s);
                sink.brk(2);
            }
            Event::Html(s) => {
                let _ = html_into_sink(&s, &mut sink);
            }
            Event::InlineHtml(s) => {
                let lower = s.trim().to_ascii_lowercase();
                if lower.starts_with("<br") || lower.starts_with("</br") {
                    sink.line_break();
                }
            }
            Event::FootnoteReference(s) => {
                sink.text("[");
                sink.text(&s);
                sink.text("]");
            }
            Event::SoftBreak => sink.text(" "),
            Event::HardBreak => sink.line_break(),
            Event::Rule => sink.brk(2),
            Event::TaskListMarker(done) => {
                sink.text(if done { "[x]" } else { "[ ]" });
                sink.text(" ");
            }
        }
    }
    let (sections, first_h1) = sink.finish();
    (meta_title.or(first_h1), sections)
}

/// `title:` from a YAML front-matter block, if any.
fn yaml_title(yaml: &str) -> Option<String> {
    for line in yaml.lines() {
        if let Some(v) = line.strip_prefix("title:") {
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'').trim();
            if !v.is_empty() {
                return Some(v.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_text(d: &ParsedDocument) -> String {
        d.sections.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join("\n\n")
    }

    #[test]
    fn format_names() {
        assert_eq!(DocFormat::PlainText.as_str(), "text");
        assert_eq!(DocFormat::Markdown.as_str(), "markdown");
        assert_eq!(DocFormat::Html.as_str(), "html");
    }

    #[test]
    fn detect_by_extension_and_content() {
        assert_eq!(detect_format("a/b/README.MD", "plain"), DocFormat::Markdown);
        assert_eq!(detect_format("x.markdown", ""), DocFormat::Markdown);
        assert_eq!(detect_format("x.HTM", "# not md"), DocFormat::Html);
        assert_eq!(detect_format("x.txt", "<html><body>x</body></html>"), DocFormat::PlainText);
        assert_eq!(detect_format("noext", "<!DOCTYPE html><p>x"), DocFormat::Html);
        assert_eq!(detect_format("noext", "  <HTML><body>x"), DocFormat::Html);
        assert_eq!(
            detect_format("x.dat", "<?xml version=\"1.0\"?>\n<!DOCTYPE html PUBLIC><html>"),
            DocFormat::Html
        );
        assert_eq!(
            detect_format("frag", "<div><p>a</p><p>b</p><p>c</p><ul><li>x</li></ul></div>"),
            DocFormat::Html
        );
        assert_eq!(detect_format("notes", "# Title\n\nSome text."), DocFormat::Markdown);
        assert_eq!(
            detect_format("notes", "Intro line\n\n## Part\n\n- a\n- b\n\n```\ncode\n```\n"),
            DocFormat::Markdown
        );
        assert_eq!(detect_format("notes", "Just some text.\nWith lines."), DocFormat::PlainText);
        assert_eq!(detect_format("", ""), DocFormat::PlainText);
        assert_eq!(detect_format("weird.", "a < b and c > d"), DocFormat::PlainText);
    }

    #[test]
    fn errors() {
        assert_eq!(parse("e.txt", ""), Err(ParseError::Empty { file_name: "e.txt".into() }));
        assert!(matches!(parse("e.txt", " \n\r\n\t "), Err(ParseError::Empty { .. })));
        assert!(matches!(
            parse("e.html", "<html><head><title>T</title><script>x()</script></head><body> </body></html>"),
            Err(ParseError::Empty { .. })
        ));
        assert!(matches!(parse("e.md", "<!-- only a comment -->\n\n#\n"), Err(ParseError::Empty { .. })));
        let e = parse("bin.txt", "abc\0def").unwrap_err();
        assert_eq!(e, ParseError::NulCharacter { file_name: "bin.txt".into(), offset: 3 });
        let msg = e.to_string();
        assert!(msg.contains("bin.txt") && msg.contains("byte offset 3"), "{msg}");
        let msg = ParseError::Empty { file_name: "x".into() }.to_string();
        assert!(msg.contains("contains no text after parsing"), "{msg}");
        // &#0; must not smuggle a NUL in
        let d = parse("a.html", "<p>a&#0;b</p>").unwrap();
        assert!(!all_text(&d).contains('\0'));
    }

    #[test]
    fn plain_text() {
        let d = parse("a.txt", "\u{feff}Line one\r\ncontinues here.\r\n\r\n\r\n\r\nSecond   para.  \n\n\n").unwrap();
        assert_eq!(d.format, DocFormat::PlainText);
        assert_eq!(d.title, None);
        assert_eq!(d.sections.len(), 1);
        assert!(d.sections[0].headings.is_empty());
        assert_eq!(d.sections[0].text, "Line one\ncontinues here.\n\nSecond   para.");
    }

    #[test]
    fn html_basic_structure() {
        let html = r#"<!DOCTYPE html>
<HTML><HEAD><TITLE> My &amp; Page </TITLE>
<style>p { color: red; }</style><script>var x = "<p>not text</p>";</script>
<meta name="x" content="a>b"><noscript>head noscript</noscript>stray head text</HEAD>
<BODY>
<nav><a href="/">Home</a> | <a href="/docs">Docs</a></nav>
<h1>Chapter 9</h1>
<p>Intro   text
 spanning lines.</p>
<h2 class="x">9.1 Basics</h2>
<p>Basics <b>bold</b> and <i>it</i>alic.</p>
<h2>9.2 Indexes</h2>
<h3>9.2.1 B-Tree</h3>
<p>B-trees &mdash; balanced &lt;trees&gt; &#8212; &#x2014; caf&eacute; 5&nbsp;MB &copy</p>
<h2>Empty</h2>
<h2>9.3 Lists</h2><ul><li>one<li>two</ul><ol start="3"><li>three</li><li>four</li></ol>
<!-- a comment <p>hidden</p> -->
<pre>
  line 1
    line 2 &lt;x&gt;
</pre>
<p>after<br>break<br/>again</p>
<div class="navfooter">Prev Next</div>
<noscript>enable js</noscript>
</BODY></HTML>"#;
        let d = parse("page.html", html).unwrap();
        assert_eq!(d.format, DocFormat::Html);
        assert_eq!(d.title.as_deref(), Some("My & Page"));
        let heads: Vec<Vec<String>> = d.sections.iter().map(|s| s.headings.clone()).collect();
        assert_eq!(
            heads,
            vec![
                vec!["Chapter 9".to_string()],
                vec!["Chapter 9".into(), "9.1 Basics".into()],
                vec!["Chapter 9".into(), "9.2 Indexes".into(), "9.2.1 B-Tree".into()],
                vec!["Chapter 9".into(), "9.3 Lists".into()],
            ]
        );
        assert_eq!(d.sections[0].text, "Intro text spanning lines.");
        assert_eq!(d.sections[1].text, "Basics bold and italic.");
        assert_eq!(d.sections[2].text, "B-trees — balanced <trees> — — café 5 MB ©");
        let lists = &d.sections[3].text;
        assert!(lists.starts_with("- one\n- two\n\n3. three\n4. four\n\n  line 1\n    line 2 <x>\n\nafter\nbreak\nagain"), "{lists:?}");
        let all = all_text(&d);
        for bad in ["color", "not text", "Home", "hidden", "Prev", "enable js", "<p", "comment", "stray", "head noscript"] {
            assert!(!all.contains(bad), "found {bad:?} in {all:?}");
        }
    }

    #[test]
    fn html_tolerance() {
        let html = "<div title='a > b' data-x=\"<p>\">Text one<p>para <unknown-tag foo>two</p>\
                    <p>3 < 4 and 5 > 4 &unknown; &amp &#xZZ; &#99999999999;</p>\
                    <![CDATA[raw <b>cdata</b>]]><P>UPPER</P><h2>Open heading<p>body after\
                    <table><tr><td>c1<td>c2</tr><tr><th>c3</table><span>trailing <b>unclosed";
        let d = parse("frag.htm", html).unwrap();
        let all = all_text(&d);
        assert!(all.starts_with("Text one\n\npara two\n\n3 < 4 and 5 > 4 &unknown; & &#xZZ; \u{fffd}"), "{all:?}");
        assert!(all.contains("raw <b>cdata</b>"));
        assert!(all.contains("UPPER"));
        assert!(all.contains("c1\nc2\nc3"), "{all:?}");
        assert!(all.ends_with("trailing unclosed"));
        assert_eq!(d.sections.last().map(|s| s.headings.clone()), Some(vec!["Open heading".to_string()]));
        // Unterminated constructs at the end must not panic.
        for s in ["<", "<a", "<a href='x", "<!--", "<![CDATA[x", "</", "</a", "<script>x", "&", "&#", "&#x", "<p>é<", "x<!d", "<title>t"] {
            let _ = parse("x.html", s);
        }
    }

    #[test]
    fn html_title_fallback_and_nested_skip() {
        let d = parse("x.html", "<body><h1>Main</h1><div class='sidebar x'><p>keep</p></div><nav><nav>in</nav>still nav</nav><p>visible</p></body>").unwrap();
        assert_eq!(d.title.as_deref(), Some("Main"));
        let all = all_text(&d);
        assert!(all.contains("keep") && all.contains("visible"));
        assert!(!all.contains("nav"), "{all:?}");
    }

    #[test]
    fn html_admonition_headings_end_with_their_box() {
        let html = "<h2>Params</h2><h3>Storage</h3><p>before</p><div class=\"note\"><h3 class=\"title\">Note</h3><p>noted</p></div><p>after</p><h2>Next</h2><p>x</p>";
        let d = parse("a.html", html).unwrap();
        let got: Vec<(Vec<String>, String)> = d.sections.iter().map(|s| (s.headings.clone(), s.text.clone())).collect();
        let v = |a: &[&str], t: &str| (a.iter().map(|s| s.to_string()).collect::<Vec<_>>(), t.to_string());
        assert_eq!(
            got,
            vec![
                v(&["Params", "Storage"], "before"),
                v(&["Params", "Note"], "noted"),
                v(&["Params", "Storage"], "after"),
                v(&["Next"], "x"),
            ]
        );
    }

    /// Deterministic pseudo-random documents built from nasty fragments: no
    /// panics, and the output invariants hold.
    #[test]
    fn fuzz_no_panics() {
        const FRAGS: &[&str] = &[
            "<", ">", "<p>", "</p>", "<div class='note'>", "</div>", "<h2>", "</h2>", "<h1 x=\"a>b\">", "<pre>", "</pre>",
            "&amp", "&#x", "&#", "&", ";", "é", "😀", "\n", "\r\n", "\n\n", " ", "\t", "word", "Word.", "<!--", "-->",
            "<![CDATA[", "]]>", "<script>", "</script>", "<title>", "</title>", "# ", "## ", "```", "*", "_", "[", "](",
            ")", "![", "---", "===", "- ", "1. ", "|", "<br>", "<li>", "<ul>", "</ul>", "'", "\"", "<head>", "<body>",
            "&nbsp;", "&#8212;", "\u{a0}", "\u{ad}", "<nav>", "</nav>", "<table><tr><td>", "</",
        ];
        let mut seed: u64 = 0x9e3779b97f4a7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..1500 {
            let n = (next() % 60) as usize;
            let doc: String = (0..n).map(|_| FRAGS[(next() % FRAGS.len() as u64) as usize]).collect();
            let name = ["a.html", "a.md", "a.txt", "noext"][round % 4];
            match parse(name, &doc) {
                Ok(d) => {
                    assert!(!d.sections.is_empty());
                    for s in &d.sections {
                        assert!(!s.text.trim().is_empty(), "{doc:?}");
                        assert!(s.text.lines().all(|l| l == l.trim_end()), "{doc:?}");
                        assert!(!s.text.contains("\n\n\n"), "{doc:?}");
                        assert!(s.headings.iter().all(|h| !h.is_empty() && h == h.trim()), "{doc:?}");
                    }
                }
                Err(ParseError::Empty { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn markdown_structure() {
        let md = "---\ntitle: \"Guide\"\nauthor: me\n---\n\
# Top\n\nIntro with *emphasis*, __strong__ and [a link](http://x.y/z \"t\") and ![img alt](p.png).\n\n\
<!-- hidden comment -->\n\n\
Setext Two\n----------\n\n\
Text two with `code` and a very\nsoft break.\n\n\
### Deeper {#anchor}\n\n\
- item one\n- item **two**\n  - nested\n1. first\n2. second\n\n\
```sql\nSELECT 1;\n  -- indented\n```\n\n\
| a | b |\n|---|---|\n| 1 | 2 |\n\n\
Other Top\n=========\n\nLast.\n";
        let d = parse("guide.md", md).unwrap();
        assert_eq!(d.format, DocFormat::Markdown);
        assert_eq!(d.title.as_deref(), Some("Guide"));
        let heads: Vec<Vec<String>> = d.sections.iter().map(|s| s.headings.clone()).collect();
        assert_eq!(
            heads,
            vec![
                vec!["Top".to_string()],
                vec!["Top".into(), "Setext Two".into()],
                vec!["Top".into(), "Setext Two".into(), "Deeper".into()],
                vec!["Other Top".to_string()],
            ]
        );
        assert_eq!(d.sections[0].text, "Intro with emphasis, strong and a link and .");
        assert_eq!(d.sections[1].text, "Text two with code and a very soft break.");
        let deeper = &d.sections[2].text;
        assert!(deeper.contains("- item one\n- item two\n  - nested"), "{deeper:?}");
        assert!(deeper.contains("1. first\n2. second"), "{deeper:?}");
        assert!(deeper.contains("SELECT 1;\n  -- indented"), "{deeper:?}");
        assert!(deeper.contains("a | b\n1 | 2"), "{deeper:?}");
        assert_eq!(d.sections[3].text, "Last.");
        let all = all_text(&d);
        assert!(!all.contains("hidden") && !all.contains("http") && !all.contains("img alt") && !all.contains('*'));
    }

    #[test]
    fn markdown_title_from_h1_and_html_block() {
        let d = parse("a.md", "Preface text.\n\n# Real Title\n\n<div>\n<p>Inside &amp; html</p>\n</div>\n\nAfter.").unwrap();
        assert_eq!(d.title.as_deref(), Some("Real Title"));
        assert_eq!(d.sections[0].headings, Vec::<String>::new());
        assert_eq!(d.sections[0].text, "Preface text.");
        assert_eq!(d.sections[1].text, "Inside & html\n\nAfter.");
    }

    #[test]
    fn entity_decoding() {
        assert_eq!(decode_entities("a &lt;b&gt; &amp;amp; &quot;q&quot; &#39; &#x27; &eacute;&Omega;&sigmaf;&hellip;"), "a <b> &amp; \"q\" ' ' éΩς…");
        assert_eq!(decode_entities("&#150;&#x80;&#xD800;&#1114112;"), "–€\u{fffd}\u{fffd}");
        assert_eq!(decode_entities("AT&T &foo bar&"), "AT&T &foo bar&");
    }

    fn pg_doc(name: &str) -> Option<String> {
        std::fs::read_to_string(format!("/usr/share/doc/postgresql-doc-15/html/{name}")).ok()
    }

    #[test]
    fn real_postgres_docs() {
        let Some(html) = pg_doc("sql-createindex.html") else {
            eprintln!("postgresql-doc-15 not installed; skipping");
            return;
        };
        let d = parse("sql-createindex.html", &html).unwrap();
        assert_eq!(d.format, DocFormat::Html);
        assert_eq!(d.title.as_deref(), Some("CREATE INDEX"));
        assert!(d.sections.len() >= 5, "{}", d.sections.len());
        let all = all_text(&d);
        assert!(all.contains("CREATE INDEX constructs an index"), "{all}");
        assert!(all.contains("CREATE [ UNIQUE ] INDEX [ CONCURRENTLY ]"));
        assert!(!all.contains("<em") && !all.contains("<p>") && !all.contains("</"), "tag text leaked");
        assert!(!all.contains("Prev") || !all.contains("Next\n"), "navigation chrome leaked");
        assert!(d.sections.iter().any(|s| s.headings.iter().any(|h| h == "Parameters")));
        assert!(d.sections.iter().any(|s| s.headings.iter().any(|h| h == "Examples")));
    }

    #[test]
    fn all_postgres_docs_parse() {
        let Ok(dir) = std::fs::read_dir("/usr/share/doc/postgresql-doc-15/html") else {
            return;
        };
        let mut n = 0;
        for e in dir.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("html") {
                continue;
            }
            let Ok(html) = std::fs::read_to_string(&p) else { continue };
            let name = p.file_name().and_then(|x| x.to_str()).unwrap_or("?").to_string();
            match parse(&name, &html) {
                Ok(d) => {
                    assert!(d.title.is_some(), "{name}: no title");
                    for s in &d.sections {
                        assert!(!s.text.contains("<script"), "{name}");
                        assert!(!s.text.trim().is_empty(), "{name}");
                    }
                }
                Err(e) => panic!("{name}: {e}"),
            }
            n += 1;
        }
        eprintln!("parsed {n} PostgreSQL doc pages");
    }
}

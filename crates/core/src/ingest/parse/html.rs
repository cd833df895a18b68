//! HTML: a small, dependency-free, error-tolerant tokenizer (unclosed tags, quoted `>` in
//! attributes, comments, CDATA, uppercase tags, stray `<`) feeding the [`TextSink`]; page chrome
//! (navigation, footers, scripts) is skipped.

use super::sink::{HeadingPath, TextSink};
use crate::interrupt::Interrupt;
use crate::limits::{LimitExceeded, Limits};
use super::*;

/// Attributes of a start tag: (lower-case name, raw value).
pub(crate) type Attrs<'a> = Vec<(String, &'a str)>;

#[derive(Debug)]
pub(crate) enum Token<'a> {
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
pub(crate) struct Tokenizer<'a> {
    src: &'a str,
    pos: usize,
    /// Pending raw-text element content to be returned after a start tag.
    pending: Option<Token<'a>>,
}

impl<'a> Tokenizer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Tokenizer { src, pos: 0, pending: None }
    }

    pub(crate) fn find_from(&self, from: usize, pat: &str) -> Option<usize> {
        self.src.get(from..).and_then(|s| s.find(pat)).map(|i| i + from)
    }

    /// Find `</name` case-insensitively from `from`.
    pub(crate) fn find_end_tag(&self, from: usize, name: &str) -> Option<usize> {
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

    pub(crate) fn next_token(&mut self) -> Option<Token<'a>> {
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
    pub(crate) fn scan_attrs(&self, mut i: usize) -> ((Attrs<'a>, bool), usize) {
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

pub(crate) fn memchr_lt(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'<')
}

pub(crate) fn scan_name(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len()
        && !bytes[i].is_ascii_whitespace()
        && !matches!(bytes[i], b'>' | b'/' | b'<')
        && bytes[i].is_ascii()
    {
        i += 1;
    }
    i
}

pub(crate) fn is_void(name: &str) -> bool {
    matches!(
        name,
        "area" | "base" | "br" | "col" | "embed" | "hr" | "img" | "input" | "link" | "meta"
            | "param" | "source" | "track" | "wbr" | "keygen" | "basefont" | "frame"
    )
}

pub(crate) fn heading_level(name: &str) -> Option<usize> {
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
pub(crate) fn is_paragraph_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "section" | "article" | "main" | "header" | "footer" | "aside" | "blockquote"
            | "pre" | "table" | "ul" | "ol" | "dl" | "menu" | "figure" | "form" | "fieldset"
            | "address" | "hr" | "details" | "center" | "listing" | "hgroup" | "body" | "html"
    )
}

/// Block elements that start/end a line.
pub(crate) fn is_line_block(name: &str) -> bool {
    matches!(
        name,
        "div" | "li" | "tr" | "td" | "th" | "dt" | "dd" | "caption" | "figcaption" | "summary"
            | "legend" | "option" | "thead" | "tbody" | "tfoot" | "nav" | "dir" | "frameset"
            | "noscript" | "label" | "select" | "textarea" | "tt-block"
    )
}

/// Elements whose whole subtree is dropped.
pub(crate) fn is_skipped_element(name: &str) -> bool {
    matches!(
        name,
        "script" | "style" | "noscript" | "template" | "svg" | "math" | "iframe" | "object"
            | "canvas" | "nav" | "button" | "select" | "datalist" | "map" | "audio" | "video"
            | "noembed" | "noframes"
    )
}

/// Page chrome recognised by attributes (navigation bars, hidden elements).
pub(crate) fn is_chrome(attrs: &[(String, &str)]) -> bool {
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
pub(crate) fn is_admonition(name: &str, attrs: &[(String, &str)]) -> bool {
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

pub(crate) fn parse_html(
    content: &str,
    limits: &Limits,
    interrupt: Interrupt<'_>,
) -> Result<(Option<String>, Vec<Section>), LimitExceeded> {
    let mut sink = TextSink::new(limits, interrupt);
    let title = html_into_sink(content, &mut sink);
    let (sections, first_h1) = sink.finish()?;
    Ok((title.or(first_h1), sections))
}

/// Feed an HTML document or fragment into `sink`; returns the `<title>`.
pub(crate) fn html_into_sink(content: &str, sink: &mut TextSink) -> Option<String> {
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
        sink.tick();
        if sink.stopped() {
            break;
        }
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
                            sink.nesting("HTML list nesting", lists.len());
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
                            sink.nesting("HTML list nesting", lists.len());
                        }
                    }
                    "li" => {
                        let marker = match lists.last_mut() {
                            Some(Some(k)) => {
                                let m = format!("{k}. ");
                                *k = k.saturating_add(1);
                                m
                            }
                            _ => "- ".to_string(),
                        };
                        sink.list_item(TextSink::list_prefix(lists.len(), &marker));
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

pub(crate) fn collapse_ws(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s.split(|c: char| c.is_whitespace()).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(w.chars().filter(|c| !is_invisible(*c)));
    }
    out
}



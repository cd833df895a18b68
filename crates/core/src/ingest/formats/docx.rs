//! DOCX (`zip` + `quick-xml`): `word/document.xml` is streamed; paragraphs styled Title /
//! Heading 1–6 (or with an outline level) become Markdown headings, tables become one
//! `| a | b |` line per row, so the result is Markdown whose structure survives parsing.

use super::*;
use crate::interrupt::Ticker;

/// Why the body of a DOCX could not be turned into Markdown.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The XML is not well-formed.
    Xml(String),
    /// Over a limit (text, nesting).
    Limit(LimitExceeded),
}

pub(crate) const W_NS: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";
pub(crate) const W_NS_STRICT: &str = "http://purl.oclc.org/ooxml/wordprocessingml/main";
pub(crate) const MC_NS: &str = "http://schemas.openxmlformats.org/markup-compatibility/2006";

pub(crate) fn read_zip_part(
    archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
    limit: u64,
    file_name: &str,
    part: &'static str,
) -> Result<Option<Vec<u8>>, FormatError> {
    let corrupt = |detail: String| CorruptDocx {
        file_name: file_name.to_string(),
        detail,
    };
    let mut f = match archive.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(corrupt(format!("cannot open {name} in the archive: {e}"))),
    };
    let too_large = || FormatError::TooLarge {
        file_name: file_name.to_string(),
        part,
        limit_bytes: limit,
    };
    if f.size() > limit {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(f.size().min(limit) as usize);
    (&mut f)
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| corrupt(format!("cannot decompress {name}: {e}")))?;
    if buf.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(Some(buf))
}

pub(crate) fn extract_docx(
    file_name: &str,
    bytes: &[u8],
    limits: &Limits,
    interrupt: Interrupt<'_>,
) -> Result<String, FormatError> {
    let limit = |limit: LimitExceeded| FormatError::Limit { file_name: file_name.to_string(), limit };
    // The XML budget covers every part read; the declared sizes in the archive are not trusted:
    // parts are read through a byte cap.
    let xml_limit = (limits.max_xml_bytes as u64).min(MAX_DOCX_XML_BYTES);
    let corrupt = |detail: String| CorruptDocx {
        file_name: file_name.to_string(),
        detail,
    };
    if bytes.starts_with(OLE2_MAGIC) {
        return Err(FormatError::Unsupported {
            file_name: file_name.to_string(),
            what: "a password-protected Word document or a legacy .doc file (OLE compound file, not a .docx ZIP)",
            advice: "remove the password and save it as .docx (or PDF)",
        });
    }
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| corrupt(format!("it is not a readable ZIP archive: {e}")))?;
    interrupt();
    let xml = match read_zip_part(&mut archive, DOCX_MAIN_PART, xml_limit, file_name, "word/document.xml") {
        Ok(Some(xml)) => xml,
        Ok(None) => return Err(corrupt("the archive has no word/document.xml".into())),
        Err(FormatError::TooLarge { .. }) => {
            return Err(limit(LimitExceeded::xml(xml_limit as usize + 1, limits.max_xml_bytes)))
        }
        Err(e) => return Err(e),
    };
    interrupt();
    // Styles only name the heading styles; a missing or broken styles.xml is not fatal.
    let styles = match read_zip_part(
        &mut archive,
        "word/styles.xml",
        MAX_DOCX_STYLES_BYTES.min(xml_limit.saturating_sub(xml.len() as u64)),
        file_name,
        "word/styles.xml",
    ) {
        Ok(Some(s)) => docx_heading_styles(&s),
        Ok(None) | Err(CorruptDocx { .. }) => HashMap::new(),
        Err(e) => return Err(e),
    };
    interrupt();
    match docx_body_markdown(&xml, &styles, limits, interrupt) {
        Ok(text) => Ok(text),
        Err(BodyError::Limit(e)) => Err(limit(e)),
        Err(BodyError::Xml(e)) => Err(corrupt(format!("word/document.xml is not well-formed XML: {e}"))),
    }
}

pub(crate) fn is_w(ns: &quick_xml::name::ResolveResult<'_>) -> bool {
    match ns {
        quick_xml::name::ResolveResult::Bound(n) => {
            let n: &str = n.as_ref();
            n == W_NS || n == W_NS_STRICT
        }
        _ => false,
    }
}

pub(crate) fn is_mc(ns: &quick_xml::name::ResolveResult<'_>) -> bool {
    match ns {
        quick_xml::name::ResolveResult::Bound(n) => {
            let n: &str = n.as_ref();
            n == MC_NS
        }
        _ => false,
    }
}

/// The value of the `w:val` (any prefix) attribute.
pub(crate) fn attr_val(e: &quick_xml::events::BytesStart<'_>, local: &str) -> Option<String> {
    for a in e.attributes().flatten() {
        let key = a.key.local_name();
        let key: &str = key.as_ref();
        if key == local {
            return a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned());
        }
    }
    None
}

/// Heading level for "Title" (1) and "heading 1".."heading 6", by style name.
pub(crate) fn heading_level_from_name(name: &str) -> Option<u8> {
    let n = name.trim().to_ascii_lowercase();
    if n == "title" {
        return Some(1);
    }
    let rest = n.strip_prefix("heading")?.trim();
    match rest.parse::<u8>() {
        Ok(l) if (1..=6).contains(&l) => Some(l),
        _ => None,
    }
}

/// Map paragraph style id → heading level, from styles.xml (style names,
/// outline levels, `basedOn` inheritance).
pub(crate) fn docx_heading_styles(xml: &[u8]) -> HashMap<String, u8> {
    struct Style {
        name: Option<String>,
        based_on: Option<String>,
        outline: Option<u8>,
    }
    let mut styles: HashMap<String, Style> = HashMap::new();
    let mut reader = quick_xml::NsReader::from_reader(xml);
    let mut buf = Vec::new();
    let mut current: Option<(String, Style)> = None;
    while let Ok((ns, ev)) = reader.read_resolved_event_into(&mut buf) {
        let w = is_w(&ns);
        match ev {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) if w => {
                let local = e.local_name();
                let local: &str = local.as_ref();
                match local {
                    "style" => {
                        if let Some((id, s)) = current.take() {
                            styles.insert(id, s);
                        }
                        if attr_val(&e, "type").as_deref().unwrap_or("paragraph") == "paragraph" {
                            if let Some(id) = attr_val(&e, "styleId") {
                                current = Some((
                                    id,
                                    Style {
                                        name: None,
                                        based_on: None,
                                        outline: None,
                                    },
                                ));
                            }
                        }
                    }
                    "name" => {
                        if let Some((_, s)) = current.as_mut() {
                            s.name = attr_val(&e, "val");
                        }
                    }
                    "basedOn" => {
                        if let Some((_, s)) = current.as_mut() {
                            s.based_on = attr_val(&e, "val");
                        }
                    }
                    "outlineLvl" => {
                        if let Some((_, s)) = current.as_mut() {
                            s.outline =
                                attr_val(&e, "val").and_then(|v| v.trim().parse::<u8>().ok());
                        }
                    }
                    _ => {}
                }
            }
            quick_xml::events::Event::End(e) if w => {
                let local = e.local_name();
                if AsRef::<str>::as_ref(&local) == "style" {
                    if let Some((id, s)) = current.take() {
                        styles.insert(id, s);
                    }
                }
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    let mut out = HashMap::new();
    for id in styles.keys() {
        let mut cur = Some(id.as_str());
        for _ in 0..16 {
            let Some(c) = cur else { break };
            let Some(s) = styles.get(c) else { break };
            let level = s
                .name
                .as_deref()
                .and_then(heading_level_from_name)
                .or_else(|| s.outline.filter(|l| *l < 6).map(|l| l + 1));
            if let Some(l) = level {
                out.insert(id.clone(), l);
                break;
            }
            cur = s.based_on.as_deref();
        }
    }
    out
}

/// Style ids Word/LibreOffice/Google Docs use, when styles.xml does not say.
pub(crate) fn heading_level_from_id(id: &str) -> Option<u8> {
    let lower = id.to_ascii_lowercase();
    if lower == "title" {
        return Some(1);
    }
    let rest = lower.strip_prefix("heading")?;
    match rest.trim().parse::<u8>() {
        Ok(l) if (1..=6).contains(&l) => Some(l),
        _ => None,
    }
}

#[derive(Default)]
pub(crate) struct Para {
    text: String,
    style_level: Option<u8>,
    outline_level: Option<u8>,
    list: bool,
}

pub(crate) enum Frame {
    Para(Para),
    Table(Vec<Vec<String>>),
    Row(Vec<String>),
    Cell(String),
}

/// Escape what Markdown would otherwise interpret, so the text parses back
/// as itself. Leading whitespace of each line is dropped (indented code).
pub(crate) fn md_escape(s: &str, heading: bool) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            // Markdown hard line break.
            out.push_str("\\\n");
        }
        let line = line.trim_start();
        let chars: Vec<char> = line.chars().collect();
        for (j, &c) in chars.iter().enumerate() {
            let prev = if j > 0 { Some(chars[j - 1]) } else { None };
            let next = chars.get(j + 1).copied();
            let escape = match c {
                '\\' | '`' | '*' | '[' | ']' | '|' | '~' => true,
                '_' => {
                    !(prev.is_some_and(|p| p.is_alphanumeric())
                        && next.is_some_and(|n| n.is_alphanumeric()))
                }
                '<' => {
                    next.is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?'))
                }
                '&' => next.is_some_and(|n| n.is_ascii_alphanumeric() || n == '#'),
                '#' | '>' | '-' | '+' | '=' => j == 0,
                '{' | '}' => heading,
                _ => false,
            };
            if escape {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

pub(crate) fn push_block(blocks: &mut Vec<String>, frames: &mut [Frame], text: String) {
    if text.trim().is_empty() {
        return;
    }
    // Inside a table cell (at any depth) text goes into the cell.
    for f in frames.iter_mut().rev() {
        if let Frame::Cell(c) = f {
            if !c.is_empty() {
                c.push(' ');
            }
            c.push_str(text.trim());
            return;
        }
    }
    blocks.push(text);
}

pub(crate) fn render_table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    if cols == 0 {
        return String::new();
    }
    let line = |cells: &[String]| {
        let mut l = String::from("|");
        for i in 0..cols {
            let c = cells
                .get(i)
                .map(|c| md_escape(&c.replace('\n', " "), false))
                .unwrap_or_default();
            l.push(' ');
            l.push_str(c.trim());
            l.push_str(" |");
        }
        l
    };
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&line(r));
        if i == 0 {
            out.push('\n');
            out.push('|');
            for _ in 0..cols {
                out.push_str(" --- |");
            }
        }
    }
    out
}

/// Stream word/document.xml into Markdown blocks.
/// The body of `word/document.xml` as Markdown. The text read is bounded by
/// [`Limits::max_text_bytes`] and the nesting of tables and paragraphs by
/// [`Limits::max_nesting_depth`] (a table level opens 4 frames: table, row, cell, paragraph);
/// `interrupt` is called every few thousand XML events.
pub(crate) fn docx_body_markdown(
    xml: &[u8],
    styles: &HashMap<String, u8>,
    limits: &Limits,
    interrupt: Interrupt<'_>,
) -> Result<String, BodyError> {
    use quick_xml::events::Event;
    let mut ticker = Ticker::new(interrupt);
    let mut text_bytes = 0usize;
    let mut reader = quick_xml::NsReader::from_reader(xml);
    let mut buf = Vec::new();
    let mut blocks: Vec<String> = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    let mut skip_depth = 0usize;
    let mut in_t = false;
    let mut run_depth = 0usize;
    let mut ppr_depth = 0usize;
    loop {
        ticker.tick();
        if let Err(e) = limits.check_text(text_bytes) {
            return Err(BodyError::Limit(e));
        }
        if let Err(e) = limits.check_nesting("DOCX table nesting", frames.len().div_ceil(4)) {
            return Err(BodyError::Limit(e));
        }
        let (ns, ev) = reader.read_resolved_event_into(&mut buf).map_err(|e| BodyError::Xml(e.to_string()))?;
        let w = is_w(&ns);
        let mc = is_mc(&ns);
        if skip_depth > 0 {
            match ev {
                Event::Start(_) => skip_depth += 1,
                Event::End(_) => skip_depth -= 1,
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
            continue;
        }
        match ev {
            Event::Start(e) => {
                let local = e.local_name();
                let local: &str = local.as_ref();
                if mc && local == "Fallback" {
                    skip_depth = 1;
                } else if w {
                    match local {
                        // Deleted text, tracked property changes, field codes.
                        "del" | "moveFrom" | "pPrChange" | "rPrChange" | "delText"
                        | "instrText" => skip_depth = 1,
                        "p" => frames.push(Frame::Para(Para::default())),
                        "pPr" => ppr_depth += 1,
                        "r" => run_depth += 1,
                        "t" => in_t = true,
                        "tbl" => frames.push(Frame::Table(Vec::new())),
                        "tr" => frames.push(Frame::Row(Vec::new())),
                        "tc" => frames.push(Frame::Cell(String::new())),
                        _ => {
                            docx_empty_element(local, &e, &mut frames, styles, run_depth, ppr_depth)
                        }
                    }
                }
            }
            Event::Empty(e) if w => {
                let local = e.local_name();
                let local: &str = local.as_ref();
                docx_empty_element(local, &e, &mut frames, styles, run_depth, ppr_depth);
            }
            Event::End(e) if w => {
                let local = e.local_name();
                let local: &str = local.as_ref();
                match local {
                    "t" => in_t = false,
                    "r" => run_depth = run_depth.saturating_sub(1),
                    "pPr" => ppr_depth = ppr_depth.saturating_sub(1),
                    "p" => {
                        if matches!(frames.last(), Some(Frame::Para(_))) {
                            if let Some(Frame::Para(p)) = frames.pop() {
                                let in_cell = frames.iter().any(|f| matches!(f, Frame::Cell(_)));
                                let text = render_para(&p, in_cell);
                                push_block(&mut blocks, &mut frames, text);
                            }
                        }
                    }
                    "tc" => {
                        if matches!(frames.last(), Some(Frame::Cell(_))) {
                            if let Some(Frame::Cell(c)) = frames.pop() {
                                if let Some(Frame::Row(r)) = frames.last_mut() {
                                    r.push(c);
                                }
                            }
                        }
                    }
                    "tr" => {
                        if matches!(frames.last(), Some(Frame::Row(_))) {
                            if let Some(Frame::Row(r)) = frames.pop() {
                                if let Some(Frame::Table(t)) = frames.last_mut() {
                                    t.push(r);
                                }
                            }
                        }
                    }
                    "tbl" => {
                        if matches!(frames.last(), Some(Frame::Table(_))) {
                            if let Some(Frame::Table(rows)) = frames.pop() {
                                let nested = frames.iter().any(|f| matches!(f, Frame::Cell(_)));
                                let text = if nested {
                                    // A table inside a cell is flattened into the cell.
                                    rows.iter()
                                        .map(|r| r.join(" "))
                                        .collect::<Vec<_>>()
                                        .join(" ")
                                } else {
                                    render_table(&rows)
                                };
                                push_block(&mut blocks, &mut frames, text);
                            }
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) if in_t => {
                if let Some(Frame::Para(p)) = frames.last_mut() {
                    let t = t.xml10_content();
                    text_bytes += t.len();
                    p.text.push_str(&t);
                }
            }
            Event::CData(t) if in_t => {
                if let Some(Frame::Para(p)) = frames.last_mut() {
                    let t = t.into_inner();
                    text_bytes += t.len();
                    p.text.push_str(&t);
                }
            }
            Event::GeneralRef(r) if in_t => {
                let s: Option<String> = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c.to_string()),
                    Ok(None) => {
                        let name = r.xml10_content();
                        quick_xml::escape::resolve_predefined_entity(&name).map(|s| s.to_string())
                    }
                    Err(_) => None,
                };
                if let (Some(s), Some(Frame::Para(p))) = (s, frames.last_mut()) {
                    text_bytes += s.len();
                    p.text.push_str(&s);
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    // Unclosed paragraphs/tables at EOF (cannot happen in well-formed XML,
    // but keep whatever text there is).
    while let Some(f) = frames.pop() {
        let text = match f {
            Frame::Para(p) => render_para(&p, false),
            Frame::Table(rows) => render_table(&rows),
            Frame::Row(r) => r.join(" "),
            Frame::Cell(c) => c,
        };
        if !text.trim().is_empty() {
            blocks.push(text);
        }
    }
    let out = blocks.join("\n\n");
    limits.check_text(out.len()).map_err(BodyError::Limit)?;
    Ok(out)
}

/// Self-closing (or content-less) elements: tabs, breaks, paragraph properties.
pub(crate) fn docx_empty_element(
    local: &str,
    e: &quick_xml::events::BytesStart<'_>,
    frames: &mut [Frame],
    styles: &HashMap<String, u8>,
    run_depth: usize,
    ppr_depth: usize,
) {
    let Some(Frame::Para(p)) = frames.last_mut() else {
        return;
    };
    match local {
        "tab" if run_depth > 0 => p.text.push('\t'),
        "br" | "cr" if run_depth > 0 => p.text.push('\n'),
        "noBreakHyphen" if run_depth > 0 => p.text.push('-'),
        "pStyle" if ppr_depth > 0 => {
            if let Some(id) = attr_val(e, "val") {
                p.style_level = styles
                    .get(&id)
                    .copied()
                    .or_else(|| heading_level_from_id(&id));
            }
        }
        "outlineLvl" if ppr_depth > 0 => {
            p.outline_level = attr_val(e, "val")
                .and_then(|v| v.trim().parse::<u8>().ok())
                .filter(|l| *l < 6)
                .map(|l| l + 1);
        }
        "numPr" if ppr_depth > 0 => p.list = true,
        _ => {}
    }
}

pub(crate) fn render_para(p: &Para, in_cell: bool) -> String {
    let text = p.text.trim();
    if text.is_empty() {
        return String::new();
    }
    if in_cell {
        return text.replace('\n', " ");
    }
    if let Some(level) = p.style_level.or(p.outline_level) {
        let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        return format!(
            "{} {}",
            "#".repeat(level as usize),
            md_escape(&one_line, true)
        );
    }
    let body = md_escape(text, false);
    if p.list {
        format!("- {body}")
    } else {
        body
    }
}


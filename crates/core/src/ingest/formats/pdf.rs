//! PDF (`lopdf`): the text layer, page by page, with a small content-stream interpreter that puts
//! line breaks where the text moves to a new line, blank lines at larger vertical gaps and between
//! pages, and spaces where there is a horizontal gap (kerning is not a word gap).

use super::*;
use crate::interrupt::Ticker;

/// Decompressed content (page content streams and Form XObjects) still allowed for the whole
/// document: pages may share one content stream and forms may be run many times, so the work is
/// bounded per document, not per page.
pub(crate) struct ContentBudget {
    pub(crate) left: usize,
    pub(crate) exceeded: bool,
}

impl ContentBudget {
    /// Take `n` bytes from the budget; false (and `exceeded` set) when there are not enough left.
    fn take(&mut self, n: usize) -> bool {
        if n > self.left {
            self.exceeded = true;
            return false;
        }
        self.left -= n;
        true
    }
}

pub(crate) fn extract_pdf(
    file_name: &str,
    bytes: &[u8],
    limits: &Limits,
    interrupt: Interrupt<'_>,
) -> Result<String, FormatError> {
    let limit = |limit: LimitExceeded| FormatError::Limit { file_name: file_name.to_string(), limit };
    let corrupt = |detail: String| CorruptPdf {
        file_name: file_name.to_string(),
        detail,
    };
    let Some(start) = pdf_header_offset(bytes) else {
        return Err(corrupt(
            "it does not start with a %PDF- header, so it is not a PDF".into(),
        ));
    };
    let data = &bytes[start..];
    let doc = match lopdf::Document::load_mem(data) {
        Ok(d) => d,
        Err(lopdf::Error::Decryption(_)) | Err(lopdf::Error::InvalidPassword) => {
            return Err(FormatError::EncryptedPdf {
                file_name: file_name.to_string(),
            })
        }
        Err(e) => {
            let tail = &data[data.len().saturating_sub(2048)..];
            let hint = if contains(tail, b"%%EOF") {
                ""
            } else {
                "; the end-of-file marker is missing: truncated?"
            };
            return Err(corrupt(format!("{e}{hint}")));
        }
    };
    // lopdf decrypts documents with an empty user password by itself; one
    // that is still encrypted needs a password.
    if doc.is_encrypted() {
        return Err(FormatError::EncryptedPdf {
            file_name: file_name.to_string(),
        });
    }
    // lopdf's page iterator visits at most one kid per object of the file, so a page tree with
    // loops ends; pages beyond the cap are refused before any is read.
    let mut pages: Vec<lopdf::ObjectId> = Vec::new();
    for id in doc.page_iter() {
        if pages.len() >= limits.max_pages {
            return Err(limit(LimitExceeded::pages(pages.len() + 1, limits.max_pages)));
        }
        pages.push(id);
    }
    if pages.is_empty() {
        return Err(corrupt("no pages could be found in it".into()));
    }
    let mut budget = ContentBudget { left: limits.max_xml_bytes, exceeded: false };
    let mut out = String::new();
    let mut first_err: Option<String> = None;
    let mut ok_pages = 0usize;
    for (i, &page_id) in pages.iter().enumerate() {
        interrupt();
        let number = i + 1;
        let page = pdf_page_text(&doc, page_id, &mut budget, interrupt);
        if budget.exceeded {
            return Err(limit(LimitExceeded::pdf_content(limits.max_xml_bytes - budget.left, limits.max_xml_bytes)));
        }
        match page {
            Ok(t) => {
                ok_pages += 1;
                let t = tidy_lines(&t);
                if !t.is_empty() {
                    if !out.is_empty() {
                        out.push_str("\n\n");
                    }
                    out.push_str(&t);
                    // Summed over all pages: many pages can share one content stream.
                    limits.check_text(out.len()).map_err(limit)?;
                }
            }
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(format!("page {number}: {e}"));
                }
            }
        }
    }
    if out.trim().is_empty() {
        if ok_pages == 0 {
            return Err(corrupt(
                first_err.unwrap_or_else(|| "no page could be read".into()),
            ));
        }
        return Err(FormatError::NoTextLayer {
            file_name: file_name.to_string(),
            pages: pages.len(),
        });
    }
    Ok(out)
}

/// Trim every line, drop runs of blank lines to one, collapse runs of spaces.
pub(crate) fn tidy_lines(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank = false;
    for line in s.split('\n') {
        let mut l = String::with_capacity(line.len());
        for c in line.trim().chars() {
            if c == ' ' && l.ends_with(' ') {
                continue;
            }
            l.push(c);
        }
        if l.is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
            if blank {
                out.push('\n');
            }
        }
        blank = false;
        out.push_str(&l);
    }
    out
}

pub(crate) type Matrix = [f64; 6];
pub(crate) const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

/// `a × b` for PDF's row-vector affine matrices.
pub(crate) fn mul(a: &Matrix, b: &Matrix) -> Matrix {
    [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
        a[4] * b[0] + a[5] * b[2] + b[4],
        a[4] * b[1] + a[5] * b[3] + b[5],
    ]
}

pub(crate) fn num(o: &lopdf::Object) -> Option<f64> {
    match o {
        lopdf::Object::Integer(i) => Some(*i as f64),
        lopdf::Object::Real(r) => Some(*r as f64).filter(|v| v.is_finite()),
        _ => None,
    }
}

pub(crate) fn matrix_of(ops: &[lopdf::Object]) -> Option<Matrix> {
    if ops.len() < 6 {
        return None;
    }
    let mut m = [0.0; 6];
    for (i, o) in ops.iter().take(6).enumerate() {
        m[i] = num(o)?;
    }
    Some(m)
}

/// What the interpreter needs to know about a font.
pub(crate) struct FontInfo<'a> {
    /// From /ToUnicode, when the font has one (preferred: it is what the producer
    /// says the glyphs mean; e.g. ligatures in custom encodings).
    to_unicode: Option<lopdf::Encoding<'a>>,
    /// From /Encoding (or the standard encoding).
    encoding: Option<lopdf::Encoding<'a>>,
    two_byte: bool,
    first_char: i64,
    widths: Vec<f64>,
    /// Width (in text space units per unit font size) of glyphs not in `widths`.
    default_width: f64,
}

impl FontInfo<'_> {
    /// Decode a shown string: /ToUnicode first, code by code for simple fonts
    /// (producers often map only a few codes, such as ligatures), then /Encoding.
    pub(crate) fn decode(&self, bytes: &[u8], out: &mut String) {
        let base = |b: &[u8], out: &mut String| match &self.encoding {
            Some(enc) => {
                let _ = enc.write_to_string(b, out);
            }
            None => latin1_printable(b, out),
        };
        match &self.to_unicode {
            Some(lopdf::Encoding::UnicodeMapEncoding(cmap)) if !self.two_byte => {
                for &b in bytes {
                    match cmap.get(b as u32, 1).or_else(|| cmap.get(b as u32, 2)) {
                        Some(units) => out.extend(char::decode_utf16(units).filter_map(Result::ok)),
                        None => base(&[b], out),
                    }
                }
            }
            Some(enc) => {
                let mut t = String::new();
                let _ = enc.write_to_string(bytes, &mut t);
                if t.is_empty() || t.contains('\u{fffd}') {
                    let mut alt = String::new();
                    base(bytes, &mut alt);
                    if t.is_empty() || !(alt.is_empty() || alt.contains('\u{fffd}')) {
                        t = alt;
                    }
                }
                out.push_str(&t);
            }
            None => base(bytes, out),
        }
    }

    pub(crate) fn width(&self, code: u32) -> f64 {
        if !self.two_byte {
            let i = code as i64 - self.first_char;
            if i >= 0 {
                if let Some(w) = self.widths.get(i as usize) {
                    if *w > 0.0 {
                        return w / 1000.0;
                    }
                }
            }
        }
        self.default_width
    }
}

pub(crate) fn deref<'a>(doc: &'a lopdf::Document, o: &'a lopdf::Object) -> Option<&'a lopdf::Object> {
    doc.dereference(o).ok().map(|(_, o)| o)
}

pub(crate) fn font_info<'a>(doc: &'a lopdf::Document, font: &'a lopdf::Dictionary) -> FontInfo<'a> {
    let encoding = font
        .get_font_encoding_with_limit(doc, MAX_PDF_PAGE_CONTENT_BYTES)
        .ok();
    // lopdf reads /ToUnicode only when there is no /Encoding; ask it for the
    // CMap alone through a dictionary that has nothing else.
    let to_unicode = font.get(b"ToUnicode").ok().and_then(|tu| {
        let mut only = lopdf::Dictionary::new();
        only.set("Type", lopdf::Object::Name(b"Font".to_vec()));
        only.set("ToUnicode", tu.clone());
        match only.get_font_encoding_with_limit(doc, MAX_PDF_PAGE_CONTENT_BYTES) {
            Ok(lopdf::Encoding::UnicodeMapEncoding(cmap)) => {
                Some(lopdf::Encoding::UnicodeMapEncoding(cmap))
            }
            _ => None,
        }
    });
    let two_byte = matches!(font.get(b"Subtype").and_then(|o| o.as_name()), Ok(b"Type0"));
    let first_char = font
        .get(b"FirstChar")
        .ok()
        .and_then(|o| deref(doc, o))
        .and_then(num)
        .unwrap_or(0.0) as i64;
    let widths: Vec<f64> = font
        .get(b"Widths")
        .ok()
        .and_then(|o| deref(doc, o))
        .and_then(|o| o.as_array().ok())
        .map(|a| {
            a.iter()
                .take(65536)
                .map(|w| deref(doc, w).and_then(num).unwrap_or(0.0))
                .collect()
        })
        .unwrap_or_default();
    let mut default_width = if widths.is_empty() { 0.5 } else { 0.0 };
    if two_byte {
        // CID fonts: /DW of the descendant font (default 1000).
        let dw = font
            .get(b"DescendantFonts")
            .ok()
            .and_then(|o| deref(doc, o))
            .and_then(|o| o.as_array().ok())
            .and_then(|a| a.first())
            .and_then(|o| deref(doc, o))
            .and_then(|o| o.as_dict().ok())
            .and_then(|d| d.get(b"DW").ok())
            .and_then(num)
            .unwrap_or(1000.0);
        default_width = dw / 1000.0;
    }
    if default_width <= 0.0 {
        // Average width of the glyphs we know about.
        let known: Vec<f64> = widths.iter().copied().filter(|w| *w > 0.0).collect();
        default_width = if known.is_empty() {
            0.5
        } else {
            known.iter().sum::<f64>() / known.len() as f64 / 1000.0
        };
    }
    FontInfo {
        to_unicode,
        encoding,
        two_byte,
        first_char,
        widths,
        default_width,
    }
}

/// Resource dictionaries in scope: innermost first.
pub(crate) fn resource_fonts<'a>(
    doc: &'a lopdf::Document,
    resources: &'a lopdf::Dictionary,
) -> Vec<(Vec<u8>, &'a lopdf::Dictionary)> {
    let mut out = Vec::new();
    if let Some(fonts) = resources
        .get(b"Font")
        .ok()
        .and_then(|o| deref(doc, o))
        .and_then(|o| o.as_dict().ok())
    {
        for (name, v) in fonts.iter() {
            if let Some(d) = deref(doc, v).and_then(|o| o.as_dict().ok()) {
                out.push((name.clone(), d));
            }
        }
    }
    out
}

pub(crate) struct PdfText<'a, 'b> {
    doc: &'a lopdf::Document,
    budget: &'b mut ContentBudget,
    ticker: Ticker<'b>,
    out: String,
    /// Where the last shown text ended (device space) and its font size.
    last: Option<(f64, f64, f64)>,
    ops: usize,
    forms: usize,
    font_cache: HashMap<(usize, Vec<u8>), std::rc::Rc<FontInfo<'a>>>,
}

/// Graphics and text state of the interpreter.
pub(crate) struct GState<'a> {
    ctm: Matrix,
    stack: Vec<Matrix>,
    tm: Matrix,
    tlm: Matrix,
    font: Option<std::rc::Rc<FontInfo<'a>>>,
    size: f64,
    leading: f64,
    char_spacing: f64,
    word_spacing: f64,
    hscale: f64,
    rise: f64,
}

/// The text of one page. Decompressed content is taken from `budget` (on exhaustion the page
/// stops and `budget.exceeded` is set); `interrupt` is called every few thousand operators.
pub(crate) fn pdf_page_text(
    doc: &lopdf::Document,
    page_id: lopdf::ObjectId,
    budget: &mut ContentBudget,
    interrupt: Interrupt<'_>,
) -> Result<String, String> {
    let content = doc
        .get_page_content_with_limit(page_id, MAX_PDF_PAGE_CONTENT_BYTES)
        .map_err(|e| e.to_string())?;
    if !budget.take(content.len()) {
        return Ok(String::new());
    }
    let mut fonts: Vec<(Vec<u8>, &lopdf::Dictionary)> = Vec::new();
    let mut resources: Vec<&lopdf::Dictionary> = Vec::new();
    if let Ok((dict, ids)) = doc.get_page_resources(page_id) {
        resources.extend(dict);
        resources.extend(ids.iter().filter_map(|id| doc.get_dictionary(*id).ok()));
    }
    for r in &resources {
        fonts.extend(resource_fonts(doc, r));
    }
    let mut st = PdfText {
        doc,
        budget,
        ticker: Ticker::new(interrupt),
        out: String::new(),
        last: None,
        ops: 0,
        forms: 0,
        font_cache: HashMap::new(),
    };
    let mut gs = GState {
        ctm: IDENTITY,
        stack: Vec::new(),
        tm: IDENTITY,
        tlm: IDENTITY,
        font: None,
        size: 0.0,
        leading: 0.0,
        char_spacing: 0.0,
        word_spacing: 0.0,
        hscale: 1.0,
        rise: 0.0,
    };
    st.run(&content, &fonts, &resources, &mut gs, 0);
    Ok(st.out)
}

impl<'a> PdfText<'a, '_> {
    pub(crate) fn run(
        &mut self,
        content: &[u8],
        fonts: &[(Vec<u8>, &'a lopdf::Dictionary)],
        resources: &[&'a lopdf::Dictionary],
        gs: &mut GState<'a>,
        depth: usize,
    ) {
        let scope = depth; // fonts of different forms may reuse names
        for op in lopdf::content::Content::decode_iter(content) {
            let Ok(op) = op else { break };
            self.ops += 1;
            self.ticker.tick();
            if self.ops > MAX_PDF_OPS_PER_PAGE || self.budget.exceeded {
                break;
            }
            let o = &op.operands;
            let n = |i: usize| o.get(i).and_then(num);
            match op.operator.as_str() {
                "q" if gs.stack.len() < 256 => gs.stack.push(gs.ctm),
                "Q" => {
                    if let Some(m) = gs.stack.pop() {
                        gs.ctm = m;
                    }
                }
                "cm" => {
                    if let Some(m) = matrix_of(o) {
                        gs.ctm = mul(&m, &gs.ctm);
                    }
                }
                "BT" => {
                    gs.tm = IDENTITY;
                    gs.tlm = IDENTITY;
                }
                "Tf" => {
                    gs.size = n(1).unwrap_or(gs.size);
                    if let Some(name) = o.first().and_then(|x| x.as_name().ok()) {
                        gs.font = self.font(scope, name, fonts);
                    }
                }
                "TL" => gs.leading = n(0).unwrap_or(gs.leading),
                "Tc" => gs.char_spacing = n(0).unwrap_or(0.0),
                "Tw" => gs.word_spacing = n(0).unwrap_or(0.0),
                "Tz" => gs.hscale = n(0).unwrap_or(100.0) / 100.0,
                "Ts" => gs.rise = n(0).unwrap_or(0.0),
                "Td" | "TD" => {
                    let (tx, ty) = (n(0).unwrap_or(0.0), n(1).unwrap_or(0.0));
                    if op.operator == "TD" {
                        gs.leading = -ty;
                    }
                    gs.tlm = mul(&[1.0, 0.0, 0.0, 1.0, tx, ty], &gs.tlm);
                    gs.tm = gs.tlm;
                }
                "Tm" => {
                    if let Some(m) = matrix_of(o) {
                        gs.tlm = m;
                        gs.tm = m;
                    }
                }
                "T*" => next_line(gs),
                "Tj" => {
                    if let Some(lopdf::Object::String(s, _)) = o.first() {
                        self.show(gs, s);
                    }
                }
                "'" => {
                    next_line(gs);
                    if let Some(lopdf::Object::String(s, _)) = o.first() {
                        self.show(gs, s);
                    }
                }
                "\"" => {
                    gs.word_spacing = n(0).unwrap_or(gs.word_spacing);
                    gs.char_spacing = n(1).unwrap_or(gs.char_spacing);
                    next_line(gs);
                    if let Some(lopdf::Object::String(s, _)) = o.get(2) {
                        self.show(gs, s);
                    }
                }
                "TJ" => {
                    if let Some(lopdf::Object::Array(items)) = o.first() {
                        for item in items {
                            match item {
                                lopdf::Object::String(s, _) => self.show(gs, s),
                                other => {
                                    if let Some(adj) = num(other) {
                                        let tx = -adj / 1000.0 * gs.size * gs.hscale;
                                        gs.tm = mul(&[1.0, 0.0, 0.0, 1.0, tx, 0.0], &gs.tm);
                                    }
                                }
                            }
                        }
                    }
                }
                "Do" if depth < MAX_PDF_FORM_DEPTH => {
                    if let Some(name) = o.first().and_then(|x| x.as_name().ok()) {
                        self.form(name, fonts, resources, gs, depth);
                    }
                }
                _ => {}
            }
        }
    }

    pub(crate) fn font(
        &mut self,
        scope: usize,
        name: &[u8],
        fonts: &[(Vec<u8>, &'a lopdf::Dictionary)],
    ) -> Option<std::rc::Rc<FontInfo<'a>>> {
        let key = (scope, name.to_vec());
        if let Some(f) = self.font_cache.get(&key) {
            return Some(f.clone());
        }
        let dict = fonts
            .iter()
            .find(|(n, _)| n.as_slice() == name)
            .map(|(_, d)| *d)?;
        let info = std::rc::Rc::new(font_info(self.doc, dict));
        self.font_cache.insert(key, info.clone());
        Some(info)
    }

    /// Run a Form XObject's content in place.
    pub(crate) fn form(
        &mut self,
        name: &[u8],
        fonts: &[(Vec<u8>, &'a lopdf::Dictionary)],
        resources: &[&'a lopdf::Dictionary],
        gs: &mut GState<'a>,
        depth: usize,
    ) {
        self.forms += 1;
        if self.forms > MAX_PDF_FORMS_PER_PAGE {
            return;
        }
        let doc = self.doc;
        let stream = resources.iter().find_map(|r| {
            let xobjects = r
                .get(b"XObject")
                .ok()
                .and_then(|o| deref(doc, o))
                .and_then(|o| o.as_dict().ok())?;
            let s = xobjects
                .get(name)
                .ok()
                .and_then(|o| deref(doc, o))
                .and_then(|o| o.as_stream().ok())?;
            Some(s)
        });
        let Some(stream) = stream else { return };
        if !matches!(
            stream.dict.get(b"Subtype").and_then(|o| o.as_name()),
            Ok(b"Form")
        ) {
            return;
        }
        let Ok(data) = stream
            .decompressed_content_with_limit(MAX_PDF_PAGE_CONTENT_BYTES)
            .or_else(|e| {
                if stream.dict.get(b"Filter").is_err() {
                    Ok(stream.content.clone())
                } else {
                    Err(e)
                }
            })
        else {
            return;
        };
        if !self.budget.take(data.len()) {
            return;
        }
        let mut inner_fonts = Vec::new();
        let mut inner_resources = Vec::new();
        if let Some(r) = stream
            .dict
            .get(b"Resources")
            .ok()
            .and_then(|o| deref(doc, o))
            .and_then(|o| o.as_dict().ok())
        {
            inner_fonts = resource_fonts(doc, r);
            inner_resources.push(r);
        }
        // Names not defined by the form fall back to the page's.
        inner_fonts.extend(fonts.iter().map(|(n, d)| (n.clone(), *d)));
        inner_resources.extend(resources.iter().copied());
        let saved_ctm = gs.ctm;
        let (saved_tm, saved_tlm) = (gs.tm, gs.tlm);
        if let Some(m) = stream
            .dict
            .get(b"Matrix")
            .ok()
            .and_then(|o| o.as_array().ok())
            .and_then(|a| matrix_of(a))
        {
            gs.ctm = mul(&m, &gs.ctm);
        }
        // Fonts cached per nesting depth; a new form at the same depth must not reuse them.
        self.font_cache.retain(|(scope, _), _| *scope <= depth);
        self.run(&data, &inner_fonts, &inner_resources, gs, depth + 1);
        self.font_cache.retain(|(scope, _), _| *scope <= depth);
        gs.ctm = saved_ctm;
        gs.tm = saved_tm;
        gs.tlm = saved_tlm;
    }

    /// Show a string: decide on a separator from where it starts relative to
    /// the previous text, append the decoded text, advance the text matrix.
    pub(crate) fn show(&mut self, gs: &mut GState<'a>, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let m = mul(&mul(&[1.0, 0.0, 0.0, 1.0, 0.0, gs.rise], &gs.tm), &gs.ctm);
        let (x, y) = (m[4], m[5]);
        let scale = (m[2] * m[2] + m[3] * m[3]).sqrt();
        let size = (gs.size.abs() * scale).max(0.1);

        let mut text = String::new();
        let mut advance = 0.0;
        let font = gs.font.clone();
        match font.as_deref() {
            Some(f) => {
                f.decode(bytes, &mut text);
                let step = if f.two_byte { 2 } else { 1 };
                for code in bytes.chunks(step) {
                    let c = code.iter().fold(0u32, |acc, b| (acc << 8) | *b as u32);
                    let mut w = f.width(c) * gs.size + gs.char_spacing;
                    if step == 1 && c == 32 {
                        w += gs.word_spacing;
                    }
                    advance += w * gs.hscale;
                }
            }
            None => {
                latin1_printable(bytes, &mut text);
                advance = bytes.len() as f64 * 0.5 * gs.size * gs.hscale;
            }
        }
        let mut clean = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '\t' | '\u{a0}' => clean.push(' '),
                // Typographic ligatures break word search: spell them out.
                '\u{fb00}' => clean.push_str("ff"),
                '\u{fb01}' => clean.push_str("fi"),
                '\u{fb02}' => clean.push_str("fl"),
                '\u{fb03}' => clean.push_str("ffi"),
                '\u{fb04}' => clean.push_str("ffl"),
                '\u{fb05}' | '\u{fb06}' => clean.push_str("st"),
                c if c.is_control() || c == '\u{feff}' || c == '\u{fffd}' => {}
                c => clean.push(c),
            }
        }
        let text = clean;

        if !text.is_empty() {
            if let Some((lx, ly, lsize)) = self.last {
                let line = size.max(lsize);
                let dy = ly - y;
                if dy.abs() > 0.5 * line {
                    self.out.push('\n');
                    if dy > 1.7 * line {
                        self.out.push('\n');
                    }
                } else {
                    let gap = x - lx;
                    if (gap > 0.15 * line || gap < -0.5 * line)
                        && !self.out.ends_with([' ', '\n'])
                        && !text.starts_with(' ')
                    {
                        self.out.push(' ');
                    }
                }
            }
            self.out.push_str(&text);
        }
        gs.tm = mul(&[1.0, 0.0, 0.0, 1.0, advance, 0.0], &gs.tm);
        if !text.is_empty() {
            let end = mul(&mul(&[1.0, 0.0, 0.0, 1.0, 0.0, gs.rise], &gs.tm), &gs.ctm);
            self.last = Some((end[4], y, size));
        }
    }
}

pub(crate) fn next_line(gs: &mut GState<'_>) {
    gs.tlm = mul(&[1.0, 0.0, 0.0, 1.0, 0.0, -gs.leading], &gs.tlm);
    gs.tm = gs.tlm;
}

pub(crate) fn latin1_printable(bytes: &[u8], out: &mut String) {
    out.extend(
        bytes
            .iter()
            .filter(|b| (0x20..0x7f).contains(*b))
            .map(|&b| b as char),
    );
}


//! Binary and text document formats: turns the raw bytes of an uploaded file
//! (PDF, DOCX, HTML, Markdown or plain text) into text that
//! [`super::parse::parse`] can structure.
//!
//! Pure Rust, no Postgres API. Every failure that the input can cause is an
//! [`FormatError`], never a panic: the PDF and DOCX readers additionally run
//! under [`std::panic::catch_unwind`] so that a bug in a third-party parser
//! hit by a malformed file still comes back as an error.
//!
//! * PDF (`lopdf`): the text layer is read page by page with a small
//!   content-stream interpreter that puts line breaks where the text moves to
//!   a new line, blank lines at larger vertical gaps and between pages, and
//!   spaces where there is a horizontal gap (kerning is not a word gap).
//! * DOCX (`zip` + `quick-xml`): `word/document.xml` is streamed; paragraphs
//!   styled Title / Heading 1–6 (or with an outline level) become Markdown
//!   headings, tables become one `| a | b |` line per row, so the result is
//!   Markdown ([`DocFormat::Markdown`]) whose structure survives
//!   [`super::parse::parse`]. Use [`Extracted::parse`] to parse it with the
//!   right format whatever the file name.
//! * Text: UTF-8 (BOM stripped), UTF-16 LE/BE (with BOM, or obvious without);
//!   a handful of invalid UTF-8 bytes are replaced, more is an error.

use super::parse::{self, DocFormat, ParseError, ParsedDocument};
use std::collections::HashMap;
use std::fmt;
use std::io::Read;

/// Largest decompressed `word/document.xml` accepted (zip-bomb guard).
pub const MAX_DOCX_XML_BYTES: u64 = 200 * 1024 * 1024;
/// Largest decompressed `word/styles.xml` read (it only names the heading styles).
const MAX_DOCX_STYLES_BYTES: u64 = 20 * 1024 * 1024;
/// Largest decompressed content of one PDF page (content streams, fonts' CMaps).
pub const MAX_PDF_PAGE_CONTENT_BYTES: usize = 64 * 1024 * 1024;
/// Stop interpreting a PDF page after this many operators (hostile files).
const MAX_PDF_OPS_PER_PAGE: usize = 5_000_000;
/// How deep Form XObjects may nest inside each other.
const MAX_PDF_FORM_DEPTH: usize = 8;
/// How many Form XObjects one page may run (each run decompresses the form again).
const MAX_PDF_FORMS_PER_PAGE: usize = 2_000;

// ---------------------------------------------------------------------------
// Kinds and detection
// ---------------------------------------------------------------------------

/// What a file is, as far as ingestion is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Pdf,
    Docx,
    Html,
    Markdown,
    Text,
}

impl FileKind {
    /// Short stable name: `"pdf"`, `"docx"`, `"html"`, `"markdown"` or `"text"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            FileKind::Pdf => "pdf",
            FileKind::Docx => "docx",
            FileKind::Html => "html",
            FileKind::Markdown => "markdown",
            FileKind::Text => "text",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const PDF_MAGIC: &[u8] = b"%PDF-";
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const DOCX_MAIN_PART: &str = "word/document.xml";
const OLE2_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

fn extension(file_name: &str) -> Option<String> {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    base.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Offset of `%PDF-` if it is within the first 1024 bytes (the PDF spec allows
/// some junk before the header).
fn pdf_header_offset(bytes: &[u8]) -> Option<usize> {
    let head = &bytes[..bytes.len().min(1024)];
    head.windows(PDF_MAGIC.len()).position(|w| w == PDF_MAGIC)
}

fn is_docx_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(ZIP_MAGIC) && contains(bytes, DOCX_MAIN_PART.as_bytes())
}

/// Decide what a file is: magic bytes first (`%PDF-`, a ZIP holding
/// `word/document.xml`), then the extension, then sniffing the text with
/// [`parse::detect_format`].
pub fn detect(file_name: &str, bytes: &[u8]) -> FileKind {
    if pdf_header_offset(bytes).is_some() {
        return FileKind::Pdf;
    }
    if is_docx_zip(bytes) {
        return FileKind::Docx;
    }
    match extension(file_name).as_deref() {
        Some("pdf") => return FileKind::Pdf,
        Some("docx") | Some("docm") | Some("dotx") | Some("dotm") => return FileKind::Docx,
        _ => {}
    }
    // Sniff a prefix of the decoded text (the extension rules of detect_format
    // come first there too).
    let head = &bytes[..bytes.len().min(64 * 1024)];
    let text = match decode_text_lossy_prefix(head) {
        Some(t) => t,
        None => return FileKind::Text,
    };
    match parse::detect_format(file_name, &text) {
        DocFormat::Html => FileKind::Html,
        DocFormat::Markdown => FileKind::Markdown,
        DocFormat::PlainText => FileKind::Text,
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a file could not be turned into text. Messages name the file, say what
/// is wrong and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Claimed (or sniffed) to be text, but is not valid UTF-8/UTF-16.
    NotText {
        file_name: String,
        invalid_bytes: usize,
        total_bytes: usize,
    },
    /// Claimed to be text, but contains NUL bytes: a binary file.
    BinaryContent { file_name: String, offset: usize },
    /// A recognisable format that is not supported (legacy .doc, images, other ZIPs ...).
    Unsupported {
        file_name: String,
        what: &'static str,
        advice: &'static str,
    },
    /// The PDF is damaged, truncated or not a PDF at all.
    CorruptPdf { file_name: String, detail: String },
    /// The PDF needs a password to be read.
    EncryptedPdf { file_name: String },
    /// The PDF's pages carry no text (scanned, image only).
    NoTextLayer { file_name: String, pages: usize },
    /// The DOCX is not a readable ZIP, or has no `word/document.xml`, or its XML is broken.
    CorruptDocx { file_name: String, detail: String },
    /// A part of the file decompresses to more than the limit (zip bomb guard).
    TooLarge {
        file_name: String,
        part: &'static str,
        limit_bytes: u64,
    },
}

impl FormatError {
    /// The file the error is about.
    pub fn file_name(&self) -> &str {
        match self {
            FormatError::NotText { file_name, .. }
            | FormatError::BinaryContent { file_name, .. }
            | FormatError::Unsupported { file_name, .. }
            | FormatError::CorruptPdf { file_name, .. }
            | FormatError::EncryptedPdf { file_name }
            | FormatError::NoTextLayer { file_name, .. }
            | FormatError::CorruptDocx { file_name, .. }
            | FormatError::TooLarge { file_name, .. } => file_name,
        }
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::NotText { file_name, invalid_bytes, total_bytes } => write!(
                f,
                "document \"{file_name}\" is not UTF-8 text ({invalid_bytes} of {total_bytes} bytes are not valid UTF-8); \
                 convert it to UTF-8 (for example `iconv -f LATIN1 -t UTF-8`) and upload it again"
            ),
            FormatError::BinaryContent { file_name, offset } => write!(
                f,
                "document \"{file_name}\" is a binary file, not text (it contains a NUL byte at byte offset {offset}); \
                 upload it as PDF, DOCX, HTML, Markdown or UTF-8 text"
            ),
            FormatError::Unsupported { file_name, what, advice } => {
                write!(f, "document \"{file_name}\" is {what}, which cannot be ingested; {advice}")
            }
            FormatError::CorruptPdf { file_name, detail } => write!(
                f,
                "PDF \"{file_name}\" is damaged or truncated and cannot be read ({detail}); \
                 check that the upload is complete, or re-export/repair it (e.g. `qpdf in.pdf out.pdf`)"
            ),
            FormatError::EncryptedPdf { file_name } => write!(
                f,
                "PDF \"{file_name}\" is encrypted (password protected); upload a decrypted copy \
                 (e.g. `qpdf --decrypt --password=... in.pdf out.pdf`)"
            ),
            FormatError::NoTextLayer { file_name, pages } => write!(
                f,
                "PDF \"{file_name}\" has no text layer ({pages} page(s), scanned or image-only); \
                 run OCR first (e.g. `ocrmypdf in.pdf out.pdf`) and upload the result"
            ),
            FormatError::CorruptDocx { file_name, detail } => write!(
                f,
                "Word document \"{file_name}\" is damaged or not a .docx file and cannot be read ({detail}); \
                 check that the upload is complete, or open and re-save it as .docx"
            ),
            FormatError::TooLarge { file_name, part, limit_bytes } => write!(
                f,
                "document \"{file_name}\": {part} decompresses to more than {} MB, the limit \
                 (it may be a zip bomb); split the document into smaller files",
                limit_bytes / (1024 * 1024)
            ),
        }
    }
}

impl std::error::Error for FormatError {}

// ---------------------------------------------------------------------------
// Extraction entry point
// ---------------------------------------------------------------------------

/// Text extracted from a file, ready for [`parse::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub kind: FileKind,
    pub text: String,
    /// The format `text` is written in (Markdown for DOCX, plain text for PDF).
    pub text_format: DocFormat,
}

impl Extracted {
    /// [`parse::parse`] the text as `text_format`, whatever `file_name`'s
    /// extension says (a `.docx` name would otherwise be sniffed). Errors
    /// carry `file_name`.
    pub fn parse(&self, file_name: &str) -> Result<ParsedDocument, ParseError> {
        let forced = match self.text_format {
            DocFormat::Markdown => "document.md",
            DocFormat::Html => "document.html",
            DocFormat::PlainText => "document.txt",
        };
        parse::parse(forced, &self.text).map_err(|e| match e {
            ParseError::Empty { .. } => ParseError::Empty {
                file_name: file_name.to_string(),
            },
            ParseError::NulCharacter { offset, .. } => ParseError::NulCharacter {
                file_name: file_name.to_string(),
                offset,
            },
        })
    }
}

/// Turn a file's bytes into text. The kind comes from [`detect`].
pub fn extract(file_name: &str, bytes: &[u8]) -> Result<Extracted, FormatError> {
    let kind = detect(file_name, bytes);
    match kind {
        FileKind::Pdf => {
            let text = guarded(file_name, kind, || extract_pdf(file_name, bytes))?;
            Ok(Extracted {
                kind,
                text,
                text_format: DocFormat::PlainText,
            })
        }
        FileKind::Docx => {
            let text = guarded(file_name, kind, || extract_docx(file_name, bytes))?;
            Ok(Extracted {
                kind,
                text,
                text_format: DocFormat::Markdown,
            })
        }
        FileKind::Html | FileKind::Markdown | FileKind::Text => {
            let text = decode_text(file_name, bytes)?;
            let text_format = match kind {
                FileKind::Html => DocFormat::Html,
                FileKind::Markdown => DocFormat::Markdown,
                _ => parse::detect_format(file_name, &text),
            };
            Ok(Extracted {
                kind,
                text,
                text_format,
            })
        }
    }
}

/// Run a third-party parser so that a panic becomes an error.
fn guarded<F>(file_name: &str, kind: FileKind, f: F) -> Result<String, FormatError>
where
    F: FnOnce() -> Result<String, FormatError> + std::panic::UnwindSafe,
{
    match std::panic::catch_unwind(f) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            let detail = format!("the parser failed on it: {msg}");
            Err(match kind {
                FileKind::Docx => CorruptDocx {
                    file_name: file_name.to_string(),
                    detail,
                },
                _ => CorruptPdf {
                    file_name: file_name.to_string(),
                    detail,
                },
            })
        }
    }
}

use FormatError::{CorruptDocx, CorruptPdf};

// ---------------------------------------------------------------------------
// Text decoding
// ---------------------------------------------------------------------------

/// Is the number of bad bytes small enough to just replace them?
/// At most 1 in 1000 bytes, and always one for files up to 1000 bytes.
fn tolerable(invalid: usize, total: usize) -> bool {
    invalid.saturating_mul(1000) <= total.max(1000)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Utf16 {
    Le,
    Be,
}

/// UTF-16 by BOM, or obvious BOM-less UTF-16 (mostly-ASCII text where every
/// other byte is NUL). Returns the endianness and the BOM length.
fn utf16_kind(bytes: &[u8]) -> Option<(Utf16, usize)> {
    if bytes.starts_with(&[0xFF, 0xFE]) {
        return Some((Utf16::Le, 2));
    }
    if bytes.starts_with(&[0xFE, 0xFF]) {
        return Some((Utf16::Be, 2));
    }
    let head = &bytes[..bytes.len().min(4096) & !1];
    if head.len() < 8 {
        return None;
    }
    let pairs = head.len() / 2;
    let even_nul = head.iter().step_by(2).filter(|&&b| b == 0).count();
    let odd_nul = head.iter().skip(1).step_by(2).filter(|&&b| b == 0).count();
    if odd_nul * 10 >= pairs * 9 && even_nul * 20 <= pairs {
        Some((Utf16::Le, 0))
    } else if even_nul * 10 >= pairs * 9 && odd_nul * 20 <= pairs {
        Some((Utf16::Be, 0))
    } else {
        None
    }
}

/// Decode UTF-16; returns the text and the number of bad code units/bytes.
fn decode_utf16(bytes: &[u8], endian: Utf16) -> (String, usize) {
    let units = bytes.chunks_exact(2).map(|c| match endian {
        Utf16::Le => u16::from_le_bytes([c[0], c[1]]),
        Utf16::Be => u16::from_be_bytes([c[0], c[1]]),
    });
    let mut out = String::with_capacity(bytes.len() / 2);
    let mut bad = bytes.len() % 2;
    for r in char::decode_utf16(units) {
        match r {
            Ok(c) => out.push(c),
            Err(_) => {
                bad += 2;
                out.push('\u{fffd}');
            }
        }
    }
    (out, bad)
}

/// Number of bytes that are not part of valid UTF-8 sequences.
fn invalid_utf8_bytes(mut bytes: &[u8]) -> usize {
    let mut bad = 0;
    loop {
        match std::str::from_utf8(bytes) {
            Ok(_) => return bad,
            Err(e) => {
                let skip = e.error_len().unwrap_or(bytes.len() - e.valid_up_to());
                bad += skip;
                let next = e.valid_up_to() + skip;
                if next >= bytes.len() {
                    return bad;
                }
                bytes = &bytes[next..];
            }
        }
    }
}

/// Decode a text file: UTF-8 (BOM stripped) or UTF-16; NUL bytes and
/// non-text are errors.
pub fn decode_text(file_name: &str, bytes: &[u8]) -> Result<String, FormatError> {
    if let Some(err) = known_binary(file_name, bytes) {
        return Err(err);
    }
    if let Some((endian, bom)) = utf16_kind(bytes) {
        let (text, bad) = decode_utf16(&bytes[bom..], endian);
        if !tolerable(bad, bytes.len()) {
            return Err(FormatError::NotText {
                file_name: file_name.to_string(),
                invalid_bytes: bad,
                total_bytes: bytes.len(),
            });
        }
        if let Some(pos) = text.find('\0') {
            // Report the byte offset in the file.
            let units = text[..pos].encode_utf16().count();
            return Err(FormatError::BinaryContent {
                file_name: file_name.to_string(),
                offset: bom + units * 2,
            });
        }
        return Ok(text);
    }
    let body = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF][..]).unwrap_or(bytes);
    if let Some(pos) = body.iter().position(|&b| b == 0) {
        return Err(FormatError::BinaryContent {
            file_name: file_name.to_string(),
            offset: pos + (bytes.len() - body.len()),
        });
    }
    match std::str::from_utf8(body) {
        Ok(s) => Ok(s.to_string()),
        Err(_) => {
            let bad = invalid_utf8_bytes(body);
            if tolerable(bad, body.len()) {
                Ok(String::from_utf8_lossy(body).into_owned())
            } else {
                Err(FormatError::NotText {
                    file_name: file_name.to_string(),
                    invalid_bytes: bad,
                    total_bytes: body.len(),
                })
            }
        }
    }
}

/// Best-effort decode of a prefix, for sniffing only. `None` if it is binary.
fn decode_text_lossy_prefix(head: &[u8]) -> Option<String> {
    if let Some((endian, bom)) = utf16_kind(head) {
        return Some(decode_utf16(&head[bom..], endian).0);
    }
    if head.contains(&0) {
        return None;
    }
    Some(String::from_utf8_lossy(head).into_owned())
}

/// Recognisable binary formats that are not supported, with advice.
fn known_binary(file_name: &str, bytes: &[u8]) -> Option<FormatError> {
    let (what, advice) = if bytes.starts_with(OLE2_MAGIC) {
        (
            "a legacy Office file (.doc/.xls/.ppt) or a password-protected Office document",
            "remove any password and save it as .docx or PDF",
        )
    } else if bytes.starts_with(ZIP_MAGIC) {
        (
            "a ZIP archive that is not a Word .docx (no word/document.xml; e.g. .odt, .xlsx, .pptx or .zip)",
            "save or export it as .docx, PDF or text",
        )
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n")
        || bytes.starts_with(&[0xFF, 0xD8, 0xFF])
        || bytes.starts_with(b"GIF8")
        || bytes.starts_with(b"II*\0")
        || bytes.starts_with(b"MM\0*")
    {
        (
            "an image",
            "run OCR on it and upload the text or a searchable PDF",
        )
    } else if bytes.starts_with(b"{\\rtf") {
        ("an RTF document", "save it as .docx or PDF")
    } else {
        return None;
    };
    Some(FormatError::Unsupported {
        file_name: file_name.to_string(),
        what,
        advice,
    })
}

// ---------------------------------------------------------------------------
// PDF
// ---------------------------------------------------------------------------

fn extract_pdf(file_name: &str, bytes: &[u8]) -> Result<String, FormatError> {
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
    let pages = doc.get_pages();
    if pages.is_empty() {
        return Err(corrupt("no pages could be found in it".into()));
    }
    let mut out = String::new();
    let mut first_err: Option<String> = None;
    let mut ok_pages = 0usize;
    for (&number, &page_id) in &pages {
        match pdf_page_text(&doc, page_id) {
            Ok(t) => {
                ok_pages += 1;
                let t = tidy_lines(&t);
                if !t.is_empty() {
                    if !out.is_empty() {
                        out.push_str("\n\n");
                    }
                    out.push_str(&t);
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
fn tidy_lines(s: &str) -> String {
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

type Matrix = [f64; 6];
const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

/// `a × b` for PDF's row-vector affine matrices.
fn mul(a: &Matrix, b: &Matrix) -> Matrix {
    [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
        a[4] * b[0] + a[5] * b[2] + b[4],
        a[4] * b[1] + a[5] * b[3] + b[5],
    ]
}

fn num(o: &lopdf::Object) -> Option<f64> {
    match o {
        lopdf::Object::Integer(i) => Some(*i as f64),
        lopdf::Object::Real(r) => Some(*r as f64).filter(|v| v.is_finite()),
        _ => None,
    }
}

fn matrix_of(ops: &[lopdf::Object]) -> Option<Matrix> {
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
struct FontInfo<'a> {
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
    fn decode(&self, bytes: &[u8], out: &mut String) {
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

    fn width(&self, code: u32) -> f64 {
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

fn deref<'a>(doc: &'a lopdf::Document, o: &'a lopdf::Object) -> Option<&'a lopdf::Object> {
    doc.dereference(o).ok().map(|(_, o)| o)
}

fn font_info<'a>(doc: &'a lopdf::Document, font: &'a lopdf::Dictionary) -> FontInfo<'a> {
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
fn resource_fonts<'a>(
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

struct PdfText<'a> {
    doc: &'a lopdf::Document,
    out: String,
    /// Where the last shown text ended (device space) and its font size.
    last: Option<(f64, f64, f64)>,
    ops: usize,
    forms: usize,
    font_cache: HashMap<(usize, Vec<u8>), std::rc::Rc<FontInfo<'a>>>,
}

/// Graphics and text state of the interpreter.
struct GState<'a> {
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

fn pdf_page_text(doc: &lopdf::Document, page_id: lopdf::ObjectId) -> Result<String, String> {
    let content = doc
        .get_page_content_with_limit(page_id, MAX_PDF_PAGE_CONTENT_BYTES)
        .map_err(|e| e.to_string())?;
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

impl<'a> PdfText<'a> {
    fn run(
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
            if self.ops > MAX_PDF_OPS_PER_PAGE {
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

    fn font(
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
    fn form(
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
    fn show(&mut self, gs: &mut GState<'a>, bytes: &[u8]) {
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

fn next_line(gs: &mut GState<'_>) {
    gs.tlm = mul(&[1.0, 0.0, 0.0, 1.0, 0.0, -gs.leading], &gs.tlm);
    gs.tm = gs.tlm;
}

fn latin1_printable(bytes: &[u8], out: &mut String) {
    out.extend(
        bytes
            .iter()
            .filter(|b| (0x20..0x7f).contains(*b))
            .map(|&b| b as char),
    );
}

// ---------------------------------------------------------------------------
// DOCX
// ---------------------------------------------------------------------------

const W_NS: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";
const W_NS_STRICT: &str = "http://purl.oclc.org/ooxml/wordprocessingml/main";
const MC_NS: &str = "http://schemas.openxmlformats.org/markup-compatibility/2006";

fn read_zip_part(
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

fn extract_docx(file_name: &str, bytes: &[u8]) -> Result<String, FormatError> {
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
    let xml = read_zip_part(
        &mut archive,
        DOCX_MAIN_PART,
        MAX_DOCX_XML_BYTES,
        file_name,
        "word/document.xml",
    )?
    .ok_or_else(|| corrupt("the archive has no word/document.xml".into()))?;
    // Styles only name the heading styles; a missing or broken styles.xml is not fatal.
    let styles = match read_zip_part(
        &mut archive,
        "word/styles.xml",
        MAX_DOCX_STYLES_BYTES,
        file_name,
        "word/styles.xml",
    ) {
        Ok(Some(s)) => docx_heading_styles(&s),
        Ok(None) | Err(CorruptDocx { .. }) => HashMap::new(),
        Err(e) => return Err(e),
    };
    docx_body_markdown(&xml, &styles)
        .map_err(|e| corrupt(format!("word/document.xml is not well-formed XML: {e}")))
}

fn is_w(ns: &quick_xml::name::ResolveResult<'_>) -> bool {
    match ns {
        quick_xml::name::ResolveResult::Bound(n) => {
            let n: &str = n.as_ref();
            n == W_NS || n == W_NS_STRICT
        }
        _ => false,
    }
}

fn is_mc(ns: &quick_xml::name::ResolveResult<'_>) -> bool {
    match ns {
        quick_xml::name::ResolveResult::Bound(n) => {
            let n: &str = n.as_ref();
            n == MC_NS
        }
        _ => false,
    }
}

/// The value of the `w:val` (any prefix) attribute.
fn attr_val(e: &quick_xml::events::BytesStart<'_>, local: &str) -> Option<String> {
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
fn heading_level_from_name(name: &str) -> Option<u8> {
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
fn docx_heading_styles(xml: &[u8]) -> HashMap<String, u8> {
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
fn heading_level_from_id(id: &str) -> Option<u8> {
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
struct Para {
    text: String,
    style_level: Option<u8>,
    outline_level: Option<u8>,
    list: bool,
}

enum Frame {
    Para(Para),
    Table(Vec<Vec<String>>),
    Row(Vec<String>),
    Cell(String),
}

/// Escape what Markdown would otherwise interpret, so the text parses back
/// as itself. Leading whitespace of each line is dropped (indented code).
fn md_escape(s: &str, heading: bool) -> String {
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

fn push_block(blocks: &mut Vec<String>, frames: &mut [Frame], text: String) {
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

fn render_table(rows: &[Vec<String>]) -> String {
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
fn docx_body_markdown(xml: &[u8], styles: &HashMap<String, u8>) -> Result<String, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::NsReader::from_reader(xml);
    let mut buf = Vec::new();
    let mut blocks: Vec<String> = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    let mut skip_depth = 0usize;
    let mut in_t = false;
    let mut run_depth = 0usize;
    let mut ppr_depth = 0usize;
    loop {
        let (ns, ev) = reader
            .read_resolved_event_into(&mut buf)
            .map_err(|e| e.to_string())?;
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
                    p.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) if in_t => {
                if let Some(Frame::Para(p)) = frames.last_mut() {
                    p.text.push_str(&t.into_inner());
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
    Ok(blocks.join("\n\n"))
}

/// Self-closing (or content-less) elements: tabs, breaks, paragraph properties.
fn docx_empty_element(
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

fn render_para(p: &Para, in_cell: bool) -> String {
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

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../../tests/fixtures/formats/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let alt = format!("/work/main/tests/fixtures/formats/{name}");
        std::fs::read(&path)
            .or_else(|_| std::fs::read(&alt))
            .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
    }

    #[test]
    fn kind_names() {
        assert_eq!(FileKind::Pdf.as_str(), "pdf");
        assert_eq!(FileKind::Docx.as_str(), "docx");
        assert_eq!(FileKind::Html.as_str(), "html");
        assert_eq!(FileKind::Markdown.as_str(), "markdown");
        assert_eq!(FileKind::Text.as_str(), "text");
    }

    #[test]
    fn detection() {
        let pdf = fixture("multipage.pdf");
        let docx = fixture("sample.docx");
        // Magic wins over a misleading name.
        assert_eq!(detect("report.txt", &pdf), FileKind::Pdf);
        assert_eq!(detect("noext", &docx), FileKind::Docx);
        assert_eq!(detect("x.zip", &docx), FileKind::Docx);
        // Then the extension.
        assert_eq!(detect("broken.pdf", b"garbage"), FileKind::Pdf);
        assert_eq!(detect("broken.DOCX", b"garbage"), FileKind::Docx);
        assert_eq!(detect("a.md", b"plain"), FileKind::Markdown);
        assert_eq!(detect("a.htm", b"# x"), FileKind::Html);
        // Then sniffing.
        assert_eq!(detect("noext", b"<!DOCTYPE html><p>x"), FileKind::Html);
        assert_eq!(detect("noext", b"# Title\n\ntext"), FileKind::Markdown);
        assert_eq!(detect("noext", b"just words"), FileKind::Text);
        assert_eq!(
            detect("noext", &fixture("utf8_bom.md")[..]),
            FileKind::Markdown
        );
        assert_eq!(detect("", b""), FileKind::Text);
    }

    #[test]
    fn pdf_multipage_text() {
        let e = extract("multipage.pdf", &fixture("multipage.pdf")).unwrap();
        assert_eq!(e.kind, FileKind::Pdf);
        assert_eq!(e.text_format, DocFormat::PlainText);
        let t = &e.text;
        for s in [
            "Chapter One",
            "The quick brown fox jumps over the lazy dog.",
            "PostgreSQL stores tables in heap pages.",
            "Vacuum reclaims storage occupied by dead tuples.",
            "The third page ends the document.",
            // groff sets fi/ffl/ff as ligature glyphs; they come back as letters.
            "Efficient offline staff files.",
        ] {
            assert!(t.contains(s), "missing {s:?} in {t:?}");
        }
        // Lines stay lines, pages are separated by a blank line, in order.
        assert!(t.contains("heap pages.\n\nVacuum reclaims"), "{t:?}");
        assert!(t.contains("dead tuples.\n\nThe third page"), "{t:?}");
        assert!(t.starts_with("Chapter One\n"), "{t:?}");
        let d = e.parse("multipage.pdf").unwrap();
        assert_eq!(d.format, DocFormat::PlainText);
    }

    #[test]
    fn pdf_other_producer() {
        let e = extract("gs.pdf", &fixture("multipage_gs.pdf")).unwrap();
        assert_eq!(
            e.text,
            "Ghostscript page one says hello.\n\nGhostscript page two says goodbye."
        );
    }

    #[test]
    fn pdf_errors() {
        let err = extract("secret.pdf", &fixture("encrypted.pdf")).unwrap_err();
        assert_eq!(
            err,
            FormatError::EncryptedPdf {
                file_name: "secret.pdf".into()
            }
        );
        assert!(
            err.to_string().contains("secret.pdf") && err.to_string().contains("decrypted copy"),
            "{err}"
        );

        let err = extract("scan.pdf", &fixture("scanned.pdf")).unwrap_err();
        assert_eq!(
            err,
            FormatError::NoTextLayer {
                file_name: "scan.pdf".into(),
                pages: 3
            }
        );
        assert!(err.to_string().contains("run OCR first"), "{err}");

        let err = extract("cut.pdf", &fixture("truncated.pdf")).unwrap_err();
        assert!(
            matches!(err, FormatError::CorruptPdf { ref file_name, .. } if file_name == "cut.pdf"),
            "{err:?}"
        );
        assert!(err.to_string().contains("truncated"), "{err}");

        let err = extract("fake.pdf", &fixture("not_a_pdf.pdf")).unwrap_err();
        assert!(matches!(err, FormatError::CorruptPdf { .. }), "{err:?}");

        let err = extract("renamed.pdf", b"hello, I am text").unwrap_err();
        assert!(
            matches!(err, FormatError::CorruptPdf { ref detail, .. } if detail.contains("not a PDF")),
            "{err:?}"
        );
    }

    #[test]
    fn pdf_owner_password_only_is_readable() {
        // Encrypted with an empty user password: readers open it without asking.
        let e = extract("restricted.pdf", &fixture("owner_only.pdf")).unwrap();
        assert!(
            e.text
                .contains("Vacuum reclaims storage occupied by dead tuples."),
            "{}",
            e.text
        );
    }

    /// A PDF built in memory: text in a Form XObject, a TJ array with a word
    /// gap and with kerning, separate Tj runs on one line.
    #[test]
    fn pdf_forms_and_spacing() {
        use lopdf::{Dictionary, Document, Object, Stream};
        let mut doc = Document::with_version("1.5");
        let mut font = Dictionary::new();
        font.set("Type", Object::Name(b"Font".to_vec()));
        font.set("Subtype", Object::Name(b"Type1".to_vec()));
        font.set("BaseFont", Object::Name(b"Courier".to_vec()));
        font.set("FirstChar", Object::Integer(32));
        font.set("Widths", Object::Array(vec![Object::Integer(600); 95]));
        let font_id = doc.add_object(font);
        let mut fonts = Dictionary::new();
        fonts.set("F1", Object::Reference(font_id));
        let mut form_res = Dictionary::new();
        form_res.set("Font", Object::Dictionary(fonts.clone()));
        let mut form_dict = Dictionary::new();
        form_dict.set("Type", Object::Name(b"XObject".to_vec()));
        form_dict.set("Subtype", Object::Name(b"Form".to_vec()));
        form_dict.set(
            "BBox",
            Object::Array(vec![0.into(), 0.into(), 600.into(), 800.into()]),
        );
        form_dict.set("Resources", Object::Dictionary(form_res));
        let form_id = doc.add_object(Stream::new(
            form_dict,
            b"BT /F1 10 Tf 72 500 Td (Text inside a form.) Tj ET".to_vec(),
        ));
        let mut xobjects = Dictionary::new();
        xobjects.set("X1", Object::Reference(form_id));
        let mut res = Dictionary::new();
        res.set("Font", Object::Dictionary(fonts));
        res.set("XObject", Object::Dictionary(xobjects));
        let content = b"BT /F1 10 Tf 72 700 Td [(Kern)-40(ed)-700(gap)] TJ (.) Tj 30 0 Td (far) Tj 0 -12 Td (next line) Tj ET /X1 Do".to_vec();
        let content_id = doc.add_object(Stream::new(Dictionary::new(), content));
        let pages_id = doc.new_object_id();
        let mut page = Dictionary::new();
        page.set("Type", Object::Name(b"Page".to_vec()));
        page.set("Parent", Object::Reference(pages_id));
        page.set("Contents", Object::Reference(content_id));
        page.set("Resources", Object::Dictionary(res));
        page.set(
            "MediaBox",
            Object::Array(vec![0.into(), 0.into(), 600.into(), 800.into()]),
        );
        let page_id = doc.add_object(page);
        let mut pages = Dictionary::new();
        pages.set("Type", Object::Name(b"Pages".to_vec()));
        pages.set("Kids", Object::Array(vec![Object::Reference(page_id)]));
        pages.set("Count", Object::Integer(1));
        doc.objects.insert(pages_id, Object::Dictionary(pages));
        let mut catalog = Dictionary::new();
        catalog.set("Type", Object::Name(b"Catalog".to_vec()));
        catalog.set("Pages", Object::Reference(pages_id));
        let catalog_id = doc.add_object(catalog);
        doc.trailer.set("Root", Object::Reference(catalog_id));
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).unwrap();
        let e = extract("built.pdf", &bytes).unwrap();
        assert_eq!(e.text, "Kerned gap. far\nnext line\n\nText inside a form.");
    }

    #[test]
    fn pdf_garbage_never_panics() {
        let good = fixture("multipage.pdf");
        let mut seed: u64 = 0x2545F4914F6CDD1D;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..60 {
            let mut b = good.clone();
            // Flip some bytes, or cut the file somewhere.
            if round % 3 == 0 {
                let cut = (next() as usize) % b.len();
                b.truncate(cut.max(6));
            } else {
                for _ in 0..(1 + next() % 20) {
                    let i = (next() as usize) % b.len();
                    b[i] = next() as u8;
                }
            }
            match extract("fuzz.pdf", &b) {
                Ok(e) => assert!(!e.text.contains('\0')),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn docx_structure() {
        let e = extract("handbook.docx", &fixture("sample.docx")).unwrap();
        assert_eq!(e.kind, FileKind::Docx);
        assert_eq!(e.text_format, DocFormat::Markdown);
        let t = &e.text;
        assert!(
            t.starts_with(
                "# Operations Handbook\n\nThis handbook explains routine database maintenance."
            ),
            "{t}"
        );
        assert!(t.contains("\n# Backups\n"), "{t}");
        assert!(t.contains("\n## Restore drills\n"), "{t}");
        assert!(t.contains("\n# Monitoring\n"), "{t}");
        assert!(
            t.contains("Practice a restore once a month.\\\nSecond line after a break."),
            "{t}"
        );
        assert!(t.contains("Column A\tColumn B"), "{t}");
        assert!(t.contains("| Metric | Warn | Critical |\n| --- | --- | --- |\n| lag_seconds | 30 | 300 |\n| disk_used_pct | 80 | 95 |"), "{t}");
        assert!(t.ends_with("Text after the table."), "{t}");

        // The structure survives parse::parse, by the file name too (the
        // text starts with a heading, so it sniffs as Markdown).
        for d in [
            e.parse("handbook.docx").unwrap(),
            parse::parse("handbook.docx", &e.text).unwrap(),
        ] {
            assert_eq!(d.format, DocFormat::Markdown);
            assert_eq!(d.title.as_deref(), Some("Operations Handbook"));
            let find = |needle: &str| {
                d.sections
                    .iter()
                    .find(|s| s.text.contains(needle))
                    .unwrap_or_else(|| panic!("{needle} not in {d:?}"))
            };
            assert_eq!(find("base backup").headings, vec!["Backups".to_string()]);
            let drills = find("Practice a restore");
            assert_eq!(
                drills.headings,
                vec!["Backups".to_string(), "Restore drills".to_string()]
            );
            assert!(
                drills.text.contains("once a month.\nSecond line"),
                "{:?}",
                drills.text
            );
            let mon = find("replication lag");
            assert_eq!(mon.headings, vec!["Monitoring".to_string()]);
            assert!(
                mon.text.contains(
                    "Metric | Warn | Critical\nlag_seconds | 30 | 300\ndisk_used_pct | 80 | 95"
                ),
                "{:?}",
                mon.text
            );
            assert_eq!(
                find("routine database").headings,
                vec!["Operations Handbook".to_string()]
            );
        }
    }

    #[test]
    fn docx_errors() {
        let err = extract("broken.docx", &fixture("corrupt.docx")).unwrap_err();
        assert!(
            matches!(err, FormatError::CorruptDocx { ref file_name, .. } if file_name == "broken.docx"),
            "{err:?}"
        );
        assert!(err.to_string().contains("broken.docx"), "{err}");

        let err = extract("zip.docx", &fixture("not_word.docx")).unwrap_err();
        assert!(
            matches!(err, FormatError::CorruptDocx { ref detail, .. } if detail.contains("word/document.xml")),
            "{err:?}"
        );

        let err = extract("x.docx", b"not a zip at all").unwrap_err();
        assert!(matches!(err, FormatError::CorruptDocx { .. }), "{err:?}");

        // A ZIP without word/document.xml under another name is not a docx.
        let err = extract("archive.zip", &fixture("not_word.docx")).unwrap_err();
        assert!(matches!(err, FormatError::Unsupported { .. }), "{err:?}");
    }

    /// Build a stored (uncompressed) ZIP by hand.
    fn stored_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
        fn crc32(data: &[u8]) -> u32 {
            let mut crc = 0xFFFF_FFFFu32;
            for &b in data {
                crc ^= b as u32;
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in files {
            let offset = out.len() as u32;
            let crc = crc32(data);
            let mut h = Vec::new();
            h.extend_from_slice(&[0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            h.extend_from_slice(&crc.to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes());
            h.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&h);
            out.extend_from_slice(data);
            central
                .extend_from_slice(&[0x50, 0x4b, 0x01, 0x02, 20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend_from_slice(&crc.to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 12]);
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0]);
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    #[test]
    fn docx_handmade_xml() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"
  xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"
  xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"><w:body>
<w:p><w:pPr><w:pStyle w:val="berschrift1"/></w:pPr><w:r><w:t>Einleitung {x}</w:t></w:r></w:p>
<w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr><w:r><w:t xml:space="preserve">Use *stars*, &lt;table_name&gt; &amp; a_b AT&amp;T &amp;copy; </w:t></w:r><w:del><w:r><w:delText>gone</w:delText></w:r></w:del><w:r><w:instrText>PAGEREF x</w:instrText><w:t>kept</w:t></w:r></w:p>
<w:p><w:r><w:t>---</w:t></w:r></w:p>
<w:p><w:pPr><w:outlineLvl w:val="1"/></w:pPr><w:r><w:t>Direct outline</w:t></w:r></w:p>
<w:p><w:pPr><w:numPr><w:ilvl w:val="0"/></w:numPr></w:pPr><w:r><w:t>bullet item</w:t></w:r></w:p>
<w:p><w:r><mc:AlternateContent><mc:Choice><w:txbxContent><w:p><w:r><w:t>in a text box</w:t></w:r></w:p></w:txbxContent></mc:Choice><mc:Fallback><w:txbxContent><w:p><w:r><w:t>in a text box</w:t></w:r></w:p></w:txbxContent></mc:Fallback></mc:AlternateContent><w:t>outer</w:t></w:r></w:p>
<w:tbl><w:tr><w:tc><w:p><w:r><w:t>a|b</w:t></w:r></w:p><w:p><w:r><w:t>second para</w:t></w:r></w:p></w:tc><w:tc><w:tbl><w:tr><w:tc><w:p><w:r><w:t>inner</w:t></w:r></w:p></w:tc></w:tr></w:tbl></w:tc></w:tr>
<w:tr><w:tc><w:p><w:r><w:t>only one</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
<a:p><a:r><a:t>drawingml text is not body text</a:t></a:r></a:p>
<w:p><w:r><w:t>&#x263A; end</w:t></w:r></w:p>
</w:body></w:document>"#;
        let styles = r#"<w:styles xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">
<w:style w:type="paragraph" w:styleId="berschrift1"><w:name w:val="heading 1"/></w:style>
</w:styles>"#;
        let zip = stored_zip(&[
            ("word/document.xml", xml.as_bytes()),
            ("word/styles.xml", styles.as_bytes()),
        ]);
        let e = extract("de.docx", &zip).unwrap();
        let t = &e.text;
        assert!(t.starts_with("# Einleitung \\{x\\}\n\n"), "{t}");
        assert!(
            t.contains("Use \\*stars\\*, \\<table_name> & a_b AT\\&T \\&copy; kept"),
            "{t}"
        );
        assert!(
            !t.contains("gone") && !t.contains("PAGEREF") && !t.contains("drawingml"),
            "{t}"
        );
        assert!(t.contains("\n\n\\---\n\n"), "{t}");
        assert!(t.contains("\n## Direct outline\n"), "{t}");
        assert!(t.contains("\n- bullet item\n"), "{t}");
        assert_eq!(t.matches("in a text box").count(), 1, "{t}");
        assert!(
            t.contains("| a\\|b second para | inner |\n| --- | --- |\n| only one |  |"),
            "{t}"
        );
        assert!(t.ends_with("☺ end"), "{t}");

        let d = e.parse("de.docx").unwrap();
        let all: String = d
            .sections
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            all.contains("Use *stars*, <table_name> & a_b AT&T &copy; kept"),
            "{all}"
        );
        assert!(all.contains("---"), "{all}");
        assert!(all.contains("a|b second para | inner"), "{all}");
        assert_eq!(d.sections[0].headings, vec!["Einleitung {x}".to_string()]);

        // Broken XML → CorruptDocx; stored zip without styles is fine.
        let bad = stored_zip(&[(
            "word/document.xml",
            b"<w:document xmlns:w='x'><w:body><w:p></w:body>",
        )]);
        assert!(matches!(
            extract("bad.docx", &bad),
            Err(FormatError::CorruptDocx { .. })
        ));
        let no_styles = stored_zip(&[(
            "word/document.xml",
            br#"<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:pPr><w:pStyle w:val="Heading2"/></w:pPr><w:r><w:t>H</w:t></w:r></w:p></w:body></w:document>"#,
        )]);
        assert_eq!(extract("n.docx", &no_styles).unwrap().text, "## H");
    }

    #[test]
    fn docx_zip_bomb_guard() {
        // A deflated document.xml whose declared size is over the limit is
        // refused before inflating. Patch the sizes of a stored entry.
        let mut z = stored_zip(&[("word/document.xml", b"<x/>")]);
        let big = (MAX_DOCX_XML_BYTES + 1) as u32;
        // local header uncompressed size at 22, central directory's at cd+24
        z[22..26].copy_from_slice(&big.to_le_bytes());
        let cd = z
            .windows(4)
            .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
            .unwrap();
        z[cd + 24..cd + 28].copy_from_slice(&big.to_le_bytes());
        match extract("bomb.docx", &z) {
            Err(FormatError::TooLarge { part, .. }) => assert_eq!(part, "word/document.xml"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn text_encodings() {
        let expect = "Encoding test: café, naïve, Ωmega, 日本語.\nSecond line.\n";
        for f in ["utf16le.txt", "utf16be.txt"] {
            let e = extract(f, &fixture(f)).unwrap();
            assert_eq!(e.kind, FileKind::Text);
            assert_eq!(e.text, expect, "{f}");
            assert_eq!(e.text_format, DocFormat::PlainText);
        }
        // BOM-less UTF-16LE
        let raw: Vec<u8> = "Hello UTF-16 without a BOM, plain ASCII."
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(
            extract("nobom.txt", &raw).unwrap().text,
            "Hello UTF-16 without a BOM, plain ASCII."
        );

        let e = extract("bom.md", &fixture("utf8_bom.md")).unwrap();
        assert_eq!(e.kind, FileKind::Markdown);
        assert_eq!(e.text_format, DocFormat::Markdown);
        assert!(e.text.starts_with("# Bom Heading\n"), "{:?}", e.text);
        let d = e.parse("bom.md").unwrap();
        assert_eq!(d.title.as_deref(), Some("Bom Heading"));

        let e = extract("page.html", b"<html><body><h1>T</h1><p>x</p></body></html>").unwrap();
        assert_eq!((e.kind, e.text_format), (FileKind::Html, DocFormat::Html));
    }

    #[test]
    fn text_errors() {
        let err = extract("latin1.txt", &fixture("latin1.txt")).unwrap_err();
        assert!(matches!(err, FormatError::NotText { .. }), "{err:?}");
        assert!(
            err.to_string().contains("is not UTF-8 text")
                && err.to_string().contains("convert it to UTF-8"),
            "{err}"
        );

        let err = extract("bin.txt", b"abc\0def").unwrap_err();
        assert_eq!(
            err,
            FormatError::BinaryContent {
                file_name: "bin.txt".into(),
                offset: 3
            }
        );

        // A single stray byte in a larger file is replaced, not fatal.
        let mut s = "ok text. ".repeat(300).into_bytes();
        s[100] = 0xFF;
        let e = extract("mostly.txt", &s).unwrap();
        assert!(e.text.contains('\u{fffd}'));

        let err = extract(
            "old.doc",
            &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0, 0],
        )
        .unwrap_err();
        assert!(matches!(err, FormatError::Unsupported { .. }), "{err:?}");
        let err = extract("scan.png", b"\x89PNG\r\n\x1a\nrest").unwrap_err();
        assert!(err.to_string().contains("run OCR"), "{err}");
    }

    #[test]
    fn error_messages_name_the_file() {
        let errs = [
            FormatError::NotText {
                file_name: "f1".into(),
                invalid_bytes: 1,
                total_bytes: 2,
            },
            FormatError::BinaryContent {
                file_name: "f1".into(),
                offset: 0,
            },
            FormatError::CorruptPdf {
                file_name: "f1".into(),
                detail: "d".into(),
            },
            FormatError::EncryptedPdf {
                file_name: "f1".into(),
            },
            FormatError::NoTextLayer {
                file_name: "f1".into(),
                pages: 1,
            },
            FormatError::CorruptDocx {
                file_name: "f1".into(),
                detail: "d".into(),
            },
            FormatError::TooLarge {
                file_name: "f1".into(),
                part: "p",
                limit_bytes: 1 << 20,
            },
            FormatError::Unsupported {
                file_name: "f1".into(),
                what: "w",
                advice: "a",
            },
        ];
        for e in errs {
            assert!(e.to_string().contains("\"f1\""), "{e}");
            assert_eq!(e.file_name(), "f1");
        }
    }
}

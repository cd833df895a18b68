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
//!
//! Files: this one holds detection, errors and the entry point; `text.rs`, `pdf.rs`, `docx.rs`.

mod docx;
mod pdf;
#[cfg(test)]
mod tests;
mod text;

use super::parse::{self, DocFormat, ParseError, ParsedDocument};
use docx::extract_docx;
use pdf::extract_pdf;
pub use text::decode_text;
use text::decode_text_lossy_prefix;
use crate::interrupt::{self, Interrupt};
use crate::limits::{LimitExceeded, Limits};
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
    /// The file is over one of the [`Limits`] (extracted text, XML, pages, nesting).
    Limit { file_name: String, limit: LimitExceeded },
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
            | FormatError::TooLarge { file_name, .. }
            | FormatError::Limit { file_name, .. } => file_name,
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
            FormatError::Limit { file_name, limit } => write!(f, "document \"{file_name}\": {limit}"),
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
            limit @ ParseError::Limit(_) => limit,
        })
    }
}

/// Turn a file's bytes into text with the default [`Limits`] and no cancel hook (tools and tests;
/// the extension uses [`extract_with`]). The kind comes from [`detect`].
pub fn extract(file_name: &str, bytes: &[u8]) -> Result<Extracted, FormatError> {
    extract_with(file_name, bytes, &Limits::default(), &interrupt::never)
}

/// Turn a file's bytes into text within `limits`: the text extracted from the whole file (all PDF
/// pages summed, the DOCX body) is at most [`Limits::max_text_bytes`], the DOCX XML read at most
/// [`Limits::max_xml_bytes`], a PDF has at most [`Limits::max_pages`] pages; over a limit is
/// [`FormatError::Limit`]. `interrupt` is called per page or part and every few thousand
/// operators or XML events.
pub fn extract_with(
    file_name: &str,
    bytes: &[u8],
    limits: &Limits,
    interrupt: Interrupt<'_>,
) -> Result<Extracted, FormatError> {
    let kind = detect(file_name, bytes);
    let limit = |limit: LimitExceeded| FormatError::Limit { file_name: file_name.to_string(), limit };
    match kind {
        FileKind::Pdf => {
            let text = guarded(file_name, kind, interrupt, |hook| extract_pdf(file_name, bytes, limits, hook))?;
            Ok(Extracted { kind, text, text_format: DocFormat::PlainText })
        }
        FileKind::Docx => {
            let text = guarded(file_name, kind, interrupt, |hook| extract_docx(file_name, bytes, limits, hook))?;
            Ok(Extracted { kind, text, text_format: DocFormat::Markdown })
        }
        FileKind::Html | FileKind::Markdown | FileKind::Text => {
            let text = decode_text(file_name, bytes)?;
            // UTF-16 can grow by half when it becomes UTF-8.
            limits.check_text(text.len()).map_err(limit)?;
            let text_format = match kind {
                FileKind::Html => DocFormat::Html,
                FileKind::Markdown => DocFormat::Markdown,
                _ => parse::detect_format(file_name, &text),
            };
            Ok(Extracted { kind, text, text_format })
        }
    }
}

/// Run a third-party parser so that a panic becomes an error. `f` gets the cancel hook to call; a
/// panic of the hook itself (the extension's cancel, unwinding) is not a parser failure and goes
/// on unwinding.
fn guarded<F>(file_name: &str, kind: FileKind, interrupt: Interrupt<'_>, f: F) -> Result<String, FormatError>
where
    F: FnOnce(Interrupt<'_>) -> Result<String, FormatError>,
{
    let hook_unwound = std::cell::Cell::new(false);
    let hook = || {
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(interrupt)) {
            hook_unwound.set(true);
            std::panic::resume_unwind(payload);
        }
    };
    // The closure only reads the input, so a panic leaves nothing half-updated behind.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&hook))) {
        Ok(r) => r,
        Err(payload) if hook_unwound.get() => std::panic::resume_unwind(payload),
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


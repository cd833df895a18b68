//! Budgets on every input. Each step that can amplify its input (extraction, decompression, list
//! prefixes, chunking, metadata copied into chunks) is linear in its input and capped by one of
//! these limits; an input over a limit is refused with a [`LimitExceeded`] that names the limit and
//! the setting that raises it, never truncated silently and never allowed to exhaust memory or time.
//!
//! [`Limits`] is a plain value passed explicitly into extraction, parsing and chunking. The
//! extension fills it from its settings (`rag.max_document_bytes`, `rag.max_chunks_per_document`,
//! `rag.max_nesting_depth`, `rag.max_metadata_bytes`); [`Limits::default`] holds the same defaults.

use std::fmt;

/// Setting that bounds the extracted text (and, as a multiple, the DOCX XML).
pub const SETTING_DOCUMENT_BYTES: &str = "rag.max_document_bytes";
/// Setting that bounds the number of chunks of one document.
pub const SETTING_CHUNKS: &str = "rag.max_chunks_per_document";
/// Setting that bounds list / quote / table nesting.
pub const SETTING_NESTING: &str = "rag.max_nesting_depth";
/// Setting that bounds a document's metadata.
pub const SETTING_METADATA: &str = "rag.max_metadata_bytes";

/// Default of `rag.max_document_bytes` and of [`Limits::max_text_bytes`]: 16 MiB.
pub const DEFAULT_MAX_TEXT_BYTES: usize = 16 * 1024 * 1024;
/// Default of `rag.max_chunks_per_document`.
pub const DEFAULT_MAX_CHUNKS: usize = 20_000;
/// Default of `rag.max_nesting_depth`.
pub const DEFAULT_MAX_NESTING_DEPTH: usize = 64;
/// Longest "word" (characters without whitespace) kept whole; longer runs are hard-split.
pub const DEFAULT_MAX_WORD_CHARS: usize = 100;
/// Default of `rag.max_metadata_bytes`: 64 kB.
pub const DEFAULT_MAX_METADATA_BYTES: usize = 64 * 1024;
/// Most PDF pages read from one file.
pub const DEFAULT_MAX_PAGES: usize = 10_000;
/// DOCX XML may be this many times the text budget (markup is verbose, text is not).
pub const XML_PER_TEXT_BYTE: usize = 4;
/// List items are indented by at most this many levels in the output text, however deep the list:
/// the indentation of an item is bounded, so list prefixes grow with the items, not depth × items.
pub const MAX_LIST_INDENT_LEVELS: usize = 8;

/// The budgets of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Total text extracted from a document, across all its pages or parts, including list prefixes
    /// and other text the parsers add (`rag.max_document_bytes`).
    pub max_text_bytes: usize,
    /// Total decompressed XML read from a DOCX (every part counted; read with a byte cap, the
    /// sizes the archive declares are not trusted).
    pub max_xml_bytes: usize,
    /// Chunks of one document (`rag.max_chunks_per_document`).
    pub max_chunks: usize,
    /// Nested lists, block quotes and tables (`rag.max_nesting_depth`).
    pub max_nesting_depth: usize,
    /// Longest run of characters without whitespace kept as one word; longer runs are split.
    pub max_word_chars: usize,
    /// A document's metadata, serialized (`rag.max_metadata_bytes`).
    pub max_metadata_bytes: usize,
    /// PDF pages read from one file.
    pub max_pages: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::with_text_bytes(DEFAULT_MAX_TEXT_BYTES)
    }
}

impl Limits {
    /// The defaults, with the text budget (and the XML budget derived from it) set to `bytes`.
    pub fn with_text_bytes(bytes: usize) -> Self {
        Limits {
            max_text_bytes: bytes,
            max_xml_bytes: bytes.saturating_mul(XML_PER_TEXT_BYTE),
            max_chunks: DEFAULT_MAX_CHUNKS,
            max_nesting_depth: DEFAULT_MAX_NESTING_DEPTH,
            max_word_chars: DEFAULT_MAX_WORD_CHARS,
            max_metadata_bytes: DEFAULT_MAX_METADATA_BYTES,
            max_pages: DEFAULT_MAX_PAGES,
        }
    }

    /// Refuse `bytes` of extracted text (a running total) over [`Limits::max_text_bytes`].
    pub fn check_text(&self, bytes: usize) -> Result<(), LimitExceeded> {
        if bytes > self.max_text_bytes {
            return Err(LimitExceeded::text(bytes, self.max_text_bytes));
        }
        Ok(())
    }

    /// Refuse nesting `depth` over [`Limits::max_nesting_depth`]; `what` names the construct.
    pub fn check_nesting(&self, what: &'static str, depth: usize) -> Result<(), LimitExceeded> {
        if depth > self.max_nesting_depth {
            return Err(LimitExceeded {
                what,
                value: depth as u64,
                limit: self.max_nesting_depth as u64,
                unit: "levels",
                setting: SETTING_NESTING,
                advice: "flatten the document or raise",
            });
        }
        Ok(())
    }

    /// Refuse `n` chunks over [`Limits::max_chunks`].
    pub fn check_chunks(&self, n: usize) -> Result<(), LimitExceeded> {
        if n > self.max_chunks {
            return Err(LimitExceeded {
                what: "document chunk count",
                value: n as u64,
                limit: self.max_chunks as u64,
                unit: "chunks",
                setting: SETTING_CHUNKS,
                advice: "split the document, raise rag.chunk_size or raise",
            });
        }
        Ok(())
    }
}

/// Refuse metadata that is too large by itself, or that would exceed the text budget once it is
/// copied into each of `n_chunks` chunks (the extension stores the document's metadata with every
/// chunk).
pub fn check_metadata_budget(metadata_bytes: usize, n_chunks: usize, limits: &Limits) -> Result<(), LimitExceeded> {
    if metadata_bytes > limits.max_metadata_bytes {
        return Err(LimitExceeded {
            what: "document metadata",
            value: metadata_bytes as u64,
            limit: limits.max_metadata_bytes as u64,
            unit: "bytes",
            setting: SETTING_METADATA,
            advice: "store less metadata or raise",
        });
    }
    let copied = metadata_bytes.saturating_mul(n_chunks);
    if copied > limits.max_text_bytes {
        return Err(LimitExceeded {
            what: "document metadata copied into every chunk",
            value: copied as u64,
            limit: limits.max_text_bytes as u64,
            unit: "bytes",
            setting: SETTING_DOCUMENT_BYTES,
            advice: "store less metadata (rag.max_metadata_bytes), split the document or raise",
        });
    }
    Ok(())
}

/// The nesting depth of JSON text (objects and arrays; brackets inside strings do not count), scanning
/// only until the depth exceeds `stop`: linear in the text, constant memory, no recursion.
pub fn json_depth(text: &str, stop: usize) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > stop {
                    return deepest;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// An input over one of the [`Limits`]. `value` is how much was seen when the limit was crossed
/// (processing stops there, so the real total may be larger).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    /// What was measured, e.g. "document text".
    pub what: &'static str,
    pub value: u64,
    pub limit: u64,
    /// Unit of `value` and `limit`, e.g. "bytes after extraction".
    pub unit: &'static str,
    /// The setting that raises the limit, e.g. `rag.max_document_bytes`.
    pub setting: &'static str,
    /// What the user can do, e.g. "split the document or raise", completed by the setting's name
    /// when it is a setting.
    pub advice: &'static str,
}

impl LimitExceeded {
    /// Extracted text over [`Limits::max_text_bytes`].
    pub fn text(value: usize, limit: usize) -> Self {
        LimitExceeded {
            what: "document text",
            value: value as u64,
            limit: limit as u64,
            unit: "bytes after extraction",
            setting: SETTING_DOCUMENT_BYTES,
            advice: "split the document or raise",
        }
    }

    /// Decompressed DOCX XML over [`Limits::max_xml_bytes`] (4 × `rag.max_document_bytes`).
    pub fn xml(value: usize, limit: usize) -> Self {
        LimitExceeded {
            what: "DOCX XML",
            value: value as u64,
            limit: limit as u64,
            unit: "bytes after decompression",
            setting: SETTING_DOCUMENT_BYTES,
            advice: "split the document or raise",
        }
    }

    /// Decompressed PDF content streams over [`Limits::max_xml_bytes`] (pages sharing a stream, or
    /// forms run many times, count each time they are read).
    pub fn pdf_content(value: usize, limit: usize) -> Self {
        LimitExceeded {
            what: "PDF content streams",
            value: value as u64,
            limit: limit as u64,
            unit: "bytes after decompression",
            setting: SETTING_DOCUMENT_BYTES,
            advice: "split the document or raise",
        }
    }

    /// PDF pages over [`Limits::max_pages`] (a constant, no setting: the text budget still applies).
    pub fn pages(value: usize, limit: usize) -> Self {
        LimitExceeded {
            what: "PDF page count",
            value: value as u64,
            limit: limit as u64,
            unit: "pages",
            setting: "a fixed limit",
            advice: "split the document",
        }
    }
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} exceeds {} {} ({}); {}", self.what, self.limit, self.unit, self.setting, self.advice)?;
        if self.setting.starts_with("rag.") {
            write!(f, " {}", self.setting)?;
        }
        Ok(())
    }
}

impl std::error::Error for LimitExceeded {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_depth_counts_brackets_outside_strings() {
        assert_eq!(json_depth("1", 64), 0);
        assert_eq!(json_depth(r#"{"a": [1, {"b": 2}]}"#, 64), 3);
        assert_eq!(json_depth(r#"{"a": "[[[{{{", "b": "\\\"[["}"#, 64), 1);
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(json_depth(&deep, 64), 65); // stops counting past the limit
        assert_eq!(json_depth(&format!("{}{}", "{\"a\": ".repeat(10), "}".repeat(10)), 64), 10);
    }

    #[test]
    fn text_error_names_the_setting() {
        let e = Limits::default().check_text(DEFAULT_MAX_TEXT_BYTES + 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "document text exceeds 16777216 bytes after extraction (rag.max_document_bytes); \
             split the document or raise rag.max_document_bytes"
        );
        assert!(Limits::default().check_text(DEFAULT_MAX_TEXT_BYTES).is_ok());
    }

    #[test]
    fn fixed_limit_reads_well() {
        assert_eq!(
            LimitExceeded::pages(10_001, 10_000).to_string(),
            "PDF page count exceeds 10000 pages (a fixed limit); split the document"
        );
        assert_eq!(
            LimitExceeded::xml(1 << 27, 1 << 26).to_string(),
            "DOCX XML exceeds 67108864 bytes after decompression (rag.max_document_bytes); \
             split the document or raise rag.max_document_bytes"
        );
    }

    #[test]
    fn defaults() {
        let l = Limits::default();
        assert_eq!(l.max_xml_bytes, 4 * l.max_text_bytes);
        assert_eq!((l.max_chunks, l.max_nesting_depth, l.max_word_chars), (20_000, 64, 100));
        assert_eq!((l.max_metadata_bytes, l.max_pages), (65_536, 10_000));
    }

    #[test]
    fn metadata_budget() {
        let l = Limits::default();
        assert!(check_metadata_budget(1000, 10_000, &l).is_ok());
        let e = check_metadata_budget(l.max_metadata_bytes + 1, 1, &l).unwrap_err();
        assert_eq!(e.setting, SETTING_METADATA);
        // 60 kB copied into 20 000 chunks is 1.2 GB of metadata.
        let e = check_metadata_budget(60_000, 20_000, &l).unwrap_err();
        assert_eq!(e.setting, SETTING_DOCUMENT_BYTES);
        assert!(e.to_string().contains("rag.max_metadata_bytes"), "{e}");
    }

    #[test]
    fn chunks_and_nesting() {
        let l = Limits::default();
        assert!(l.check_chunks(20_000).is_ok());
        assert!(l.check_chunks(20_001).unwrap_err().to_string().contains("rag.max_chunks_per_document"));
        assert!(l.check_nesting("list nesting", 64).is_ok());
        assert!(l.check_nesting("list nesting", 65).unwrap_err().to_string().contains("rag.max_nesting_depth"));
    }
}

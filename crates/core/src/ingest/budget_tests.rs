//! Budgets (issue 9, item 1): every amplification of the input is linear and capped, and a refused
//! input names the limit and the setting that raises it. One test per limit and per known bomb.

use super::chunk::{chunk_document, Chunk};
use super::formats::{extract_with, FormatError};
use super::parse::{parse_with, DocFormat, ParseError, Section};
use crate::interrupt;
use crate::limits::{LimitExceeded, Limits, DEFAULT_MAX_WORD_CHARS, MAX_LIST_INDENT_LEVELS};
use std::time::{Duration, Instant};

fn no_limit_on_nesting() -> Limits {
    Limits { max_nesting_depth: usize::MAX, ..Limits::default() }
}

fn parse_limit(r: Result<super::parse::ParsedDocument, ParseError>) -> LimitExceeded {
    match r {
        Err(ParseError::Limit(e)) => e,
        other => panic!("expected a limit error, got {other:?}"),
    }
}

fn format_limit(r: Result<super::formats::Extracted, FormatError>) -> LimitExceeded {
    match r {
        Err(FormatError::Limit { limit, .. }) => limit,
        other => panic!("expected a limit error, got {other:?}"),
    }
}

fn total_text(d: &super::parse::ParsedDocument) -> usize {
    d.sections.iter().map(|s| s.text.len()).sum()
}

fn assert_fast(t: Instant, max: Duration, what: &str) {
    let el = t.elapsed();
    // Debug builds of this crate are unoptimised; the bound is for the algorithm, not the build.
    let max = if cfg!(debug_assertions) { max * 4 } else { max };
    assert!(el < max, "{what} took {el:?}");
}

/// The input of issue 9: `<ul>`×12000 then `<li>x`×12000 took minutes and over 1 GB.
#[test]
fn html_nested_lists_bomb_is_refused_fast() {
    let html = format!("<html><body>{}{}</body></html>", "<ul>".repeat(12_000), "<li>x".repeat(12_000));
    let t = Instant::now();
    let e = parse_limit(parse_with("x.html", &html, None, &Limits::default(), &interrupt::never));
    assert_fast(t, Duration::from_secs(2), "refusing the list bomb");
    assert_eq!(e.setting, "rag.max_nesting_depth");
    assert_eq!((e.value, e.limit), (65, 64));
    assert!(e.to_string().contains("HTML list nesting exceeds 64 levels (rag.max_nesting_depth)"), "{e}");
}

/// With nesting allowed, list prefixes are capped: the output grows with the items, not with
/// depth × items.
#[test]
fn html_nested_lists_output_is_linear() {
    let html = format!("<html><body>{}{}</body></html>", "<ul>".repeat(12_000), "<li>x".repeat(12_000));
    let t = Instant::now();
    let d = parse_with("x.html", &html, None, &no_limit_on_nesting(), &interrupt::never).unwrap();
    assert_fast(t, Duration::from_secs(2), "parsing the list bomb");
    let per_item = 2 * MAX_LIST_INDENT_LEVELS + "- x\n".len();
    assert!(total_text(&d) <= 12_000 * per_item, "{} bytes", total_text(&d));
}

#[test]
fn markdown_nested_lists() {
    let depth = 100;
    let md: String = (0..depth).map(|i| format!("{}- item {i}\n", "  ".repeat(i))).collect();
    let e = parse_limit(parse_with("x.md", &md, None, &Limits::default(), &interrupt::never));
    assert_eq!(e.setting, "rag.max_nesting_depth");
    assert!(e.to_string().starts_with("Markdown list nesting exceeds 64 levels"), "{e}");
    let d = parse_with("x.md", &md, None, &no_limit_on_nesting(), &interrupt::never).unwrap();
    let longest_indent = d.sections[0].text.lines().map(|l| l.len() - l.trim_start().len()).max().unwrap_or(0);
    assert_eq!(longest_indent, 2 * MAX_LIST_INDENT_LEVELS);
}

#[test]
fn html_and_markdown_text_budget_counts_what_the_parser_adds() {
    let limits = Limits::with_text_bytes(10_000);
    // 2000 items of one character: 2 kB of text, but 8 kB+ with "- " prefixes and newlines.
    let html = format!("<ol>{}</ol>", "<li>x</li>".repeat(2_000));
    let e = parse_limit(parse_with("x.html", &html, None, &limits, &interrupt::never));
    assert_eq!(e.setting, "rag.max_document_bytes");
    assert_eq!(
        e.to_string(),
        "document text exceeds 10000 bytes after extraction (rag.max_document_bytes); \
         split the document or raise rag.max_document_bytes"
    );
    let md = "- x\n".repeat(5_000);
    assert_eq!(parse_limit(parse_with("x.md", &md, None, &limits, &interrupt::never)).setting, "rag.max_document_bytes");
    let txt = "word ".repeat(5_000);
    assert_eq!(parse_limit(parse_with("x.txt", &txt, None, &limits, &interrupt::never)).setting, "rag.max_document_bytes");
    assert!(parse_with("x.txt", &txt, None, &Limits::default(), &interrupt::never).is_ok());
}

#[test]
fn html_headings_are_capped() {
    let html = format!("<h1>{}</h1>{}", "long ".repeat(10_000), "<h2>s</h2><p>text</p>".repeat(100));
    let d = parse_with("x.html", &html, None, &Limits::default(), &interrupt::never).unwrap();
    assert!(d.sections.iter().all(|s| s.headings.iter().all(|h| h.len() <= 256)));
}

#[test]
fn nul_bytes_are_refused() {
    match parse_with("x.txt", "abc\0def", None, &Limits::default(), &interrupt::never) {
        Err(ParseError::NulCharacter { offset: 3, .. }) => {}
        other => panic!("{other:?}"),
    }
    match extract_with("x.txt", b"abc\0def", &Limits::default(), &interrupt::never) {
        Err(FormatError::BinaryContent { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_utf8_and_utf16() {
    let mut bad = b"text ".repeat(100);
    bad.extend(std::iter::repeat_n(0xFFu8, 400));
    match extract_with("x.txt", &bad, &Limits::default(), &interrupt::never) {
        Err(FormatError::NotText { .. }) => {}
        other => panic!("{other:?}"),
    }
    // UTF-16 LE with a BOM, an unpaired surrogate and an odd trailing byte: decoded with
    // replacements or refused, never more text than the budget.
    let mut u16le = vec![0xFF, 0xFE];
    for u in "hello world ".encode_utf16().chain([0xD800u16]).chain("bye".encode_utf16()) {
        u16le.extend(u.to_le_bytes());
    }
    u16le.push(b'x');
    if let Ok(x) = extract_with("x.txt", &u16le, &Limits::default(), &interrupt::never) {
        assert!(x.text.starts_with("hello world"), "{:?}", x.text);
    }
    // CJK in UTF-16 grows by half as UTF-8: the text budget applies after decoding.
    let mut cjk = vec![0xFF, 0xFE];
    for u in "日本語".repeat(2_000).encode_utf16() {
        cjk.extend(u.to_le_bytes());
    }
    let limits = Limits::with_text_bytes(cjk.len());
    assert_eq!(format_limit(extract_with("x.txt", &cjk, &limits, &interrupt::never)).setting, "rag.max_document_bytes");
}

#[test]
fn html_entity_bombs_stay_linear() {
    // Character references expand to at most one or two characters and are decoded once.
    let html = format!("<p>{}</p><p>{}</p>", "&amp;amp;".repeat(100_000), "&lt;".repeat(100_000));
    let t = Instant::now();
    let d = parse_with("x.html", &html, None, &Limits::default(), &interrupt::never).unwrap();
    assert_fast(t, Duration::from_secs(1), "decoding entities");
    assert!(total_text(&d) <= html.len());
    assert!(d.sections[0].text.starts_with("&amp;&amp;"));
}

/// A 50 MB "word" (one unknown token for a word-piece tokenizer) yields bounded chunks quickly.
#[test]
fn fifty_megabyte_word_is_hard_split() {
    let word = "a".repeat(50 << 20);
    let sections = vec![Section { headings: Vec::new(), text: word }];
    // Like BERT's word-piece: a word over 100 characters is one [UNK] token.
    let wordpiece = |s: &str| s.split_whitespace().count();
    let t = Instant::now();
    let chunks: Vec<Chunk> =
        chunk_document(&sections, 256, 32, &wordpiece, &Limits::default(), &interrupt::never).unwrap();
    assert_fast(t, Duration::from_secs(5), "chunking a 50 MB word");
    let max = chunks.iter().map(|c| c.content.len()).max().unwrap_or(0);
    assert!(max <= 256 * DEFAULT_MAX_WORD_CHARS, "a chunk of {max} bytes");
    assert_eq!(chunks.iter().map(|c| c.content.len()).sum::<usize>(), 50 << 20);
}

#[test]
fn chunk_count_is_capped() {
    let text = "Short sentence here. ".repeat(3_000);
    let sections = vec![Section { headings: Vec::new(), text }];
    let words = |s: &str| s.split_whitespace().count();
    let limits = Limits { max_chunks: 100, ..Limits::default() };
    let e = chunk_document(&sections, 5, 0, &words, &limits, &interrupt::never).unwrap_err();
    assert_eq!((e.value, e.limit, e.setting), (101, 100, "rag.max_chunks_per_document"));
    assert!(e.to_string().contains("document chunk count exceeds 100 chunks"), "{e}");
}

// --- PDF ---------------------------------------------------------------------------------------

/// A PDF of `pages` pages that all share one content stream showing `text`.
pub(crate) fn pdf_sharing_one_stream(pages: usize, text: &str) -> Vec<u8> {
    use lopdf::{Dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let mut font = Dictionary::new();
    font.set("Type", Object::Name(b"Font".to_vec()));
    font.set("Subtype", Object::Name(b"Type1".to_vec()));
    font.set("BaseFont", Object::Name(b"Courier".to_vec()));
    let font_id = doc.add_object(font);
    let mut fonts = Dictionary::new();
    fonts.set("F1", Object::Reference(font_id));
    let mut res = Dictionary::new();
    res.set("Font", Object::Dictionary(fonts));
    let content = format!("BT /F1 10 Tf 72 700 Td ({text}) Tj ET").into_bytes();
    let content_id = doc.add_object(Stream::new(Dictionary::new(), content));
    let pages_id = doc.new_object_id();
    let mut kids = Vec::new();
    for _ in 0..pages {
        let mut page = Dictionary::new();
        page.set("Type", Object::Name(b"Page".to_vec()));
        page.set("Parent", Object::Reference(pages_id));
        page.set("Contents", Object::Reference(content_id));
        page.set("Resources", Object::Dictionary(res.clone()));
        kids.push(Object::Reference(doc.add_object(page)));
    }
    let mut tree = Dictionary::new();
    tree.set("Type", Object::Name(b"Pages".to_vec()));
    tree.set("Count", Object::Integer(pages as i64));
    tree.set("Kids", Object::Array(kids));
    doc.objects.insert(pages_id, Object::Dictionary(tree));
    let mut catalog = Dictionary::new();
    catalog.set("Type", Object::Name(b"Catalog".to_vec()));
    catalog.set("Pages", Object::Reference(pages_id));
    let catalog_id = doc.add_object(catalog);
    doc.trailer.set("Root", Object::Reference(catalog_id));
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).expect("save");
    bytes
}

#[test]
fn pdf_pages_sharing_one_stream_are_summed() {
    let line = "All work and no play makes Jack a dull boy. ".repeat(20);
    let pdf = pdf_sharing_one_stream(200, &line);
    // 200 pages × ~900 bytes ≈ 180 kB of text from a file of a few kB.
    let limits = Limits::with_text_bytes(50_000);
    let e = format_limit(extract_with("x.pdf", &pdf, &limits, &interrupt::never));
    assert_eq!(e.setting, "rag.max_document_bytes");
    assert_eq!(e.what, "document text");
    let ok = extract_with("x.pdf", &pdf, &Limits::default(), &interrupt::never).unwrap();
    assert!(ok.text.len() > 150_000);
}

#[test]
fn pdf_page_count_is_capped() {
    let pdf = pdf_sharing_one_stream(12, "hello");
    let limits = Limits { max_pages: 10, ..Limits::default() };
    let e = format_limit(extract_with("x.pdf", &pdf, &limits, &interrupt::never));
    assert_eq!((e.what, e.value, e.limit), ("PDF page count", 11, 10));
}

#[test]
fn pdf_content_stream_work_is_capped() {
    // A stream that draws but shows no text, read by every page: bounded by the content budget.
    let pdf = pdf_sharing_one_stream(100, &"x".repeat(2_000));
    let limits = Limits { max_xml_bytes: 20_000, ..Limits::default() };
    let e = format_limit(extract_with("x.pdf", &pdf, &limits, &interrupt::never));
    assert_eq!(e.what, "PDF content streams");
}

#[test]
fn pdf_page_tree_loop_terminates() {
    use lopdf::{Dictionary, Document, Object};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let mut tree = Dictionary::new();
    tree.set("Type", Object::Name(b"Pages".to_vec()));
    tree.set("Count", Object::Integer(2));
    // The page tree lists itself, twice: a naive walk never ends.
    tree.set("Kids", Object::Array(vec![Object::Reference(pages_id), Object::Reference(pages_id)]));
    doc.objects.insert(pages_id, Object::Dictionary(tree));
    let mut catalog = Dictionary::new();
    catalog.set("Type", Object::Name(b"Catalog".to_vec()));
    catalog.set("Pages", Object::Reference(pages_id));
    let catalog_id = doc.add_object(catalog);
    doc.trailer.set("Root", Object::Reference(catalog_id));
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).expect("save");
    let t = Instant::now();
    assert!(extract_with("loop.pdf", &bytes, &Limits::default(), &interrupt::never).is_err());
    assert_fast(t, Duration::from_secs(1), "a looping page tree");
}

// --- DOCX --------------------------------------------------------------------------------------

/// A ZIP with one deflated entry, whose local and central headers declare `declared` as its
/// uncompressed size.
fn deflated_zip(name: &str, data: &[u8], declared: u32) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("deflate");
    let packed = enc.finish().expect("deflate");
    let mut crc = flate2::Crc::new();
    crc.update(data);
    let crc = crc.sum();
    let mut out = Vec::new();
    out.extend_from_slice(&[0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0, 8, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(packed.len() as u32).to_le_bytes());
    out.extend_from_slice(&declared.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&packed);
    let cd_offset = out.len() as u32;
    let mut central = Vec::new();
    central.extend_from_slice(&[0x50, 0x4b, 0x01, 0x02, 20, 0, 20, 0, 0, 0, 8, 0, 0, 0, 0, 0]);
    central.extend_from_slice(&crc.to_le_bytes());
    central.extend_from_slice(&(packed.len() as u32).to_le_bytes());
    central.extend_from_slice(&declared.to_le_bytes());
    central.extend_from_slice(&(name.len() as u16).to_le_bytes());
    central.extend_from_slice(&[0; 12]);
    central.extend_from_slice(&0u32.to_le_bytes());
    central.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&central);
    out.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 1, 0, 1, 0]);
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

const W_DOC: &str = r#"<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>"#;

fn docx_xml(body: &str) -> String {
    format!("{W_DOC}{body}</w:body></w:document>")
}

#[test]
fn docx_oversized_xml_is_refused_by_a_byte_cap() {
    // 8 MB of XML deflate to a few kB.
    let xml = docx_xml(&"<w:p/>".repeat(1_400_000));
    let limits = Limits { max_xml_bytes: 1 << 20, ..Limits::default() };
    let honest = deflated_zip("word/document.xml", xml.as_bytes(), xml.len() as u32);
    assert!(honest.len() < 100_000);
    let e = format_limit(extract_with("bomb.docx", &honest, &limits, &interrupt::never));
    assert_eq!((e.what, e.setting), ("DOCX XML", "rag.max_document_bytes"));
    // The archive lies about the size: reading stops at the cap all the same.
    let lying = deflated_zip("word/document.xml", xml.as_bytes(), 1000);
    let t = Instant::now();
    match extract_with("bomb.docx", &lying, &limits, &interrupt::never) {
        Err(FormatError::Limit { .. }) | Err(FormatError::CorruptDocx { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_fast(t, Duration::from_secs(1), "a lying zip entry");
}

#[test]
fn docx_text_budget() {
    let xml = docx_xml(&"<w:p><w:r><w:t>some words in a paragraph</w:t></w:r></w:p>".repeat(2_000));
    let zip = deflated_zip("word/document.xml", xml.as_bytes(), xml.len() as u32);
    let e = format_limit(extract_with("x.docx", &zip, &Limits { max_text_bytes: 20_000, ..Limits::default() }, &interrupt::never));
    assert_eq!(e.what, "document text");
    assert!(extract_with("x.docx", &zip, &Limits::default(), &interrupt::never).is_ok());
}

#[test]
fn docx_nested_tables() {
    let depth = 100;
    let open = "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>x</w:t></w:r></w:p>".repeat(depth);
    let close = "</w:tc></w:tr></w:tbl>".repeat(depth);
    let xml = docx_xml(&format!("{open}{close}"));
    let zip = deflated_zip("word/document.xml", xml.as_bytes(), xml.len() as u32);
    let e = format_limit(extract_with("x.docx", &zip, &Limits::default(), &interrupt::never));
    assert_eq!(e.setting, "rag.max_nesting_depth");
}

#[test]
fn docx_entity_bomb_is_not_expanded() {
    // "Billion laughs": quick-xml does not expand entities declared in a DTD.
    let dtd = r#"<?xml version="1.0"?><!DOCTYPE w:document [<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>"#;
    let body = "<w:p><w:r><w:t>start &d;&d;&d;&d;&d;&d; end</w:t></w:r></w:p>".repeat(1_000);
    let xml = format!("{dtd}{}", docx_xml(&body));
    let zip = deflated_zip("word/document.xml", xml.as_bytes(), xml.len() as u32);
    let t = Instant::now();
    let r = extract_with("x.docx", &zip, &Limits::default(), &interrupt::never);
    assert_fast(t, Duration::from_secs(1), "an entity bomb");
    if let Ok(x) = r {
        assert!(x.text.len() <= xml.len(), "{} bytes of text", x.text.len());
        assert!(!x.text.contains("aaaa"));
    }
}

#[test]
fn extracted_markdown_keeps_its_format() {
    let xml = docx_xml("<w:p><w:r><w:t>hello</w:t></w:r></w:p>");
    let zip = deflated_zip("word/document.xml", xml.as_bytes(), xml.len() as u32);
    let x = extract_with("x.docx", &zip, &Limits::default(), &interrupt::never).unwrap();
    assert_eq!((x.text.as_str(), x.text_format), ("hello", DocFormat::Markdown));
}

/// Deep nesting of elements that open no list (quotes, boxes, skipped subtrees, tables) stays
/// fast: none of them adds text per level.
#[test]
fn deep_nesting_of_other_elements_is_fast() {
    let n = 12_000;
    let inputs = [
        ("x.html", format!("{}x", "<blockquote>".repeat(n))),
        ("x.html", format!("{}x", "<div>".repeat(n))),
        ("x.html", format!("{}x{}", "<aside class=\"note\">".repeat(n), "</aside>".repeat(n))),
        ("x.html", format!("<p>a</p>{}x", "<nav>".repeat(n))),
        ("x.html", format!("{}x", "<table><tr><td>".repeat(n))),
        ("x.html", format!("{}x", "<pre>".repeat(n))),
        ("x.md", format!("{}x", "> ".repeat(n))),
        ("x.md", format!("{}x", "* ".repeat(n))),
        ("x.md", format!("{}x{}", "[".repeat(n), "](u)".repeat(n))),
        ("x.md", format!("{}x{}", "*".repeat(n), "*".repeat(n))),
    ];
    for (name, input) in &inputs {
        let t = Instant::now();
        let r = parse_with(name, input, None, &Limits::default(), &interrupt::never);
        if let Ok(d) = &r {
            assert!(total_text(d) <= 4 * input.len(), "{name} {:?}: {} bytes", &input[..20], total_text(d));
        }
        assert_fast(t, Duration::from_secs(1), &format!("{name} {:?}…", &input[..24]));
    }
}

//! Unit tests of this module and its parts.

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../tests/fixtures/formats/{name}", env!("CARGO_MANIFEST_DIR"));
    let alt = format!("/work/main/tests/fixtures/formats/{name}");
    std::fs::read(&path).or_else(|_| std::fs::read(&alt)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
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
    assert_eq!(detect("noext", &fixture("utf8_bom.md")[..]), FileKind::Markdown);
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
    assert_eq!(e.text, "Ghostscript page one says hello.\n\nGhostscript page two says goodbye.");
}

#[test]
fn pdf_errors() {
    let err = extract("secret.pdf", &fixture("encrypted.pdf")).unwrap_err();
    assert_eq!(err, FormatError::EncryptedPdf { file_name: "secret.pdf".into() });
    assert!(err.to_string().contains("secret.pdf") && err.to_string().contains("decrypted copy"), "{err}");

    let err = extract("scan.pdf", &fixture("scanned.pdf")).unwrap_err();
    assert_eq!(err, FormatError::NoTextLayer { file_name: "scan.pdf".into(), pages: 3 });
    assert!(err.to_string().contains("run OCR first"), "{err}");

    let err = extract("cut.pdf", &fixture("truncated.pdf")).unwrap_err();
    assert!(matches!(err, FormatError::CorruptPdf { ref file_name, .. } if file_name == "cut.pdf"), "{err:?}");
    assert!(err.to_string().contains("truncated"), "{err}");

    let err = extract("fake.pdf", &fixture("not_a_pdf.pdf")).unwrap_err();
    assert!(matches!(err, FormatError::CorruptPdf { .. }), "{err:?}");

    let err = extract("renamed.pdf", b"hello, I am text").unwrap_err();
    assert!(matches!(err, FormatError::CorruptPdf { ref detail, .. } if detail.contains("not a PDF")), "{err:?}");
}

#[test]
fn pdf_owner_password_only_is_readable() {
    // Encrypted with an empty user password: readers open it without asking.
    let e = extract("restricted.pdf", &fixture("owner_only.pdf")).unwrap();
    assert!(e.text.contains("Vacuum reclaims storage occupied by dead tuples."), "{}", e.text);
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
    form_dict.set("BBox", Object::Array(vec![0.into(), 0.into(), 600.into(), 800.into()]));
    form_dict.set("Resources", Object::Dictionary(form_res));
    let form_id =
        doc.add_object(Stream::new(form_dict, b"BT /F1 10 Tf 72 500 Td (Text inside a form.) Tj ET".to_vec()));
    let mut xobjects = Dictionary::new();
    xobjects.set("X1", Object::Reference(form_id));
    let mut res = Dictionary::new();
    res.set("Font", Object::Dictionary(fonts));
    res.set("XObject", Object::Dictionary(xobjects));
    let content =
        b"BT /F1 10 Tf 72 700 Td [(Kern)-40(ed)-700(gap)] TJ (.) Tj 30 0 Td (far) Tj 0 -12 Td (next line) Tj ET /X1 Do"
            .to_vec();
    let content_id = doc.add_object(Stream::new(Dictionary::new(), content));
    let pages_id = doc.new_object_id();
    let mut page = Dictionary::new();
    page.set("Type", Object::Name(b"Page".to_vec()));
    page.set("Parent", Object::Reference(pages_id));
    page.set("Contents", Object::Reference(content_id));
    page.set("Resources", Object::Dictionary(res));
    page.set("MediaBox", Object::Array(vec![0.into(), 0.into(), 600.into(), 800.into()]));
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
    assert!(t.starts_with("# Operations Handbook\n\nThis handbook explains routine database maintenance."), "{t}");
    assert!(t.contains("\n# Backups\n"), "{t}");
    assert!(t.contains("\n## Restore drills\n"), "{t}");
    assert!(t.contains("\n# Monitoring\n"), "{t}");
    assert!(t.contains("Practice a restore once a month.\\\nSecond line after a break."), "{t}");
    assert!(t.contains("Column A\tColumn B"), "{t}");
    assert!(t.contains("| Metric | Warn | Critical |\n| --- | --- | --- |\n| lag_seconds | 30 | 300 |\n| disk_used_pct | 80 | 95 |"), "{t}");
    assert!(t.ends_with("Text after the table."), "{t}");

    // The structure survives parse::parse, by the file name too (the
    // text starts with a heading, so it sniffs as Markdown).
    for d in [e.parse("handbook.docx").unwrap(), parse::parse("handbook.docx", &e.text).unwrap()] {
        assert_eq!(d.format, DocFormat::Markdown);
        assert_eq!(d.title.as_deref(), Some("Operations Handbook"));
        let find = |needle: &str| {
            d.sections.iter().find(|s| s.text.contains(needle)).unwrap_or_else(|| panic!("{needle} not in {d:?}"))
        };
        assert_eq!(find("base backup").headings, vec!["Backups".to_string()]);
        let drills = find("Practice a restore");
        assert_eq!(drills.headings, vec!["Backups".to_string(), "Restore drills".to_string()]);
        assert!(drills.text.contains("once a month.\nSecond line"), "{:?}", drills.text);
        let mon = find("replication lag");
        assert_eq!(mon.headings, vec!["Monitoring".to_string()]);
        assert!(
            mon.text.contains("Metric | Warn | Critical\nlag_seconds | 30 | 300\ndisk_used_pct | 80 | 95"),
            "{:?}",
            mon.text
        );
        assert_eq!(find("routine database").headings, vec!["Operations Handbook".to_string()]);
    }
}

#[test]
fn docx_errors() {
    let err = extract("broken.docx", &fixture("corrupt.docx")).unwrap_err();
    assert!(matches!(err, FormatError::CorruptDocx { ref file_name, .. } if file_name == "broken.docx"), "{err:?}");
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
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
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
        central.extend_from_slice(&[0x50, 0x4b, 0x01, 0x02, 20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
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
    let zip = stored_zip(&[("word/document.xml", xml.as_bytes()), ("word/styles.xml", styles.as_bytes())]);
    let e = extract("de.docx", &zip).unwrap();
    let t = &e.text;
    assert!(t.starts_with("# Einleitung \\{x\\}\n\n"), "{t}");
    assert!(t.contains("Use \\*stars\\*, \\<table_name> & a_b AT\\&T \\&copy; kept"), "{t}");
    assert!(!t.contains("gone") && !t.contains("PAGEREF") && !t.contains("drawingml"), "{t}");
    assert!(t.contains("\n\n\\---\n\n"), "{t}");
    assert!(t.contains("\n## Direct outline\n"), "{t}");
    assert!(t.contains("\n- bullet item\n"), "{t}");
    assert_eq!(t.matches("in a text box").count(), 1, "{t}");
    assert!(t.contains("| a\\|b second para | inner |\n| --- | --- |\n| only one |  |"), "{t}");
    assert!(t.ends_with("☺ end"), "{t}");

    let d = e.parse("de.docx").unwrap();
    let all: String = d.sections.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join("\n");
    assert!(all.contains("Use *stars*, <table_name> & a_b AT&T &copy; kept"), "{all}");
    assert!(all.contains("---"), "{all}");
    assert!(all.contains("a|b second para | inner"), "{all}");
    assert_eq!(d.sections[0].headings, vec!["Einleitung {x}".to_string()]);

    // Broken XML → CorruptDocx; stored zip without styles is fine.
    let bad = stored_zip(&[("word/document.xml", b"<w:document xmlns:w='x'><w:body><w:p></w:body>")]);
    assert!(matches!(extract("bad.docx", &bad), Err(FormatError::CorruptDocx { .. })));
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
    let cd = z.windows(4).position(|w| w == [0x50, 0x4b, 0x01, 0x02]).unwrap();
    z[cd + 24..cd + 28].copy_from_slice(&big.to_le_bytes());
    match extract("bomb.docx", &z) {
        Err(FormatError::Limit { limit, .. }) => {
            assert_eq!(limit.what, "DOCX XML");
            assert_eq!(limit.setting, "rag.max_document_bytes");
        }
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
    let raw: Vec<u8> =
        "Hello UTF-16 without a BOM, plain ASCII.".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    assert_eq!(extract("nobom.txt", &raw).unwrap().text, "Hello UTF-16 without a BOM, plain ASCII.");

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
    assert!(err.to_string().contains("is not UTF-8 text") && err.to_string().contains("convert it to UTF-8"), "{err}");

    let err = extract("bin.txt", b"abc\0def").unwrap_err();
    assert_eq!(err, FormatError::BinaryContent { file_name: "bin.txt".into(), offset: 3 });

    // A single stray byte in a larger file is replaced, not fatal.
    let mut s = "ok text. ".repeat(300).into_bytes();
    s[100] = 0xFF;
    let e = extract("mostly.txt", &s).unwrap();
    assert!(e.text.contains('\u{fffd}'));

    let err = extract("old.doc", &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0, 0]).unwrap_err();
    assert!(matches!(err, FormatError::Unsupported { .. }), "{err:?}");
    let err = extract("scan.png", b"\x89PNG\r\n\x1a\nrest").unwrap_err();
    assert!(err.to_string().contains("run OCR"), "{err}");
}

#[test]
fn error_messages_name_the_file() {
    let errs = [
        FormatError::NotText { file_name: "f1".into(), invalid_bytes: 1, total_bytes: 2 },
        FormatError::BinaryContent { file_name: "f1".into(), offset: 0 },
        FormatError::CorruptPdf { file_name: "f1".into(), detail: "d".into() },
        FormatError::EncryptedPdf { file_name: "f1".into() },
        FormatError::NoTextLayer { file_name: "f1".into(), pages: 1 },
        FormatError::CorruptDocx { file_name: "f1".into(), detail: "d".into() },
        FormatError::TooLarge { file_name: "f1".into(), part: "p", limit_bytes: 1 << 20 },
        FormatError::Unsupported { file_name: "f1".into(), what: "w", advice: "a" },
    ];
    for e in errs {
        assert!(e.to_string().contains("\"f1\""), "{e}");
        assert_eq!(e.file_name(), "f1");
    }
}

//! Text files: UTF-8 (BOM stripped), UTF-16 LE/BE (with BOM, or obvious without); a handful of
//! invalid UTF-8 bytes are replaced, more is an error; known binary formats get a clear refusal.

use super::*;

/// Is the number of bad bytes small enough to just replace them?
/// At most 1 in 1000 bytes, and always one for files up to 1000 bytes.
pub(crate) fn tolerable(invalid: usize, total: usize) -> bool {
    invalid.saturating_mul(1000) <= total.max(1000)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Utf16 {
    Le,
    Be,
}

/// UTF-16 by BOM, or obvious BOM-less UTF-16 (mostly-ASCII text where every
/// other byte is NUL). Returns the endianness and the BOM length.
pub(crate) fn utf16_kind(bytes: &[u8]) -> Option<(Utf16, usize)> {
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
pub(crate) fn decode_utf16(bytes: &[u8], endian: Utf16) -> (String, usize) {
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
pub(crate) fn invalid_utf8_bytes(mut bytes: &[u8]) -> usize {
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
pub(crate) fn decode_text_lossy_prefix(head: &[u8]) -> Option<String> {
    if let Some((endian, bom)) = utf16_kind(head) {
        return Some(decode_utf16(&head[bom..], endian).0);
    }
    if head.contains(&0) {
        return None;
    }
    Some(String::from_utf8_lossy(head).into_owned())
}

/// Recognisable binary formats that are not supported, with advice.
pub(crate) fn known_binary(file_name: &str, bytes: &[u8]) -> Option<FormatError> {
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


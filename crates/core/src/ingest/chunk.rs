//! Sentence-aware, token-sized chunking of parsed sections.
//!
//! [`split_sentences`] finds sentence boundaries (terminal punctuation
//! followed by whitespace and a capital/digit/quote, paragraph breaks, and
//! line breaks in list-like or preformatted text) while skipping common
//! abbreviations, initials, decimals, version numbers and ellipses.
//! [`chunk_sections`] packs whole sentences greedily into chunks of at most
//! `chunk_size` tokens (as measured by the caller's `count_tokens`), never
//! crossing a section boundary, with an optional sentence-level overlap.
//! Each sentence is counted once; a multi-sentence chunk is verified once
//! more and re-split if joining made it too long. Pure logic, no Postgres API.

use super::parse::Section;
use crate::interrupt::{self, Interrupt};
use crate::limits::{LimitExceeded, Limits};
use std::cell::Cell;

/// Calls of the token counter between two calls of the cancel hook (a call tokenizes a sentence
/// or a chunk, so this is a few hundred milliseconds of work at most).
const COUNTS_PER_INTERRUPT: usize = 64;

/// One piece of a document, ready to embed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// 0-based position in the document, consecutive across sections.
    pub index: usize,
    /// The chunk text: a contiguous slice of the section text.
    pub content: String,
    /// Heading path of the section the chunk comes from.
    pub headings: Vec<String>,
}

/// `"Title > Heading > Subheading"`; consecutive duplicates (e.g. a page
/// title repeated as its first heading) and empty parts are skipped.
/// Returns an empty string if there is nothing.
pub fn context_prefix(title: Option<&str>, headings: &[String]) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in title.into_iter().chain(headings.iter().map(String::as_str)) {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        if parts.last().is_some_and(|last| same_label(last, p)) {
            continue;
        }
        parts.push(p);
    }
    parts.join(" > ")
}

fn same_label(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> Vec<String> { s.split_whitespace().map(str::to_lowercase).collect() };
    norm(a) == norm(b)
}

// ---------------------------------------------------------------------------
// Sentence splitting
// ---------------------------------------------------------------------------

/// Split text into sentences (trimmed slices of `text`, in order, never
/// empty). Boundaries: `.`, `!`, `?` (plus closing quotes/brackets) followed
/// by whitespace and an upper-case letter, digit, quote or bracket; CJK full
/// stops; blank lines; and line breaks that look structural (list items,
/// changes of indentation, lines ending in `:`/`;`, table rows). A line break
/// inside wrapped prose (next line starts in lower case) is not a boundary.
pub fn split_sentences(text: &str) -> Vec<&str> {
    sentence_spans(text).into_iter().map(|(a, b)| &text[a..b]).collect()
}

/// Byte ranges of the sentences of `text`.
fn sentence_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // Segment = run of lines with no hard break between them.
    let mut seg_start: Option<usize> = None;
    let mut prev: Option<(usize, usize)> = None; // previous non-blank line (start, end)
    let mut pos = 0usize;
    let len = text.len();
    while pos < len {
        let line_end = text[pos..].find('\n').map_or(len, |o| pos + o);
        let line = &text[pos..line_end];
        if line.trim().is_empty() {
            // Paragraph break.
            if let (Some(s), Some((_, pe))) = (seg_start, prev) {
                split_inline(text, s, pe, &mut out);
            }
            seg_start = None;
            prev = None;
        } else {
            match (seg_start, prev) {
                (Some(s), Some((ps, pe))) => {
                    if hard_line_break(&text[ps..pe], line) {
                        split_inline(text, s, pe, &mut out);
                        seg_start = Some(pos);
                    }
                }
                _ => seg_start = Some(pos),
            }
            prev = Some((pos, line_end));
        }
        pos = line_end + 1;
    }
    if let (Some(s), Some((_, pe))) = (seg_start, prev) {
        split_inline(text, s, pe, &mut out);
    }
    out
}

fn indent_width(line: &str) -> usize {
    line.chars().take_while(|c| c.is_whitespace()).map(|c| if c == '\t' { 4 } else { 1 }).sum()
}

/// Does a line start with a list marker (`- `, `* `, `• `, `1. `, `2) `, `a) `)?
fn is_list_item(line: &str) -> bool {
    let t = line.trim_start();
    let mut chars = t.chars();
    let first = match chars.next() {
        Some(c) => c,
        None => return false,
    };
    if matches!(first, '-' | '*' | '+' | '•' | '·' | '–' | '—' | '▪' | '◦' | '‣') {
        return chars.next().is_some_and(char::is_whitespace);
    }
    if t.starts_with("[ ] ") || t.starts_with("[x] ") || t.starts_with("[X] ") {
        return true;
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let b = t.as_bytes();
    if (1..=3).contains(&digits) {
        return matches!(b.get(digits), Some(b'.') | Some(b')'))
            && b.get(digits + 1).is_some_and(|c| c.is_ascii_whitespace());
    }
    first.is_ascii_alphabetic()
        && b.get(1) == Some(&b')')
        && b.get(2).is_some_and(|c| c.is_ascii_whitespace())
}

/// Is the newline between `prev` and `next` (both non-blank) a sentence boundary?
fn hard_line_break(prev: &str, next: &str) -> bool {
    if is_list_item(next) || indent_width(prev) != indent_width(next) {
        return true;
    }
    let p = prev.trim_end();
    if p.ends_with([':', ';', '{', '}', '|']) || p.contains(" | ") {
        return true;
    }
    // Terminal punctuation is handled by the inline rules (newline = whitespace).
    if p.ends_with(['.', '!', '?', '"', '\'', ')', '”', '’', '。', '！', '？']) {
        return false;
    }
    let first = next.trim_start().chars().next();
    if first.is_some_and(char::is_lowercase) || p.ends_with(',') {
        return false; // wrapped prose
    }
    true
}

fn is_terminal(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？' | '‼' | '⁇')
}

fn is_cjk_terminal(c: char) -> bool {
    matches!(c, '。' | '！' | '？')
}

fn is_closer(c: char) -> bool {
    matches!(c, '"' | '\'' | ')' | ']' | '”' | '’' | '»' | '›' | '」' | '』' | '）')
}

fn starts_sentence(c: char) -> bool {
    c.is_uppercase()
        || c.is_ascii_digit()
        || matches!(c, '"' | '\'' | '“' | '‘' | '«' | '(' | '[' | '¿' | '¡' | '`' | '*' | '•' | '「' | '『')
        || (c.is_alphabetic() && !c.is_lowercase()) // scripts without case
}

const ABBREVIATIONS: &[&str] = &[
    "e.g", "i.e", "eg", "ie", "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "etc", "vs",
    "fig", "figs", "no", "nos", "nr", "vol", "vols", "cf", "al", "approx", "inc", "ltd", "co",
    "corp", "dept", "est", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec", "sec", "ch", "chap", "eq", "eqs", "pp", "ed", "eds", "resp", "viz", "ca", "gen",
    "gov", "lt", "capt", "sgt", "rev", "hon", "ave", "blvd", "incl", "esp", "ref", "refs", "op",
    "ibid", "tel", "ext", "univ", "assn", "bros", "approx", "dist", "misc", "nb", "ver", "rel",
];

/// Words after which a number ending in '.' is a reference, not a sentence end
/// ("see Section 11.2. for ..." is rare; "Table 11.1. Index Types" is common).
const NUMBER_LABELS: &[&str] = &[
    "table", "figure", "fig", "section", "chapter", "example", "step", "part", "appendix",
    "equation", "eq", "item", "version", "release", "no", "page",
];

/// Is the '.' at the end of `before` part of an abbreviation (not a sentence end)?
fn is_abbreviation(before: &str) -> bool {
    let mut words = before.rsplit(char::is_whitespace).filter(|w| !w.is_empty());
    let word = match words.next() {
        Some(w) => w.trim_start_matches(['(', '[', '"', '\'', '“', '‘', '«']),
        None => return false,
    };
    if word.is_empty() {
        return false;
    }
    let lower = word.to_lowercase();
    if ABBREVIATIONS.contains(&lower.as_str()) {
        return true;
    }
    let mut chars = word.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        if c.is_alphabetic() {
            return true; // initial: "J. Smith"
        }
    }
    if word.contains('.')
        && word.split('.').all(|seg| {
            !seg.is_empty() && seg.chars().count() <= 2 && seg.chars().all(char::is_alphabetic)
        })
    {
        return true; // "U.S", "Ph.D", "a.m"
    }
    if word.bytes().all(|b| b.is_ascii_digit() || b == b'.') && word.bytes().any(|b| b.is_ascii_digit()) {
        if let Some(label) = words.next() {
            let label = label.trim_start_matches(['(', '[']).to_lowercase();
            return NUMBER_LABELS.contains(&label.as_str());
        }
    }
    false
}

/// Split `text[start..end]` (no hard line breaks inside) into sentences.
fn split_inline(text: &str, start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    let s = &text[start..end];
    let mut sent_start = 0usize;
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if !is_terminal(c) {
            continue;
        }
        // Run of terminal punctuation ("?!", "...").
        let mut j = i + c.len_utf8();
        let mut dots = usize::from(c == '.');
        let mut only_dots = c == '.';
        let mut ellipsis = c == '…';
        let mut cjk = is_cjk_terminal(c);
        while let Some(&(k, c2)) = it.peek() {
            if !is_terminal(c2) {
                break;
            }
            dots += usize::from(c2 == '.');
            only_dots &= c2 == '.';
            ellipsis |= c2 == '…';
            cjk |= is_cjk_terminal(c2);
            j = k + c2.len_utf8();
            it.next();
        }
        if ellipsis || (only_dots && dots >= 2) {
            continue; // ellipsis: not a boundary
        }
        while let Some(&(k, c2)) = it.peek() {
            if !is_closer(c2) {
                break;
            }
            j = k + c2.len_utf8();
            it.next();
        }
        let rest = &s[j..];
        let next = match rest.chars().next() {
            Some(n) => n,
            None => break, // end of segment
        };
        if !cjk && !next.is_whitespace() {
            continue; // "3.14", "e.g.x", "file.txt"
        }
        let m = j + (rest.len() - rest.trim_start().len());
        let next_start = match s[m..].chars().next() {
            Some(n) => n,
            None => break,
        };
        if !cjk && !starts_sentence(next_start) {
            continue;
        }
        if only_dots && dots == 1 && is_abbreviation(&s[sent_start..i]) {
            continue;
        }
        push_trimmed(out, start + sent_start, start + j, text);
        sent_start = m;
    }
    push_trimmed(out, start + sent_start, end, text);
}

fn push_trimmed(out: &mut Vec<(usize, usize)>, a: usize, b: usize, text: &str) {
    let s = &text[a..b];
    let t = s.trim_start();
    let a2 = a + (s.len() - t.len());
    let t = t.trim_end();
    if !t.is_empty() {
        out.push((a2, a2 + t.len()));
    }
}

// ---------------------------------------------------------------------------
// Chunking
// ---------------------------------------------------------------------------

/// A sentence (or part of an over-long sentence) with its token count.
#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    tokens: usize,
}

/// Split sections into chunks of at most `chunk_size` tokens.
///
/// * Whole sentences are packed greedily; chunks never cross sections.
/// * A sentence longer than `chunk_size` is split at word boundaries, and a
///   single word longer than `chunk_size` at character boundaries.
/// * Each chunk after the first in a section starts with the trailing whole
///   sentences of the previous chunk totalling at most `overlap` tokens.
/// * `chunk_size` 0 is treated as 1; `overlap` is capped at `chunk_size - 1`.
///
/// `count_tokens` is called about once per sentence plus once per chunk.
/// The only case in which a chunk can exceed `chunk_size` is a single
/// character that on its own counts as more than `chunk_size` tokens.
pub fn chunk_sections(
    sections: &[Section],
    chunk_size: usize,
    overlap: usize,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Vec<Chunk> {
    let limits = Limits { max_chunks: usize::MAX, ..Limits::default() };
    // Without a chunk limit and with a hook that returns, nothing can fail.
    chunk_document(sections, chunk_size, overlap, count_tokens, &limits, &interrupt::never).unwrap_or_default()
}

/// [`chunk_sections`] within `limits`: more than [`Limits::max_chunks`] chunks is an error (found as
/// soon as the chunk count passes it), and a "word" (run of characters without whitespace) longer
/// than [`Limits::max_word_chars`] counts as at least one token per `max_word_chars` characters
/// whatever `count_tokens` says, so that it is hard-split and no chunk can grow past about
/// `chunk_size × max_word_chars` characters (word-piece tokenizers count such a word as one
/// unknown token). `interrupt` is called per section and every few dozen token counts.
pub fn chunk_document(
    sections: &[Section],
    chunk_size: usize,
    overlap: usize,
    count_tokens: &dyn Fn(&str) -> usize,
    limits: &Limits,
    interrupt: Interrupt<'_>,
) -> Result<Vec<Chunk>, LimitExceeded> {
    let chunk_size = chunk_size.max(1);
    let overlap = overlap.min(chunk_size - 1);
    let max_word = limits.max_word_chars.max(1);
    let calls = Cell::new(0usize);
    let count = |s: &str| {
        calls.set(calls.get() + 1);
        if calls.get() % COUNTS_PER_INTERRUPT == 0 {
            interrupt();
        }
        count_tokens(s).saturating_add(long_word_tokens(s, max_word))
    };
    let mut chunks: Vec<Chunk> = Vec::new();
    for section in sections {
        interrupt();
        for (a, b) in chunk_text(&section.text, chunk_size, overlap, &count) {
            limits.check_chunks(chunks.len() + 1)?;
            chunks.push(Chunk {
                index: chunks.len(),
                content: section.text[a..b].to_string(),
                headings: section.headings.clone(),
            });
        }
    }
    Ok(chunks)
}

/// Extra tokens for the words of `s` longer than `max_word` characters: one per `max_word`
/// characters of each such word.
fn long_word_tokens(s: &str, max_word: usize) -> usize {
    s.split_whitespace()
        .filter(|w| w.len() > max_word) // bytes ≥ chars: a cheap first test
        .map(|w| w.chars().count() / max_word)
        .sum()
}

/// Byte ranges of the chunks of one text.
fn chunk_text(
    text: &str,
    chunk_size: usize,
    overlap: usize,
    count: &dyn Fn(&str) -> usize,
) -> Vec<(usize, usize)> {
    let mut units: Vec<Unit> = Vec::new();
    for (a, b) in sentence_spans(text) {
        let tokens = count(&text[a..b]);
        if tokens <= chunk_size {
            units.push(Unit { start: a, end: b, tokens });
        } else {
            split_oversized(text, a, b, tokens, chunk_size, count, &mut units);
        }
    }

    let mut out = Vec::new();
    let mut lo = 0usize;
    let mut sum = 0usize;
    for i in 0..units.len() {
        let t = units[i].tokens;
        if i > lo && sum.saturating_add(t) > chunk_size {
            emit(text, &units[lo..i], chunk_size, count, &mut out);
            // Overlap: trailing sentences of the previous chunk, never all of it.
            let mut k = i;
            let mut ov = 0usize;
            while k > lo + 1 {
                let add = units[k - 1].tokens;
                if ov + add > overlap || ov + add + t > chunk_size {
                    break;
                }
                ov += add;
                k -= 1;
            }
            lo = k;
            sum = ov;
        }
        sum = sum.saturating_add(t);
    }
    if lo < units.len() {
        emit(text, &units[lo..], chunk_size, count, &mut out);
    }
    out
}

/// Emit the chunk made of `units`, verifying its real token count when it
/// joins several units (sum of counts is only an approximation).
fn emit(
    text: &str,
    units: &[Unit],
    chunk_size: usize,
    count: &dyn Fn(&str) -> usize,
    out: &mut Vec<(usize, usize)>,
) {
    let (Some(first), Some(last)) = (units.first(), units.last()) else {
        return;
    };
    let (a, b) = (first.start, last.end);
    if units.len() > 1 {
        let tokens = count(&text[a..b]);
        if tokens > chunk_size {
            let mut pieces = Vec::new();
            split_oversized(text, a, b, tokens, chunk_size, count, &mut pieces);
            out.extend(pieces.iter().map(|u| (u.start, u.end)));
            return;
        }
    }
    out.push((a, b));
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn next_char_end(s: &str, i: usize) -> usize {
    s[i..].chars().next().map_or(s.len(), |c| i + c.len_utf8())
}

/// Split `text[a..b]` (which counts `tokens` > `limit`) into pieces of at most
/// `limit` tokens, cutting at whitespace when possible and inside a word only
/// when that word alone is too long. Piece sizes are estimated from the
/// bytes-per-token ratio, so `count` is called about once per piece.
fn split_oversized(
    text: &str,
    a: usize,
    b: usize,
    tokens: usize,
    limit: usize,
    count: &dyn Fn(&str) -> usize,
    out: &mut Vec<Unit>,
) {
    let bytes_per_token = (b - a) as f64 / tokens.max(1) as f64;
    let base_target = ((limit as f64 * bytes_per_token) as usize).max(1);
    let seg = &text[..b];
    let mut pos = a;
    // Inside a word known to be longer than `limit`, up to this position.
    let mut hard_until = a;
    while pos < b {
        let rest = &seg[pos..];
        pos += rest.len() - rest.trim_start().len();
        if pos >= b {
            break;
        }
        let mut target = base_target;
        loop {
            let hard = pos < hard_until;
            let end = if pos + target >= b && !hard {
                b
            } else if hard {
                let e = floor_boundary(seg, (pos + target).min(hard_until));
                if e <= pos {
                    next_char_end(seg, pos)
                } else {
                    e
                }
            } else {
                let window = &seg[pos..floor_boundary(seg, pos + target)];
                match window.rfind(char::is_whitespace) {
                    Some(w) if w > 0 => pos + w,
                    _ => {
                        // First word is longer than the target: try the whole word.
                        seg[pos..].find(char::is_whitespace).map_or(b, |w| pos + w)
                    }
                }
            };
            let piece = seg[pos..end].trim_end();
            let piece_end = pos + piece.len();
            let t = count(piece);
            if t <= limit {
                out.push(Unit { start: pos, end: piece_end, tokens: t });
                pos = end;
                break;
            }
            let one_char = next_char_end(seg, pos);
            if piece_end <= one_char {
                // A single character over the limit: nothing smaller exists.
                out.push(Unit { start: pos, end: piece_end, tokens: t });
                pos = end.max(one_char);
                break;
            }
            if !hard && !piece.contains(char::is_whitespace) {
                hard_until = piece_end; // one word alone is too long
            }
            // Shrink proportionally (a bit more after the first miss).
            let factor = if target == base_target { 1.0 } else { 0.9 };
            let scaled = ((piece_end - pos) as f64 * limit as f64 / t as f64 * factor) as usize;
            target = scaled.min(piece_end - pos - 1).max(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    fn sec(headings: &[&str], text: &str) -> Section {
        Section { headings: headings.iter().map(|s| s.to_string()).collect(), text: text.to_string() }
    }

    #[test]
    fn sentences_basic() {
        let t = "Hello world. This is a test! Is it? Yes: \"Quoted.\" Then (parenthetical.) 42 is a number.";
        assert_eq!(
            split_sentences(t),
            vec!["Hello world.", "This is a test!", "Is it?", "Yes: \"Quoted.\"", "Then (parenthetical.)", "42 is a number."]
        );
        assert_eq!(split_sentences(""), Vec::<&str>::new());
        assert_eq!(split_sentences("   \n\n  "), Vec::<&str>::new());
        assert_eq!(split_sentences("no terminal"), vec!["no terminal"]);
    }

    #[test]
    fn sentences_abbreviations_numbers_ellipses() {
        let t = "Use an index, e.g. A B-tree. See Fig. 3 and No. 5 vs. Dr. Smith etc. Then Mr. J. R. Tolkien wrote i.e. Things. \
                 Pi is 3.14 and version 17.9 is new. Wait... what happened? In the U.S. Army it works. See Table 11.1. Index Types are listed.";
        assert_eq!(
            split_sentences(t),
            vec![
                "Use an index, e.g. A B-tree.",
                "See Fig. 3 and No. 5 vs. Dr. Smith etc. Then Mr. J. R. Tolkien wrote i.e. Things.",
                "Pi is 3.14 and version 17.9 is new.",
                "Wait... what happened?",
                "In the U.S. Army it works.",
                "See Table 11.1. Index Types are listed.",
            ]
        );
        // Lower-case after a period is not a boundary; neither is "x.y".
        assert_eq!(split_sentences("see foo.bar. and more. Next one"), vec!["see foo.bar. and more.", "Next one"]);
    }

    #[test]
    fn sentences_lines_and_paragraphs() {
        let t = "First paragraph without stop\n\nSecond paragraph wraps\nover lines, and\ncontinues here. Done.\n\nItems:\n- one\n- two\n* three\n1. four\n2) five\n\nSELECT *\n    FROM t\n    WHERE x = 1;\nNext";
        assert_eq!(
            split_sentences(t),
            vec![
                "First paragraph without stop",
                "Second paragraph wraps\nover lines, and\ncontinues here.",
                "Done.",
                "Items:",
                "- one",
                "- two",
                "* three",
                "1. four",
                "2) five",
                "SELECT *",
                "FROM t",
                "WHERE x = 1;",
                "Next",
            ]
        );
        // CRLF and unicode / CJK
        assert_eq!(split_sentences("Ça va. Très bien!\r\n\r\nÜber alles."), vec!["Ça va.", "Très bien!", "Über alles."]);
        assert_eq!(split_sentences("今日は晴れ。明日は雨！本当？"), vec!["今日は晴れ。", "明日は雨！", "本当？"]);
    }

    #[test]
    fn context_prefix_works() {
        assert_eq!(context_prefix(None, &[]), "");
        assert_eq!(context_prefix(Some("  "), &["".to_string()]), "");
        assert_eq!(context_prefix(Some("CREATE INDEX"), &["Parameters".to_string()]), "CREATE INDEX > Parameters");
        assert_eq!(
            context_prefix(Some("11.2. Index Types"), &["11.2.  index types".to_string(), "11.2.1. B-Tree".to_string()]),
            "11.2. Index Types > 11.2.1. B-Tree"
        );
        assert_eq!(context_prefix(None, &["A".to_string(), "B".to_string()]), "A > B");
    }

    /// Every sentence of every section appears in some chunk, in order.
    fn assert_covers(sections: &[Section], chunks: &[Chunk]) {
        let mut ci = 0usize;
        for s in sections {
            for sent in split_sentences(&s.text) {
                // Words longer than the word limit are hard-split: their pieces are checked by the
                // tests that join the chunks again.
                let max_word = crate::limits::DEFAULT_MAX_WORD_CHARS;
                let pieces: Vec<&str> = sent.split_whitespace().filter(|w| w.chars().count() <= max_word).collect();
                // each word of the sentence must be found in order in this section's chunks
                for w in pieces {
                    loop {
                        assert!(ci < chunks.len(), "word {w:?} not covered");
                        if chunks[ci].headings == s.headings && chunks[ci].content.contains(w) {
                            break;
                        }
                        ci += 1;
                    }
                }
            }
        }
    }

    fn check(chunks: &[Chunk], limit: usize) {
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.index, i);
            assert!(words(&c.content) <= limit, "chunk {i} has {} > {limit} words: {:?}", words(&c.content), c.content);
            assert!(!c.content.trim().is_empty());
            assert_eq!(c.content, c.content.trim());
        }
    }

    #[test]
    fn chunks_respect_limit_and_sections() {
        let sections = vec![
            sec(&["A"], "One two three. Four five six seven. Eight nine. Ten eleven twelve thirteen fourteen."),
            sec(&[], ""),
            sec(&["B", "C"], "Short. Another short one here."),
        ];
        let chunks = chunk_sections(&sections, 6, 0, &words);
        check(&chunks, 6);
        assert_covers(&sections, &chunks);
        let contents: Vec<&str> = chunks.iter().map(|c| c.content.as_str()).collect();
        assert_eq!(
            contents,
            vec![
                "One two three.",
                "Four five six seven. Eight nine.",
                "Ten eleven twelve thirteen fourteen.",
                "Short. Another short one here.",
            ]
        );
        assert_eq!(chunks[3].headings, vec!["B".to_string(), "C".to_string()]);
        assert_eq!(chunks[0].headings, vec!["A".to_string()]);
    }

    #[test]
    fn overlap_works() {
        let s = vec![sec(&[], "S1 aa. S2 bb. S3 cc. S4 dd. S5 ee. S6 ff.")];
        let chunks = chunk_sections(&s, 6, 2, &words);
        check(&chunks, 6);
        let contents: Vec<&str> = chunks.iter().map(|c| c.content.as_str()).collect();
        assert_eq!(contents, vec!["S1 aa. S2 bb. S3 cc.", "S3 cc. S4 dd. S5 ee.", "S5 ee. S6 ff."]);
        // Overlap never makes a chunk that is only overlap, and always progresses.
        for size in 1..8 {
            for ov in 0..size {
                let chunks = chunk_sections(&s, size, ov, &words);
                check(&chunks, size);
                assert_covers(&s, &chunks);
                for w in chunks.windows(2) {
                    assert_ne!(w[0].content, w[1].content);
                    assert!(!w[0].content.ends_with(&w[1].content), "chunk is only overlap");
                }
            }
        }
        // overlap >= chunk_size and chunk_size 0 are clamped, not fatal
        let chunks = chunk_sections(&s, 3, 10, &words);
        check(&chunks, 3);
        let chunks = chunk_sections(&s, 0, 0, &words);
        check(&chunks, 1);
        assert_covers(&s, &chunks);
    }

    #[test]
    fn long_sentence_and_long_word() {
        let long: String = (0..100).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        let text = format!("Intro. {long}. Outro.");
        let s = vec![sec(&["H"], &text)];
        let chunks = chunk_sections(&s, 7, 2, &words);
        check(&chunks, 7);
        assert_covers(&s, &chunks);
        // words were not cut
        for c in &chunks {
            for w in c.content.split_whitespace() {
                assert!(w.starts_with('w') || w == "Intro." || w == "Outro.", "{w}");
            }
        }
        // A "word" that itself is too long for a char-based counter is hard split.
        let chars = |s: &str| s.chars().filter(|c| !c.is_whitespace()).count();
        let s = vec![sec(&[], "abcdefghijklmnopqrstuvwxyz end")];
        let chunks = chunk_sections(&s, 5, 0, &chars);
        for c in &chunks {
            assert!(chars(&c.content) <= 5, "{c:?}");
        }
        let joined: String = chunks.iter().map(|c| c.content.as_str()).collect::<String>().replace(' ', "");
        assert_eq!(joined, "abcdefghijklmnopqrstuvwxyzend");
        assert_eq!(chunks[0].content, "abcde");
    }

    #[test]
    fn unicode_never_split_mid_char() {
        let chars = |s: &str| s.chars().count();
        let text = "日本語のテキストはスペースがありません。Ωμέγα λέξη ü😀😀😀😀 done";
        let s = vec![sec(&[], text)];
        for size in 1..12 {
            let chunks = chunk_sections(&s, size, 0, &chars);
            for c in &chunks {
                assert!(chars(&c.content) <= size, "{size}: {c:?}");
            }
            let joined: String = chunks.iter().map(|c| c.content.as_str()).collect::<Vec<_>>().join("");
            let orig: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            let got: String = joined.chars().filter(|c| !c.is_whitespace()).collect();
            assert_eq!(got, orig);
        }
    }

    #[test]
    fn counts_tokens_linearly() {
        use std::cell::Cell;
        let calls = Cell::new(0usize);
        let counter = |s: &str| {
            calls.set(calls.get() + 1);
            s.split_whitespace().count()
        };
        let text: String = (0..2000).map(|i| format!("Sentence number {i} is here. ")).collect();
        let s = vec![sec(&[], &text)];
        let chunks = chunk_sections(&s, 50, 10, &counter);
        check(&chunks, 50);
        assert!(calls.get() <= 2000 + chunks.len() + 10, "{} calls", calls.get());
    }

    #[test]
    fn underestimating_counter_is_still_safe() {
        // Joining adds tokens the per-sentence counts did not see: verify + re-split.
        let counter = |s: &str| s.split_whitespace().count() + s.matches(". ").count() * 3;
        let text: String = (0..200).map(|i| format!("Item {i} ok. ")).collect();
        let s = vec![sec(&[], &text)];
        let chunks = chunk_sections(&s, 12, 3, &counter);
        for c in &chunks {
            assert!(counter(&c.content) <= 12, "{c:?}");
        }
        assert_covers(&s, &chunks);
    }

    #[test]
    fn fuzz_random_text() {
        const FRAGS: &[&str] = &[
            "word", "Word", "e.g.", "3.14", ". ", "! ", "? ", "...", " ", "  ", "\n", "\n\n", "\n- ", "\n1. ", "\n    ",
            "é", "😀", "日本語。", "Mr.", "\"Q.\" ", "(x.) ", "averyveryverylongwordwithoutspaces", ":", "\t", "a", "Z",
        ];
        let mut seed: u64 = 0x2545f4914f6cdd1d;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let chars = |s: &str| s.chars().filter(|c| !c.is_whitespace()).count();
        for _ in 0..400 {
            let n = (next() % 80) as usize;
            let text: String = (0..n).map(|_| FRAGS[(next() % FRAGS.len() as u64) as usize]).collect();
            let sections = vec![sec(&["h"], &text), sec(&[], &text)];
            let size = 1 + (next() % 15) as usize;
            let ov = (next() % size as u64) as usize;
            for (k, counter) in [&words as &dyn Fn(&str) -> usize, &chars].into_iter().enumerate() {
                let chunks = chunk_sections(&sections, size, ov, counter);
                for (i, c) in chunks.iter().enumerate() {
                    assert_eq!(c.index, i);
                    assert!(counter(&c.content) <= size, "{size} {c:?}");
                    assert!(!c.content.is_empty() && text.contains(&c.content));
                }
                if k == 0 {
                    assert_covers(&sections, &chunks);
                }
                // Without overlap the chunks are exactly the text, minus whitespace.
                let chunks = chunk_sections(&sections[..1], size, 0, counter);
                let strip = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
                let joined: String = chunks.iter().map(|c| strip(&c.content)).collect();
                assert_eq!(joined, strip(&text));
            }
            for sent in split_sentences(&text) {
                assert!(!sent.is_empty() && sent == sent.trim());
            }
        }
    }

    #[test]
    fn huge_input_is_fast() {
        let para = "PostgreSQL provides several index types: B-tree, Hash, GiST, SP-GiST, GIN and BRIN. \
                    Each index type uses a different algorithm, e.g. one that is best suited to different types of queries! \
                    By default, the CREATE INDEX command creates B-tree indexes, version 17.9 included.\n\n";
        let mut text = String::with_capacity(21 << 20);
        while text.len() < 20 << 20 {
            text.push_str(para);
        }
        // plus one giant "sentence" without punctuation
        let giant = "word ".repeat(200_000);
        let s = vec![sec(&[], &text), sec(&["giant"], giant.trim())];
        let t0 = std::time::Instant::now();
        let chunks = chunk_sections(&s, 256, 32, &words);
        let el = t0.elapsed();
        assert!(chunks.len() > 1000);
        assert!(chunks.iter().all(|c| words(&c.content) <= 256));
        eprintln!("20 MB chunked into {} chunks in {el:?}", chunks.len());
        if !cfg!(debug_assertions) {
            assert!(el.as_secs() < 5, "too slow: {el:?}");
        }
    }
}

//! A mutation fuzzer for the parsers and the chunker that runs on stable Rust (cargo-fuzz needs
//! nightly). `make fuzz FUZZ_SECONDS=N` runs every target for N seconds:
//!
//!     cargo run --release -p ragbench-core --example fuzz -- <target|all> <seconds> [seed-dir]
//!
//! Targets: pdf, docx, html, markdown, text (decoding), chunk. Each starts from the seeds in
//! `tests/fixtures/formats` (and small seeds written here), mutates them (bit flips, random bytes,
//! deletions, duplicated ranges — the amplification shape —, target tokens such as `<ul>` or `/Kids`,
//! splices of two inputs), and runs the target with small budgets. It reports, per target: executions,
//! executions/s, corpus size, and three kinds of finding, each saved under `target/fuzz/<target>/`:
//!
//! - **crash**: the target panicked;
//! - **slow**: one input took longer than 2 s (a hang, or work that is not linear in the input);
//! - **overrun**: the output broke its budget (text over the limit, more chunks than allowed, a chunk
//!   larger than its bound) — the budgets must be enforced, never exceeded.
//!
//! Without coverage instrumentation (nightly only), an input joins the corpus when its outcome has a
//! shape not seen before (error kind, output size bucket, section and chunk counts). The process exits
//! with status 1 if anything was found. Every finding becomes a regression test in the core crate.

use ragbench_core::ingest::chunk::chunk_document;
use ragbench_core::ingest::formats::{self, decode_text, extract_with};
use ragbench_core::ingest::parse::{parse_with, DocFormat, Section};
use ragbench_core::interrupt;
use ragbench_core::limits::Limits;
use std::collections::HashSet;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TARGETS: [&str; 6] = ["pdf", "docx", "html", "markdown", "text", "chunk"];
const SLOW: Duration = Duration::from_secs(2);
const MAX_INPUT: usize = 256 * 1024;

/// xorshift64*: small, fast, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn limits() -> Limits {
    let mut l = Limits::with_text_bytes(1024 * 1024);
    l.max_chunks = 2_000;
    l.max_pages = 200;
    l
}

/// What one run produced, reduced to a shape (for corpus novelty) and its budget check.
struct Outcome {
    shape: String,
    overrun: Option<String>,
}

fn sections_shape(kind: &str, sections: &[Section]) -> (String, usize) {
    let bytes: usize = sections.iter().map(|s| s.text.len()).sum();
    (format!("{kind}:ok:{}:{}", sections.len().min(64), bucket(bytes)), bytes)
}

fn bucket(n: usize) -> usize {
    (usize::BITS - n.leading_zeros()) as usize
}

fn text_budget(bytes: usize, l: &Limits) -> Option<String> {
    (bytes > l.max_text_bytes).then(|| format!("{bytes} bytes of text over the {} byte budget", l.max_text_bytes))
}

fn run_target(target: &str, input: &[u8]) -> Outcome {
    let l = limits();
    let hook = &interrupt::never;
    match target {
        "pdf" | "docx" => {
            let name = if target == "pdf" { "fuzz.pdf" } else { "fuzz.docx" };
            match extract_with(name, input, &l, hook) {
                Ok(x) => Outcome {
                    shape: format!("{target}:ok:{}", bucket(x.text.len())),
                    overrun: text_budget(x.text.len(), &l),
                },
                Err(e) => Outcome { shape: format!("{target}:err:{}", error_kind(&e)), overrun: None },
            }
        }
        "html" | "markdown" => {
            let text = String::from_utf8_lossy(input);
            let format = if target == "html" { DocFormat::Html } else { DocFormat::Markdown };
            match parse_with("fuzz", &text, Some(format), &l, hook) {
                Ok(p) => {
                    let (shape, bytes) = sections_shape(target, &p.sections);
                    Outcome { shape, overrun: text_budget(bytes, &l) }
                }
                Err(e) => Outcome { shape: format!("{target}:err:{}", first_word(&e.to_string())), overrun: None },
            }
        }
        "text" => match decode_text("fuzz.txt", input) {
            Ok(t) => Outcome {
                shape: format!("text:ok:{}", bucket(t.len())),
                // UTF-16 → UTF-8 grows at most 3/2; anything else is not decoding.
                overrun: (t.len() > input.len() * 3 / 2 + 4).then(|| format!("{} bytes decoded from {}", t.len(), input.len())),
            },
            Err(e) => Outcome { shape: format!("text:err:{}", error_kind(&e)), overrun: None },
        },
        "chunk" => {
            // The chunker's input is what the parser made of a document (whitespace runs collapsed).
            let text = String::from_utf8_lossy(input);
            let sections = match parse_with("fuzz.txt", &text, Some(DocFormat::PlainText), &l, hook) {
                Ok(p) => p.sections,
                Err(e) => return Outcome { shape: format!("chunk:parse-err:{}", first_word(&e.to_string())), overrun: None },
            };
            let words = |s: &str| s.split_whitespace().count();
            let (size, overlap) = (32, 8);
            match chunk_document(&sections, size, overlap, &words, &l, hook) {
                Ok(chunks) => {
                    // A chunk holds at most `size` tokens, a long word counting one per max_word_chars.
                    let bound = size * l.max_word_chars * 4 + 64;
                    // measured without whitespace: the token counter here counts words only
                    let worst = chunks
                        .iter()
                        .map(|c| c.content.split_whitespace().map(str::len).sum::<usize>())
                        .max()
                        .unwrap_or(0);
                    let overrun = if chunks.len() > l.max_chunks {
                        Some(format!("{} chunks over the budget of {}", chunks.len(), l.max_chunks))
                    } else if worst > bound {
                        Some(format!("a chunk of {worst} bytes (bound {bound})"))
                    } else {
                        None
                    };
                    Outcome { shape: format!("chunk:ok:{}:{}", bucket(chunks.len()), bucket(worst)), overrun }
                }
                Err(e) => Outcome { shape: format!("chunk:err:{}", first_word(&e.to_string())), overrun: None },
            }
        }
        other => panic!("unknown target {other}"),
    }
}

fn error_kind(e: &formats::FormatError) -> String {
    format!("{e:?}").split(|c: char| !c.is_alphanumeric()).next().unwrap_or("").to_string()
}

fn first_word(s: &str) -> String {
    s.split_whitespace().take(3).collect::<Vec<_>>().join("_")
}

/// Tokens that matter to each format: inserted and repeated by the mutator.
fn dictionary(target: &str) -> &'static [&'static [u8]] {
    match target {
        "pdf" => &[b"obj", b"endobj", b"/Kids [", b"/Type /Pages", b"/Parent", b"stream\n", b"endstream", b"BT", b"ET", b"Tj", b"TJ", b"/Prev 0", b"xref", b"trailer", b"R", b"[(", b")]"],
        "docx" => &[b"<w:p>", b"</w:p>", b"<w:t>", b"</w:t>", b"<w:tbl>", b"<w:tr><w:tc>", b"<!DOCTYPE x [<!ENTITY a \"aaaa\">]>", b"&a;", b"<w:numPr><w:ilvl w:val=\"9\"/></w:numPr>"],
        "html" => &[b"<ul>", b"<li>", b"<ol>", b"</li>", b"<table><tr><td>", b"<h1>", b"&amp;", b"&#x10FFFF;", b"<!--", b"<script>", b"<pre>", b"<blockquote>"],
        "markdown" => &[b"- ", b"  - ", b"> ", b"# ", b"```\n", b"1. ", b"|a|b|\n|-|-|\n", b"[x](y)", b"\n\n", b"***"],
        "text" => &[b"\xff\xfe", b"\xfe\xff", b"\x00", b"\xc3", b"\xed\xa0\x80", b"\r\n"],
        _ => &[b" ", b". ", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", b"\n\n", b"\xe2\x80\x8b", b"Dr. ", b"? "],
    }
}

fn mutate(rng: &mut Rng, target: &str, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, bytes);
            }
            2 if len > 1 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                v.drain(a..b);
            }
            3 if len > 0 => {
                // duplicate a range many times: the shape of every amplification bug
                let a = rng.below(len);
                let b = (a + 1 + rng.below(32)).min(len);
                let piece = v[a..b].to_vec();
                let times = 1 + rng.below(2000);
                let mut rep = Vec::with_capacity(piece.len() * times);
                for _ in 0..times {
                    rep.extend_from_slice(&piece);
                }
                v.splice(b..b, rep);
            }
            4 | 5 => {
                let dict = dictionary(target);
                let token = dict[rng.below(dict.len())];
                let i = rng.below(len + 1);
                let times = if rng.below(4) == 0 { 1 + rng.below(500) } else { 1 };
                let mut rep = Vec::new();
                for _ in 0..times {
                    rep.extend_from_slice(token);
                }
                v.splice(i..i, rep);
            }
            _ if !other.is_empty() => {
                let cut = rng.below(v.len() + 1);
                let from = rng.below(other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..(from + 1 + rng.below(4096)).min(other.len())]);
            }
            _ => {}
        }
    }
    v.truncate(MAX_INPUT);
    v
}

/// DOCX inputs are mutated inside their XML and zipped again (random bytes in a ZIP only test the
/// ZIP reader's checksums).
fn docx_from_xml(xml: &[u8]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default();
        let ct = br#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
        let _ = z.start_file("[Content_Types].xml", opts).and_then(|_| z.write_all(ct).map_err(Into::into));
        let _ = z.start_file("word/document.xml", opts).and_then(|_| z.write_all(xml).map_err(Into::into));
        let _ = z.finish();
    }
    buf.into_inner()
}

fn docx_xml(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).ok()?;
    let mut f = z.by_name("word/document.xml").ok()?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut f, MAX_INPUT as u64), &mut out).ok()?;
    Some(out)
}

fn seeds(target: &str, dir: &Path) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("").to_string();
            let Ok(bytes) = std::fs::read(&p) else { continue };
            let keep = match target {
                "pdf" => ext == "pdf",
                "docx" => ext == "docx",
                "text" | "chunk" => ext == "txt" || ext == "md",
                "markdown" => ext == "md",
                _ => false,
            };
            if keep {
                out.push(if target == "docx" { docx_xml(&bytes).unwrap_or(bytes) } else { bytes });
            }
        }
    }
    let builtin: &[&[u8]] = match target {
        "html" => &[b"<html><head><title>T</title></head><body><h1>Intro</h1><p>One. Two.</p><ul><li>a<ul><li>b</li></ul></li></ul><table><tr><td>x</td></tr></table></body></html>"],
        "markdown" => &[b"# Title\n\nPara one. Para two.\n\n- a\n  - b\n    - c\n\n> quote\n\n```\ncode\n```\n"],
        "docx" => &[br#"<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Hello world.</w:t></w:r></w:p><w:tbl><w:tr><w:tc><w:p><w:r><w:t>cell</w:t></w:r></w:p></w:tc></w:tr></w:tbl></w:body></w:document>"#],
        "text" => &[b"plain text\n", b"\xff\xfeh\x00i\x00", b"caf\xc3\xa9"],
        "chunk" => &[b"First sentence. Second one is longer than the first. Third!\n\nNew paragraph here."],
        _ => &[],
    };
    out.extend(builtin.iter().map(|b| b.to_vec()));
    if out.is_empty() {
        out.push(b" ".to_vec());
    }
    out
}

fn save(target: &str, kind: &str, n: usize, input: &[u8]) -> PathBuf {
    let dir = PathBuf::from("target/fuzz").join(target);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{kind}-{n}"));
    let _ = std::fs::write(&path, input);
    path
}

struct Report {
    execs: u64,
    corpus: usize,
    crashes: usize,
    slow: usize,
    overruns: usize,
}

fn fuzz(target: &str, seconds: u64, seed_dir: &Path, seed: u64) -> Report {
    let mut rng = Rng(seed | 1);
    let mut corpus = seeds(target, seed_dir);
    let mut seen: HashSet<String> = HashSet::new();
    let _ = std::fs::remove_dir_all(PathBuf::from("target/fuzz").join(target));
    let mut r = Report { execs: 0, corpus: 0, crashes: 0, slow: 0, overruns: 0 };
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        let base = &corpus[rng.below(corpus.len())];
        let other = &corpus[rng.below(corpus.len())];
        let raw = mutate(&mut rng, target, base, other);
        let input = if target == "docx" { docx_from_xml(&raw) } else { raw.clone() };
        let t0 = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| run_target(target, &input)));
        let took = t0.elapsed();
        r.execs += 1;
        match outcome {
            Err(_) => {
                r.crashes += 1;
                let p = save(target, "crash", r.crashes, &input);
                if r.crashes <= 5 {
                    eprintln!("[{target}] CRASH saved to {}", p.display());
                }
            }
            Ok(o) => {
                if let Some(why) = &o.overrun {
                    r.overruns += 1;
                    let p = save(target, "overrun", r.overruns, &input);
                    if r.overruns <= 5 {
                        eprintln!("[{target}] OVERRUN ({why}) saved to {}", p.display());
                    }
                }
                if took > SLOW {
                    r.slow += 1;
                    let p = save(target, "slow", r.slow, &input);
                    if r.slow <= 5 {
                        eprintln!("[{target}] SLOW ({took:?} for {} bytes) saved to {}", input.len(), p.display());
                    }
                }
                if seen.insert(o.shape) && corpus.len() < 4096 {
                    corpus.push(raw);
                }
            }
        }
    }
    r.corpus = corpus.len();
    r
}

/// `fuzz replay <target> <file>...`: run saved inputs once each (findings, regression candidates) and
/// print how long each took and what came out.
fn replay(target: &str, files: &[String]) {
    for f in files {
        let Ok(bytes) = std::fs::read(f) else {
            eprintln!("{f}: cannot read");
            continue;
        };
        let t0 = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| run_target(target, &bytes)));
        let took = t0.elapsed();
        match outcome {
            Err(_) => println!("{f}: CRASH after {took:?}"),
            Ok(o) => println!("{f}: {took:?}, {} bytes, shape {}{}", bytes.len(), o.shape,
                              o.overrun.map(|w| format!(", OVERRUN {w}")).unwrap_or_default()),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("replay") && args.len() >= 3 {
        std::panic::set_hook(Box::new(|_| {}));
        replay(&args[1], &args[2..]);
        return;
    }
    let which = args.first().map(String::as_str).unwrap_or("all");
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed_dir = PathBuf::from(args.get(2).cloned().unwrap_or_else(|| "tests/fixtures/formats".into()));
    let seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    let targets: Vec<&str> = if which == "all" { TARGETS.to_vec() } else { vec![which] };
    if targets.iter().any(|t| !TARGETS.contains(t)) {
        eprintln!("unknown target '{which}'; targets: all, {}", TARGETS.join(", "));
        std::process::exit(2);
    }
    // Panics are findings, printed once per input by the loop; keep the default hook quiet.
    std::panic::set_hook(Box::new(|_| {}));
    println!("fuzz: seed {seed}, {seconds} s per target, seeds from {}", seed_dir.display());
    println!("{:<9} {:>10} {:>9} {:>7} {:>7} {:>5} {:>8}", "target", "execs", "execs/s", "corpus", "crashes", "slow", "overruns");
    let mut found = 0;
    for t in targets {
        let r = fuzz(t, seconds, &seed_dir, seed);
        println!(
            "{:<9} {:>10} {:>9.0} {:>7} {:>7} {:>5} {:>8}",
            t,
            r.execs,
            r.execs as f64 / seconds.max(1) as f64,
            r.corpus,
            r.crashes,
            r.slow,
            r.overruns
        );
        found += r.crashes + r.slow + r.overruns;
    }
    if found > 0 {
        println!("fuzz: {found} findings saved under target/fuzz/");
        std::process::exit(1);
    }
    println!("fuzz: no crash, hang or budget overrun");
}

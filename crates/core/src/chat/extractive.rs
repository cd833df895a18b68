//! The offline default answer generator: no LLM, it quotes the sentences of the retrieved
//! sources that best match the question, each with its source number.
//!
//! Every quote is an exact substring of its source's `content` (only leading list/heading
//! markers and surrounding whitespace are left out), so nothing is invented or rewritten.
//!
//! How sentences are chosen:
//! * splitting: at `.` `!` `?` followed by whitespace (closing quotes/brackets may come
//!   in between; a few abbreviations such as "e.g." do not end a sentence), at `。！？`, and
//!   at newlines; fragments of fewer than [`MIN_SENTENCE_WORDS`] or more than
//!   [`MAX_SENTENCE_WORDS`] whitespace-separated words are skipped;
//! * terms: lower-cased alphanumeric runs (Unicode-aware), minus a small English stopword
//!   list and one-letter tokens, through a crude suffix stemmer (`s`, `es`, `ing`, `ed`,
//!   `ly`, final `e`, doubled final consonant) applied to question and sentences alike;
//! * score: sum over the distinct question terms found in the sentence of an idf weight
//!   over all candidate sentences (`ln(1 + (N - df + 0.5) / (df + 0.5))`: rarer terms weigh
//!   more), plus, for sentences that match at all, a small bonus of at most
//!   [`RANK_BONUS`] for better-ranked sources; sentences scoring below
//!   [`RELATIVE_CUTOFF`] times the best score are left out, as are repeats of the same
//!   text (overlapping chunks);
//! * order: score descending, then source rank, then position in the source.
//!
//! Plain Rust, no Postgres API, no panics.

use std::collections::{HashMap, HashSet};

use super::prompt::Source;

/// One quoted sentence and where it comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Quote {
    /// `Source::rank` of the source it was taken from (the number cited as `[n]`).
    pub source_rank: usize,
    pub chunk_id: String,
    pub file_name: String,
    /// Exact substring of the source's content.
    pub sentence: String,
    pub score: f64,
}

/// First line of a rendered answer with quotes.
pub const LEAD_IN: &str = "From the sources:";
/// The whole answer when no sentence matches the question.
pub const NO_ANSWER: &str = "No relevant passage was found in the documents.";
/// Shortest sentence quoted, in whitespace-separated words.
pub const MIN_SENTENCE_WORDS: usize = 4;
/// Longest sentence quoted, in whitespace-separated words.
pub const MAX_SENTENCE_WORDS: usize = 80;
/// Bonus for a matching sentence of the best-ranked source (decreasing linearly to 0).
pub const RANK_BONUS: f64 = 0.15;
/// Sentences scoring below this fraction of the best score are not quoted.
pub const RELATIVE_CUTOFF: f64 = 0.25;

const STOPWORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as",
    "at", "be", "because", "been", "before", "being", "between", "both", "but", "by", "can",
    "could", "did", "do", "does", "doing", "done", "down", "during", "each", "else", "etc", "ever",
    "few", "for", "from", "further", "get", "gets", "got", "had", "has", "have", "having", "he",
    "her", "here", "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its",
    "itself", "just", "let", "like", "may", "me", "might", "more", "most", "much", "must", "my",
    "no", "nor", "not", "now", "of", "off", "on", "once", "one", "only", "or", "other", "our",
    "ours", "out", "over", "own", "please", "same", "shall", "she", "should", "so", "some", "such",
    "tell", "than", "that", "the", "their", "theirs", "them", "then", "there", "these", "they",
    "this", "those", "through", "to", "too", "under", "until", "up", "us", "use", "used", "uses",
    "using", "very", "want", "was", "we", "were", "what", "when", "where", "whether", "which",
    "while", "who", "whom", "whose", "why", "will", "with", "would", "yes", "you", "your", "yours",
];

/// Abbreviations whose final `.` does not end a sentence (lower case, without the dot).
const ABBREVIATIONS: &[&str] = &[
    "e.g", "i.e", "vs", "cf", "mr", "mrs", "ms", "dr", "fig", "approx",
];

fn is_stopword(w: &str) -> bool {
    STOPWORDS.binary_search(&w).is_ok()
}

/// Crude suffix stripping; `w` is lower case.
fn stem(w: &str) -> String {
    let len = |s: &str| s.chars().count();
    let mut s: &str = w;
    // Plurals / third person.
    if let Some(b) = s.strip_suffix("es").filter(|b| len(b) >= 3) {
        s = b;
    } else if let Some(b) = s
        .strip_suffix('s')
        .filter(|b| len(b) >= 3 && !b.ends_with('s') && !b.ends_with('u') && !b.ends_with('i'))
    {
        s = b;
    }
    // Verb forms and adverbs.
    let mut verb = false;
    for suf in ["ing", "ed", "ly"] {
        if let Some(b) = s.strip_suffix(suf).filter(|b| len(b) >= 4) {
            s = b;
            verb = suf != "ly";
            break;
        }
    }
    if let Some(b) = s.strip_suffix('e').filter(|b| len(b) >= 3) {
        s = b;
    }
    let mut out = s.to_string();
    if verb {
        // running -> runn -> run, embedded -> embedd -> embed
        let mut rev = out.chars().rev();
        if let (Some(a), Some(b)) = (rev.next(), rev.next()) {
            if a == b && a.is_ascii_alphabetic() && !"aeioulsz".contains(a) {
                out.pop();
            }
        }
    }
    out
}

/// Distinct stemmed terms of `text`, in first-occurrence order.
fn terms(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for tok in text.split(|c: char| !c.is_alphanumeric()) {
        if tok.is_empty() {
            continue;
        }
        let lower = tok.to_lowercase();
        let single = lower.chars().nth(1).is_none();
        if (single && !lower.chars().all(|c| c.is_numeric())) || is_stopword(&lower) {
            continue;
        }
        let t = stem(&lower);
        if seen.insert(t.clone()) {
            out.push(t);
        }
    }
    out
}

fn is_closing(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | ')' | ']' | '}' | '”' | '’' | '»' | '*' | '_' | '`'
    )
}

/// Whether the `.` at byte `dot` of `text` ends an abbreviation such as "e.g.".
fn is_abbreviation(text: &str, dot: usize) -> bool {
    let before = &text[..dot];
    let word_start = before
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace() || *c == '(')
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = before[word_start..].to_lowercase();
    ABBREVIATIONS.contains(&word.as_str())
}

/// Byte ranges of the sentences of `text` (trimmed, leading Markdown markers removed),
/// within the word-count limits.
fn split_sentences(text: &str) -> Vec<(usize, usize)> {
    let mut raw = Vec::new();
    let mut start = 0;
    let mut it = text.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let end = match c {
            '\n' | '\r' => Some(i),
            '。' | '！' | '？' => Some(i + c.len_utf8()),
            '.' | '!' | '?' => {
                let mut e = i + 1;
                let mut look = text[e..].char_indices();
                let mut next = look.next();
                while let Some((_, nc)) = next.filter(|(_, nc)| is_closing(*nc)) {
                    e += nc.len_utf8();
                    next = look.next();
                }
                let at_break = next.is_none_or(|(_, nc)| nc.is_whitespace());
                if at_break && !(c == '.' && is_abbreviation(text, i)) {
                    Some(e)
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(e) = end {
            raw.push((start, e));
            start = e;
            // Skip the closing characters included in the sentence.
            while it.peek().is_some_and(|(j, _)| *j < e) {
                it.next();
            }
        }
    }
    raw.push((start, text.len()));

    raw.into_iter()
        .filter_map(|(s, e)| {
            let frag = &text[s..e];
            let lead = frag
                .char_indices()
                .find(|(_, c)| {
                    !(c.is_whitespace() || matches!(c, '#' | '>' | '*' | '-' | '+' | '|'))
                })
                .map(|(i, _)| i)?;
            let trimmed = frag[lead..].trim_end();
            let words = trimmed.split_whitespace().count();
            if (MIN_SENTENCE_WORDS..=MAX_SENTENCE_WORDS).contains(&words) {
                Some((s + lead, s + lead + trimmed.len()))
            } else {
                None
            }
        })
        .collect()
}

struct Candidate {
    src: usize,
    /// Position of the source in rank order (0 = best).
    rank_pos: usize,
    start: usize,
    end: usize,
    terms: HashSet<String>,
}

/// Up to `max_sentences` sentences of `sources` most relevant to `question`, best first.
/// Empty when no sentence shares a (non-stopword) term with the question.
pub fn select_sentences(question: &str, sources: &[Source], max_sentences: usize) -> Vec<Quote> {
    let query = terms(question);
    if query.is_empty() || max_sentences == 0 || sources.is_empty() {
        return Vec::new();
    }

    let mut order: Vec<usize> = (0..sources.len()).collect();
    order.sort_by_key(|&i| sources[i].rank);
    let n_src = sources.len();

    let mut cands = Vec::new();
    for (rank_pos, &src) in order.iter().enumerate() {
        let content = sources[src].content.as_str();
        for (start, end) in split_sentences(content) {
            cands.push(Candidate {
                src,
                rank_pos,
                start,
                end,
                terms: terms(&content[start..end]).into_iter().collect(),
            });
        }
    }
    if cands.is_empty() {
        return Vec::new();
    }

    let n = cands.len() as f64;
    let idf: HashMap<&str, f64> = query
        .iter()
        .map(|t| {
            let df = cands.iter().filter(|c| c.terms.contains(t)).count() as f64;
            (t.as_str(), (1.0 + (n - df + 0.5) / (df + 0.5)).ln())
        })
        .collect();

    let mut scored: Vec<(f64, &Candidate)> = cands
        .iter()
        .filter_map(|c| {
            let s: f64 = query
                .iter()
                .filter(|t| c.terms.contains(*t))
                .map(|t| idf.get(t.as_str()).copied().unwrap_or(0.0))
                .sum();
            if s > 0.0 {
                let bonus = RANK_BONUS * (n_src - c.rank_pos) as f64 / n_src as f64;
                Some((s + bonus, c))
            } else {
                None
            }
        })
        .collect();
    scored.sort_by(|(sa, a), (sb, b)| {
        sb.total_cmp(sa)
            .then(sources[a.src].rank.cmp(&sources[b.src].rank))
            .then(a.rank_pos.cmp(&b.rank_pos))
            .then(a.start.cmp(&b.start))
    });

    let best = scored.first().map_or(0.0, |(s, _)| *s);
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for (score, c) in scored {
        if out.len() >= max_sentences || score < best * RELATIVE_CUTOFF {
            break;
        }
        let src = &sources[c.src];
        let sentence = &src.content[c.start..c.end];
        if !seen.insert(sentence) {
            continue;
        }
        out.push(Quote {
            source_rank: src.rank,
            chunk_id: src.chunk_id.clone(),
            file_name: src.file_name.clone(),
            sentence: sentence.to_string(),
            score,
        });
    }
    out
}

/// The answer text: [`LEAD_IN`] then one `"<sentence>" [n]` line per quote, or
/// [`NO_ANSWER`] when there are no quotes.
pub fn render_answer(quotes: &[Quote]) -> String {
    if quotes.is_empty() {
        return NO_ANSWER.to_string();
    }
    let mut s = String::from(LEAD_IN);
    for q in quotes {
        s.push_str(&format!("\n\"{}\" [{}]", q.sentence, q.source_rank));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(rank: usize, file: &str, content: &str) -> Source {
        Source {
            rank,
            chunk_id: format!("chunk-{rank}"),
            file_name: file.to_string(),
            content: content.to_string(),
        }
    }

    fn docs() -> Vec<Source> {
        vec![
            src(
                1,
                "pgvector.md",
                "# Indexing\n\npgvector supports exact and approximate nearest neighbor search. \
                 By default it performs exact search, which has perfect recall. \
                 To create an HNSW index, run CREATE INDEX ON items USING hnsw (embedding vector_l2_ops). \
                 HNSW indexes have better query performance than IVFFlat but take longer to build.",
            ),
            src(
                2,
                "queue.md",
                "The ingestion worker reads batches from the pgmq queue. \
                 Failed tasks are retried three times before they are archived.\n\
                 - The worker embeds every chunk of a document.",
            ),
            src(
                3,
                "faq.md",
                "Q: Can I change the embedding model? Yes, set rag.embedding_provider and re-embed. \
                 An index must be rebuilt after changing dimensions!",
            ),
        ]
    }

    fn assert_substrings(quotes: &[Quote], sources: &[Source]) {
        for q in quotes {
            let s = sources
                .iter()
                .find(|s| s.rank == q.source_rank)
                .expect("source of quote");
            assert!(
                s.content.contains(&q.sentence),
                "{:?} not in source {}",
                q.sentence,
                s.rank
            );
            assert_eq!(q.chunk_id, s.chunk_id);
            assert_eq!(q.file_name, s.file_name);
        }
    }

    #[test]
    fn most_relevant_sentence_first() {
        let sources = docs();
        let quotes = select_sentences("How do I create an HNSW index?", &sources, 3);
        assert!(!quotes.is_empty());
        assert_eq!(
            quotes[0].sentence,
            "To create an HNSW index, run CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)."
        );
        assert_eq!(quotes[0].source_rank, 1);
        assert!(quotes.windows(2).all(|w| w[0].score >= w[1].score));
        assert_substrings(&quotes, &sources);

        let quotes = select_sentences("how many times are failed tasks retried", &sources, 2);
        assert_eq!(
            quotes[0].sentence,
            "Failed tasks are retried three times before they are archived."
        );
        assert_eq!(
            (quotes[0].source_rank, quotes[0].file_name.as_str()),
            (2, "queue.md")
        );
        assert_substrings(&quotes, &sources);

        // Stemming: "embedding" ~ "embeds", "chunks" ~ "chunk".
        let quotes = select_sentences("Which worker embedding chunks?", &sources, 1);
        assert_eq!(quotes.len(), 1);
        assert_eq!(
            quotes[0].sentence,
            "The worker embeds every chunk of a document."
        );
    }

    #[test]
    fn quotes_are_exact_substrings() {
        let sources = docs();
        for q in [
            "embedding model dimensions",
            "exact search recall",
            "index",
            "queue worker batches pgmq",
            "Can I change it? Yes!",
        ] {
            let quotes = select_sentences(q, &sources, 10);
            assert_substrings(&quotes, &sources);
            for quote in &quotes {
                assert_eq!(quote.sentence.trim(), quote.sentence);
                let words = quote.sentence.split_whitespace().count();
                assert!((MIN_SENTENCE_WORDS..=MAX_SENTENCE_WORDS).contains(&words));
                assert!(quote.score > 0.0);
            }
        }
        // max_sentences is respected.
        assert!(select_sentences("index search", &sources, 1).len() <= 1);
        assert!(select_sentences("index search", &sources, 0).is_empty());
    }

    #[test]
    fn nothing_relevant() {
        let sources = docs();
        for q in ["What is the capital of France?", "", "how is it?", "???"] {
            let quotes = select_sentences(q, &sources, 3);
            assert!(quotes.is_empty(), "{q}: {quotes:?}");
            assert_eq!(render_answer(&quotes), NO_ANSWER);
        }
        assert!(select_sentences("HNSW index", &[], 3).is_empty());
        assert!(
            select_sentences("HNSW", &[src(1, "a", "HNSW.")], 3).is_empty(),
            "too short"
        );
    }

    #[test]
    fn render_format() {
        let sources = docs();
        let quotes = select_sentences("HNSW index build performance", &sources, 2);
        let text = render_answer(&quotes);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], LEAD_IN);
        assert_eq!(lines.len(), quotes.len() + 1);
        for (line, q) in lines[1..].iter().zip(&quotes) {
            assert_eq!(*line, format!("\"{}\" [{}]", q.sentence, q.source_rank));
        }
    }

    #[test]
    fn duplicates_from_overlapping_chunks_are_quoted_once() {
        let s = "Backups run every night at two o'clock.";
        let sources = vec![
            src(2, "ops.md", &format!("Intro text goes here now. {s}")),
            src(1, "ops.md", &format!("{s} More text follows here.")),
        ];
        let quotes = select_sentences("When do backups run?", &sources, 5);
        assert_eq!(quotes.len(), 1);
        assert_eq!(quotes[0].sentence, s);
        assert_eq!(quotes[0].source_rank, 1, "better-ranked source wins");
    }

    #[test]
    fn unicode_safe() {
        let sources = vec![
            src(
                1,
                "größe.md",
                "Über die Datenbank: die Größe der Datenbank wird täglich geprüft. \
                 🚀 Schnelle Suche mit Vektoren funktioniert gut!\n\
                 東京の データベース は 大きい です。次の 文 は 短い 文 です。",
            ),
            src(
                2,
                "naïve.txt",
                "Café au lait — «très bon» et naïve résumé ici. Ñandú corre rápido por el campo.",
            ),
        ];
        let q = select_sentences("Wie wird die Größe der Datenbank geprüft?", &sources, 3);
        assert!(!q.is_empty());
        assert_eq!(
            q[0].sentence,
            "Über die Datenbank: die Größe der Datenbank wird täglich geprüft."
        );
        assert_substrings(&q, &sources);
        for question in [
            "データベース",
            "naïve résumé",
            "ÑANDÚ",
            "🚀 Vektoren",
            "«très»",
        ] {
            let quotes = select_sentences(question, &sources, 3);
            assert!(!quotes.is_empty(), "{question}");
            assert_substrings(&quotes, &sources);
            let _ = render_answer(&quotes);
        }
        let q = select_sentences("データベース", &sources, 3);
        assert_eq!(q[0].sentence, "東京の データベース は 大きい です。");
    }

    #[test]
    fn splitting() {
        let text = "First sentence is right here. Second one, e.g. with an abbreviation, ends here! \
                    \"Quoted sentence ends like this.\" Next one follows right after it?\n\
                    ## A heading line with words\n- a bullet item with words\nv1.2.3 is not a sentence end here.";
        let got: Vec<&str> = split_sentences(text)
            .into_iter()
            .map(|(s, e)| &text[s..e])
            .collect();
        assert_eq!(
            got,
            vec![
                "First sentence is right here.",
                "Second one, e.g. with an abbreviation, ends here!",
                "\"Quoted sentence ends like this.\"",
                "Next one follows right after it?",
                "A heading line with words",
                "a bullet item with words",
                "v1.2.3 is not a sentence end here.",
            ]
        );
        let long = format!("{}.", vec!["word"; MAX_SENTENCE_WORDS + 1].join(" "));
        assert!(split_sentences(&long).is_empty());
        assert!(split_sentences("").is_empty());
        assert!(split_sentences("Too short. Also short!").is_empty());
    }

    #[test]
    fn stemming() {
        for (a, b) in [
            ("configure", "configured"),
            ("configuring", "configures"),
            ("index", "indexes"),
            ("embed", "embedding"),
            ("embeddings", "embedded"),
            ("run", "running"),
            ("database", "databases"),
            ("quick", "quickly"),
            ("table", "tables"),
            ("backup", "backups"),
            ("store", "stored"),
            ("build", "building"),
        ] {
            assert_eq!(stem(a), stem(b), "{a} / {b}");
        }
        assert_eq!(stem("status"), "status");
        assert_eq!(stem("bus"), "bus");
        assert_eq!(stem("string"), "string");
        assert_eq!(stem("need"), "need");
        assert_eq!(stem("größe"), "größ");
        assert!(
            STOPWORDS.windows(2).all(|w| w[0] < w[1]),
            "STOPWORDS must stay sorted"
        );
    }
}

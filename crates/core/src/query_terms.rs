//! Long BM25 queries: keep the terms that carry the most weight.
//!
//! pg_search matches `|||` queries as one clause per token, and its cost grows with the clauses: a
//! 200-word question costs about ten times a short one, most of it in the frequent terms whose long
//! posting lists add little to the ranking. When a query has more distinct terms than the cap
//! (`rag.bm25_max_query_terms`), this keeps the `cap` terms with the highest query-term-frequency ×
//! IDF weight, grouped by how often the query has them: the caller matches each group with a boost of
//! that count, so that every kept term scores exactly as it did in the full query (where each
//! occurrence was a clause of its own), at the cost of one clause. Queries within the cap are left alone.
//!
//! The caller gives the words of the query, what the index's tokenizer makes of each word (its
//! stems; none for a stopword), and the document frequencies it knows (a sample kept by the
//! background worker); a term without a known frequency counts as rare.

use std::collections::HashMap;

/// The distinct words of a query, lower-cased and split like pg_search's simple tokenizer (runs of
/// letters and digits), in order of first occurrence, each with how often it occurs.
pub fn word_counts(query: &str) -> Vec<(String, usize)> {
    let mut order: Vec<(String, usize)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for word in query.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let word = word.to_lowercase();
        match index.get(&word) {
            Some(&i) => order[i].1 += 1,
            None => {
                index.insert(word.clone(), order.len());
                order.push((word, 1));
            }
        }
    }
    order
}

/// BM25's inverse document frequency (Robertson–Spärck Jones, as Lucene and tantivy use it).
pub fn idf(df: f64, docs: f64) -> f64 {
    let df = df.clamp(0.0, docs.max(0.0));
    (1.0 + (docs - df + 0.5) / (df + 0.5)).ln()
}

/// The kept terms of a query with more than `cap` distinct terms, as groups `(count, words)`: the
/// words (one per kept term, space-separated) that the query has `count` times each, smallest count
/// first. `None` when the query is within the cap (run it unchanged). `stems` maps each word of
/// `words` to its tokens.
pub fn capped_query(
    words: &[(String, usize)],
    stems: &HashMap<String, Vec<String>>,
    df: &HashMap<String, f64>,
    docs: f64,
    cap: usize,
) -> Option<Vec<(usize, String)>> {
    if cap == 0 {
        return None;
    }
    // Each distinct term: how often the query has it, the first word that makes it, first position.
    let mut terms: Vec<(String, usize, &str)> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for (word, count) in words {
        for stem in stems.get(word).map(Vec::as_slice).unwrap_or_default() {
            match at.get(stem.as_str()) {
                Some(&i) => terms[i].1 += count,
                None => {
                    at.insert(stem.as_str(), terms.len());
                    terms.push((stem.clone(), *count, word.as_str()));
                }
            }
        }
    }
    if terms.len() <= cap {
        return None;
    }
    let weight = |(stem, qtf, _): &(String, usize, &str)| *qtf as f64 * idf(df.get(stem).copied().unwrap_or(0.0), docs);
    let mut order: Vec<usize> = (0..terms.len()).collect();
    // Highest weight first; ties keep the query's order.
    order.sort_by(|&a, &b| weight(&terms[b]).total_cmp(&weight(&terms[a])).then(a.cmp(&b)));
    let mut keep = order[..cap].to_vec();
    keep.sort_unstable();
    let mut groups: Vec<(usize, Vec<&str>)> = Vec::new();
    for i in keep {
        let (_, qtf, word) = &terms[i];
        match groups.iter_mut().find(|(n, _)| n == qtf) {
            Some((_, words)) => words.push(word),
            None => groups.push((*qtf, vec![*word])),
        }
    }
    groups.sort_by_key(|(n, _)| *n);
    Some(groups.into_iter().map(|(n, words)| (n, words.join(" "))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stems_of(words: &[(String, usize)]) -> HashMap<String, Vec<String>> {
        // A toy stemmer: drop a trailing "s"; "the" and "of" are stopwords.
        words
            .iter()
            .map(|(w, _)| {
                let s = if w == "the" || w == "of" { vec![] } else { vec![w.trim_end_matches('s').to_string()] };
                (w.clone(), s)
            })
            .collect()
    }

    #[test]
    fn words_are_split_lowercased_and_counted_in_order() {
        let w = word_counts("The cell, the CELLS; cell-cycle of 2 cells.");
        assert_eq!(
            w,
            vec![("the".into(), 2), ("cell".into(), 2), ("cells".into(), 2), ("cycle".into(), 1), ("of".into(), 1), ("2".into(), 1)]
        );
    }

    #[test]
    fn a_query_within_the_cap_is_left_alone() {
        let w = word_counts("the cells of the cell cycle");
        let stems = stems_of(&w);
        assert_eq!(capped_query(&w, &stems, &HashMap::new(), 100.0, 2), None); // cell, cycle: two terms
        assert_eq!(capped_query(&w, &stems, &HashMap::new(), 100.0, 0), None); // 0: no cap
    }

    #[test]
    fn the_rarest_terms_are_kept_with_their_query_frequency() {
        let w = word_counts("cells divide; cell growth needs cells and kinase kinase");
        let stems = stems_of(&w);
        let df: HashMap<String, f64> =
            [("cell", 900.0), ("divide", 50.0), ("growth", 300.0), ("need", 800.0), ("and", 990.0), ("kinase", 5.0)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        // weights (qtf x idf, 1000 docs): kinase 2 x 5.2, divide 3.0, growth 1.2, cell 3 x 0.1 ...
        let q = capped_query(&w, &stems, &df, 1000.0, 3).unwrap();
        assert_eq!(q, vec![(1, "divide growth".to_string()), (2, "kinase".to_string())]);
        // Unknown frequency counts as rare: "zymogen" is kept before "growth".
        let w = word_counts("zymogen growth cells cells divide");
        let q = capped_query(&w, &stems_of(&w), &df, 1000.0, 2).unwrap();
        assert_eq!(q, vec![(1, "zymogen divide".to_string())]);
    }

    #[test]
    fn words_with_the_same_stem_add_up() {
        let w = word_counts("cell cells cells kinase growth");
        let df: HashMap<String, f64> = [("cell", 400.0), ("kinase", 400.0), ("growth", 400.0)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        // cell has qtf 3 (one "cell", two "cells"), matched as its first word with a boost of 3.
        assert_eq!(capped_query(&w, &stems_of(&w), &df, 1000.0, 1).unwrap(), vec![(3, "cell".to_string())]);
    }

    #[test]
    fn idf_is_positive_and_falls_with_frequency() {
        assert!(idf(0.0, 100.0) > idf(10.0, 100.0));
        assert!(idf(100.0, 100.0) > 0.0);
        assert!(idf(500.0, 100.0) > 0.0); // an estimate above the count is clamped
    }
}

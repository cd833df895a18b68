//! Document ingestion without Postgres: file formats ([`formats`]) → structured text ([`parse`]) →
//! chunks ([`chunk`]), plus the planning of embedding batches across documents and the content hash
//! that identifies a document. The extension embeds, stores and raises errors.

#[cfg(test)]
pub(crate) mod budget_tests;
pub mod chunk;
pub mod formats;
pub mod parse;

use sha2::Digest;

/// sha256 of the content, hex: the document's identity for deduplication.
pub fn content_hash(content: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(content))
}

/// Chunks `range` of document number `doc`: one run of chunks inside an embedding batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub doc: usize,
    pub range: std::ops::Range<usize>,
}

/// Cut the chunks of several documents (their chunk counts, in order) into embedding batches of
/// at most `size` chunks, filling each batch across document boundaries: a worker with many small
/// files sends full batches to the embedder instead of one small batch per file.
pub fn plan_batches(chunk_counts: &[usize], size: usize) -> Vec<Vec<Span>> {
    let size = size.max(1);
    let mut batches = Vec::new();
    let mut current: Vec<Span> = Vec::new();
    let mut room = size;
    for (doc, &count) in chunk_counts.iter().enumerate() {
        let mut start = 0;
        while start < count {
            let take = room.min(count - start);
            current.push(Span { doc, range: start..start + take });
            start += take;
            room -= take;
            if room == 0 {
                batches.push(std::mem::take(&mut current));
                room = size;
            }
        }
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod batch_plan_tests {
    use super::{plan_batches, Span};

    fn span(doc: usize, range: std::ops::Range<usize>) -> Span {
        Span { doc, range }
    }

    #[test]
    fn small_documents_share_full_batches() {
        let plan = plan_batches(&[3, 2, 4], 4);
        assert_eq!(
            plan,
            vec![
                vec![span(0, 0..3), span(1, 0..1)],
                vec![span(1, 1..2), span(2, 0..3)],
                vec![span(2, 3..4)],
            ]
        );
    }

    #[test]
    fn every_chunk_exactly_once_in_order() {
        let counts = [0, 7, 1, 0, 33, 5];
        let plan = plan_batches(&counts, 8);
        assert!(plan.iter().all(|b| !b.is_empty() && b.iter().map(|s| s.range.len()).sum::<usize>() <= 8));
        assert!(plan[..plan.len() - 1].iter().all(|b| b.iter().map(|s| s.range.len()).sum::<usize>() == 8));
        let mut seen: Vec<(usize, usize)> = Vec::new();
        for s in plan.iter().flatten() {
            seen.extend(s.range.clone().map(|i| (s.doc, i)));
        }
        let expected: Vec<(usize, usize)> =
            counts.iter().enumerate().flat_map(|(d, &n)| (0..n).map(move |i| (d, i))).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn no_chunks_no_batches() {
        assert!(plan_batches(&[], 32).is_empty());
        assert!(plan_batches(&[0, 0], 32).is_empty());
        assert_eq!(plan_batches(&[2], 0), vec![vec![span(0, 0..1)], vec![span(0, 1..2)]]);
    }
}

//! What every built-in sentence encoder shares, whatever runs its forward pass (candle in
//! `builtin.rs`, ONNX Runtime in `onnx.rs`): the word-piece tokenizer with truncation, the
//! length-sorted batching with the cancel hook between forward passes, de-duplication of identical
//! texts, mean pooling weighted by the attention mask, and the error helpers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokenizers::{Encoding, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::provider::{l2_normalize, with_signals_blocked, EmbedError, Embedder, InputKind};
use crate::interrupt::Interrupt;

/// Most sequences in one forward pass.
pub(crate) const BATCH_SEQS: usize = 32;

pub(crate) fn model_err(path: &Path, detail: impl std::fmt::Display) -> EmbedError {
    EmbedError::ModelFiles {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

pub(crate) fn infer_err(detail: impl std::fmt::Display) -> EmbedError {
    EmbedError::Inference {
        detail: detail.to_string(),
    }
}

pub(crate) fn panic_detail(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("internal panic: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("internal panic: {s}")
    } else {
        "internal panic".to_string()
    }
}

/// The physical cores this process may use: the thread count of every built-in runtime's pool.
pub(crate) fn physical_cores() -> usize {
    let allowed = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    num_cpus::get_physical().clamp(1, allowed)
}

/// Warm-up of a freshly loaded model: faults in its weights and creates its runtime's worker threads
/// while every signal is blocked, so the workers inherit a fully blocked mask and Postgres signals are
/// only ever handled by the process's own thread. Errors name `model_path`.
pub(crate) fn warm_up(model: &dyn Embedder, model_path: &Path) -> Result<(), EmbedError> {
    let warm = "warm up ".repeat(40);
    with_signals_blocked(|| model.embed(&[warm.as_str(), "warm up"], InputKind::Document))
        .map(drop)
        .map_err(|e| model_err(model_path, format!("warm-up inference failed: {e}")))
}

pub(crate) fn required_dir(dir: &Path) -> Result<(), EmbedError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(model_err(dir, "not a directory")),
        Err(e) => Err(model_err(dir, e)),
    }
}

pub(crate) fn required_file(dir: &Path, name: &str) -> Result<PathBuf, EmbedError> {
    let p = dir.join(name);
    match std::fs::metadata(&p) {
        Ok(m) if m.is_file() => Ok(p),
        Ok(_) => Err(model_err(&p, "not a regular file")),
        Err(e) => Err(model_err(&p, e)),
    }
}

/// The model's tokenizer twice: truncating and padding (for embedding), and plain (for counting).
pub(crate) struct WordPieces {
    tokenizer: Tokenizer,
    counter: Tokenizer,
    /// Bytes of a text the model can possibly read: a token covers at most one word of 100
    /// characters (longer words are one [UNK]) of at most 4 bytes each, plus a separator.
    prefix_bytes: usize,
}

impl WordPieces {
    /// `tokenizer.json` of `dir`, truncating to `max_tokens` tokens (with [CLS]/[SEP]).
    pub(crate) fn load(dir: &Path, max_tokens: usize) -> Result<Self, EmbedError> {
        let path = required_file(dir, "tokenizer.json")?;
        let mut counter = Tokenizer::from_file(&path)
            .map_err(|e| model_err(&path, format!("cannot load tokenizer: {e}")))?;
        counter.with_padding(None);
        counter
            .with_truncation(None)
            .map_err(|e| model_err(&path, format!("cannot configure tokenizer: {e}")))?;
        let mut tokenizer = counter.clone();
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| model_err(&path, format!("cannot configure tokenizer: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        Ok(WordPieces {
            tokenizer,
            counter,
            prefix_bytes: max_tokens * 401 + 16,
        })
    }

    /// Tokenizing only the prefix the model can read gives the same encoding for any input and
    /// keeps a 5 MB query from costing the tokenizer's ~50 bytes per input byte.
    pub(crate) fn encode(&self, text: &str) -> Result<Encoding, EmbedError> {
        self.tokenizer
            .encode(char_prefix(text, self.prefix_bytes), true)
            .map_err(|e| EmbedError::Tokenizer {
                detail: e.to_string(),
            })
    }

    /// Word-piece tokens without [CLS]/[SEP], untruncated; the word-count estimate if the
    /// tokenizer fails.
    pub(crate) fn count(&self, text: &str) -> usize {
        match self.counter.encode_fast(text, false) {
            Ok(enc) => enc.get_ids().len(),
            Err(_) => super::provider::approx_token_count(text),
        }
    }
}

/// A batch's token ids, type ids and attention mask, each `rows * width` long, zero-padded.
pub(crate) struct Padded<T> {
    pub ids: Vec<T>,
    pub types: Vec<T>,
    pub mask: Vec<T>,
    pub rows: usize,
    pub width: usize,
}

pub(crate) fn pad<T: Copy + Default + From<u32>>(encs: &[&Encoding]) -> Padded<T> {
    let rows = encs.len();
    let width = encs.iter().map(|e| e.get_ids().len()).max().unwrap_or(0).max(1);
    let mut p = Padded {
        ids: vec![T::default(); rows * width],
        types: vec![T::default(); rows * width],
        mask: vec![T::default(); rows * width],
        rows,
        width,
    };
    for (row, enc) in encs.iter().enumerate() {
        let base = row * width;
        let cols = enc.get_ids().iter().zip(enc.get_type_ids()).zip(enc.get_attention_mask());
        for (j, ((id, ty), m)) in cols.enumerate() {
            p.ids[base + j] = T::from(*id);
            p.types[base + j] = T::from(*ty);
            p.mask[base + j] = T::from(*m);
        }
    }
    p
}

/// Mean of each row's token states weighted by its attention mask, L2-normalised.
/// `hidden` is `(rows, width, dims)` row-major; `mask` is `(rows, width)`.
pub(crate) fn mean_pool(hidden: &[f32], mask: &[i64], rows: usize, width: usize, dims: usize) -> Vec<Vec<f32>> {
    (0..rows)
        .map(|r| {
            let mut v = vec![0f32; dims];
            let mut n = 0f32;
            for t in 0..width {
                if mask[r * width + t] == 0 {
                    continue;
                }
                n += 1.0;
                let state = &hidden[(r * width + t) * dims..(r * width + t + 1) * dims];
                for (acc, x) in v.iter_mut().zip(state) {
                    *acc += x;
                }
            }
            let n = n.max(1e-9);
            v.iter_mut().for_each(|x| *x /= n);
            l2_normalize(&mut v);
            v
        })
        .collect()
}

/// The batching every built-in encoder uses. Identical texts are embedded once; texts are sorted
/// by token length and run in passes of similar length (at most [`BATCH_SEQS`] sequences and
/// `pass_tokens` padded tokens), `interrupt` called before each pass; results come back in input
/// order, each checked to have `dims` values.
pub(crate) fn embed_in_passes(
    texts: &[&str],
    words: &WordPieces,
    pass_tokens: usize,
    model_id: &str,
    dims: usize,
    interrupt: Interrupt<'_>,
    forward: impl Fn(&[&Encoding]) -> Result<Vec<Vec<f32>>, EmbedError>,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    let mut unique: Vec<&str> = Vec::new();
    let mut slot_of: Vec<usize> = Vec::with_capacity(texts.len());
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for t in texts {
        let slot = *seen.entry(*t).or_insert_with(|| {
            unique.push(*t);
            unique.len() - 1
        });
        slot_of.push(slot);
    }

    let encs = unique.iter().map(|t| words.encode(t)).collect::<Result<Vec<_>, _>>()?;
    let mut order: Vec<usize> = (0..encs.len()).collect();
    order.sort_by_key(|&i| encs[i].get_ids().len());

    let mut vecs: Vec<Vec<f32>> = vec![Vec::new(); encs.len()];
    let mut start = 0;
    while start < order.len() {
        // Lengths ascend, so the last sequence of a pass is its longest.
        let mut end = start + 1;
        while end < order.len()
            && end - start < BATCH_SEQS
            && (end - start + 1) * encs[order[end]].get_ids().len() <= pass_tokens
        {
            end += 1;
        }
        let batch: Vec<&Encoding> = order[start..end].iter().map(|&i| &encs[i]).collect();
        interrupt();
        let out = forward(&batch)?;
        if out.len() != batch.len() {
            return Err(EmbedError::CountMismatch {
                model: model_id.to_string(),
                expected: batch.len(),
                got: out.len(),
            });
        }
        for (&i, v) in order[start..end].iter().zip(out) {
            if v.len() != dims {
                return Err(EmbedError::DimensionMismatch {
                    model: model_id.to_string(),
                    expected: dims,
                    got: v.len(),
                });
            }
            vecs[i] = v;
        }
        start = end;
    }
    Ok(slot_of.into_iter().map(|s| vecs[s].clone()).collect())
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn char_prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_on_a_character_boundary() {
        assert_eq!(char_prefix("abc", 10), "abc");
        assert_eq!(char_prefix("héllo", 2), "h");
        assert_eq!(char_prefix("héllo", 3), "hé");
        assert_eq!(char_prefix(&"é".repeat(100_000), 1001).len(), 1000);
    }

    /// Padding tokens are left out of the mean, and each mean is normalised.
    #[test]
    fn mean_pool_ignores_padding() {
        // Two rows of width 3, dims 2. Row 0: tokens (1,0),(3,0) and a padded (100,100).
        let hidden = [1.0, 0.0, 3.0, 0.0, 100.0, 100.0, 0.0, 2.0, 0.0, 4.0, 0.0, 6.0];
        let mask = [1, 1, 0, 1, 1, 1];
        let v = mean_pool(&hidden, &mask, 2, 3, 2);
        assert_eq!(v, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    }
}

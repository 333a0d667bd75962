"""all-MiniLM-L6-v2 on ONNX Runtime: the torch model's vectors at less CPU, and an int8 variant.

Graphs are built once from the verified weights (sha256 against configs/assets.yaml) into
the data directory, named by the weights' hash and the build recipe; later starts load
them directly and need neither torch nor transformers. Building:
1. export with eager attention (so ONNX Runtime's transformer optimiser recognises it),
2. fuse attention, GELU and layer norms (`fp32`: cosine to torch's vectors > 0.99999;
   ~10% faster than the unfused graph on this 2-core CPU),
3. for `int8`, quantise the Linear weights per output channel with activations quantised
   on the fly, except the feed-forward down-projections: their inputs (GELU outputs) carry
   the outliers that per-tensor activation scales handle worst, and keeping those six
   MatMuls in fp32 halves the error (cosine to fp32 over the CISI abstracts: mean 0.9974,
   min 0.992, against 0.9944 / 0.9865 with every MatMul quantised). It embeds ~1.5x
   faster than fp32 (CISI abstracts on 2 threads: 125 against 84 per second).

Tokenisation uses the model's own `tokenizer.json`; pooling is the model's mean pooling;
vectors are L2-normalised. Building is serialised across processes by a lock file, so
replicas starting together build once.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from stratmaster.knowledge.embedding import (
    DEFAULT_ASSETS_FILE,
    DIMENSION,
    MODEL_ID,
    AssetError,
    verify_model,
)

MAX_SEQUENCE = 256  # positions the model was trained with, [CLS] and [SEP] included
NUM_HEADS, HIDDEN = 12, 384
RECIPE = "eager-opset14-fused"  # change when the build steps change: old files are then ignored
PRECISIONS = ("fp32", "int8")
MODEL_IDS = {"fp32": MODEL_ID, "int8": f"{MODEL_ID}#onnx-int8-ffn-fp32"}
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def onnx_path(cache_dir: Path, weights_sha256: str, precision: str = "fp32") -> Path:
    return cache_dir / f"all-MiniLM-L6-v2-{weights_sha256[:16]}-{RECIPE}-{precision}.onnx"


@contextmanager
def _build_lock(cache_dir: Path) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".build.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomically(target: Path, build: Callable[[str], None]) -> None:
    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    os.close(handle)
    try:
        build(temporary)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _export_raw(model_directory: Path, target: str) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_directory), local_files_only=True,
                                      attn_implementation="eager").eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001 - torch tensors
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    example = tuple(torch.ones((1, 4), dtype=torch.int64) for _ in _INPUTS)
    torch.onnx.export(LastHiddenState(model), example, target, input_names=list(_INPUTS),
                      output_names=["last_hidden_state"], opset_version=14, dynamo=False,
                      dynamic_axes={name: {0: "batch", 1: "sequence"} for name in (*_INPUTS, "last_hidden_state")})


def _fuse(raw: str, target: str) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    optimised = optimize_model(raw, model_type="bert", num_heads=NUM_HEADS, hidden_size=HIDDEN)
    fused = optimised.get_fused_operator_statistics()
    if fused.get("Attention", 0) != 6:
        raise AssetError(f"ONNX Runtime fused {fused.get('Attention', 0)} of 6 attention blocks; "
                         "the exported graph is not the one this recipe expects")
    optimised.save_model_to_file(target)


def _quantise(fused: str, target: str) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    down_projections = [node.name for node in onnx.load(fused).graph.node
                        if node.op_type == "MatMul" and node.name.endswith("/output/dense/MatMul")
                        and "/attention/" not in node.name]
    quantize_dynamic(fused, target, weight_type=QuantType.QInt8, per_channel=True,
                     nodes_to_exclude=down_projections,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def build_graph(model_directory: Path, cache_dir: Path, weights_sha256: str, precision: str = "fp32") -> Path:
    """The graph for `precision`, building what is missing; a no-op when it exists.

    The build runs in a child process: torch and transformers (~400 MB) are needed only to
    export, and a replica that imported them would keep them for its lifetime.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    target = onnx_path(cache_dir, weights_sha256, precision)
    if target.exists():
        return target
    with _build_lock(cache_dir):
        if not target.exists():
            command = [sys.executable, "-m", __name__, str(model_directory), str(cache_dir), weights_sha256, precision]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0 or not target.exists():
                raise AssetError(f"building the {precision} ONNX graph failed (exit {done.returncode}): "
                                 f"{done.stderr.strip()[-2000:]}")
    return target


def _build(model_directory: Path, cache_dir: Path, weights_sha256: str, precision: str) -> None:
    """The build itself; the caller holds the build lock."""
    fp32 = onnx_path(cache_dir, weights_sha256, "fp32")
    if not fp32.exists():
        with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
            raw = str(Path(scratch) / "raw.onnx")
            _export_raw(model_directory, raw)
            _write_atomically(fp32, lambda path: _fuse(raw, path))
    target = onnx_path(cache_dir, weights_sha256, precision)
    if not target.exists():
        _write_atomically(target, lambda path: _quantise(str(fp32), path))


class OnnxEmbedder:
    """Drop-in for `Embedder` (same `embed`, `model_id`, `dimension`), on ONNX Runtime."""

    dimension = DIMENSION

    def __init__(self, cache_dir: Path, assets_file: Path = DEFAULT_ASSETS_FILE, *,
                 num_threads: int = 1, precision: str = "fp32") -> None:
        started = time.perf_counter()
        report = verify_model(assets_file)
        weights = next((f for f in report.files if f.path.endswith("model.safetensors")), None)
        if weights is None:
            raise AssetError(f"{assets_file} pins no model.safetensors")
        path = build_graph(report.directory, cache_dir, weights.actual_sha256, precision)
        self.precision, self.model_id = precision, MODEL_IDS[precision]

        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, num_threads)
        options.inter_op_num_threads = 1
        # Spinning threads would burn the CPU other replicas on the machine need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._tokenizer = Tokenizer.from_file(str(report.directory / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_SEQUENCE)
        self._tokenizer.enable_padding()
        self.load_seconds = time.perf_counter() - started

    @property
    def max_tokens(self) -> int:
        return MAX_SEQUENCE - 2

    def embed(self, texts: Sequence[str], batch_size: int = 4) -> np.ndarray:
        """Vectors in order. Small batches of similar length: on CPU, padding costs more
        than batching saves (CISI abstracts: 74/s in batches of 2, 50/s in batches of 64).

        int8 embeds one text at a time: its activations are quantised with one scale per
        batch, so a text's vector would otherwise depend on the texts beside it (and a
        cached vector would differ from a recomputed one)."""
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        if self.precision == "int8":
            batch_size = 1
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            out[chosen] = self._embed_batch([texts[i] for i in chosen])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


if __name__ == "__main__":  # the child process of build_graph
    _model_directory, _cache_dir, _weights_sha256, _precision = sys.argv[1:5]
    _build(Path(_model_directory), Path(_cache_dir), _weights_sha256, _precision)

"""A model `simattr train` writes, loaded in sentence-transformers through shifted_reference.py:
its embeddings equal `simattr embed`'s, and the reference input embeds to zero there too.

Run by scripts/test_reference.sh (a venv with torch) after the Rust tests have built the CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from shifted_reference import load_exact_model  # noqa: E402
from generate_golden_generic import patch_float64_internals  # noqa: E402

# ModernBERT, Qwen3: transformers computes the eager softmax (and RMSNorm, the rotary tables) in float32
# whatever the dtype; in float64 the padding mask's finfo(float64).min becomes -inf in float32, so a
# query row that sees no real key (Qwen3's left padding under the causal mask, ModernBERT's pad rows
# beyond the local window) is NaN, which the pooling's mask does not remove (NaN * 0). The patches make
# these float64 throughout (float32 inputs, and the BERT-like families, run transformers' own code).
patch_float64_internals()

# SIMATTR_BIN: another build of the CLI (a copy, while target/release is being rebuilt)
SIMATTR = os.environ.get("SIMATTR_BIN", os.path.join(ROOT, "target", "release", "simattr"))
TEXTS = [
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "The cat sits on the mat.",
    "Two girls ride horses.",
    "hi",
    "The children are playing in the park on a sunny afternoon.",
]


def simattr(*args):
    return subprocess.run([SIMATTR, *args], check=True, capture_output=True, text=True)


# tiny-t5 (Dense 32->24) and tiny-gemma3 (Dense 32->48->32): linear Dense modules (no bias, Identity), trained
# through and exported after Pooling (2_Dense, 3_Dense, then Normalize)
@pytest.fixture(scope="module", params=["tiny-bert", "tiny-mpnet", "tiny-roberta", "tiny-xlm-roberta", "tiny-bert-cls",
                                                 "tiny-modernbert", "tiny-qwen3", "tiny-t5", "tiny-gemma3"])
def trained(request, tmp_path_factory):
    work = tmp_path_factory.mktemp(request.param)
    pairs = work / "pairs.jsonl"
    with open(pairs, "w") as f:
        for n in range(24):
            f.write(json.dumps({"a": TEXTS[n % 6], "b": TEXTS[(n * 5 + 1) % 6], "score": (n * 7 % 11) / 10}) + "\n")
    out = work / "exact"
    model = os.path.join(ROOT, "tests", "fixtures", request.param)
    simattr("train", "--model", model, "--pairs", str(pairs), "--out", str(out), "--epochs", "2", "--lr", "5e-3",
            "--batch-size", "4", "--threads", "2")
    return out


def test_sentence_transformers_embeddings_equal_simattr(trained, tmp_path):
    model = load_exact_model(str(trained)).double()
    ours_path = tmp_path / "ours.json"
    simattr("embed", "--model", str(trained), "--json", str(ours_path), *TEXTS)
    ours = np.array(json.load(open(ours_path))["embeddings"])
    theirs = model.encode(TEXTS, convert_to_numpy=True, batch_size=len(TEXTS))
    assert ours.shape == theirs.shape
    # simattr embed runs in f32; the PyTorch model in float64.
    assert np.abs(ours - theirs).max() <= 1e-5 * max(1.0, np.abs(theirs).max()), np.abs(ours - theirs).max()
    # The training changed the model (its embeddings differ from the untrained exact model's).
    assert json.load(open(trained / "simattr_training.json"))["history"][-1]["epoch"] == 2


def test_reference_embeds_to_zero_in_pytorch(trained):
    import torch

    model = load_exact_model(str(trained)).double()
    shift = model[1]
    for n in (2, 5, 9):
        ids = torch.tensor([shift.reference_ids(n)])
        features = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if "token_type_ids" in model[0].tokenizer.model_input_names:
            features["token_type_ids"] = torch.zeros_like(ids)
        with torch.no_grad():
            pooled = model[2](model[1](model[0](dict(features))))["sentence_embedding"]
            out = model(features)["sentence_embedding"]  # through the Dense modules and Normalize too
        assert torch.count_nonzero(pooled) == 0, pooled
        assert torch.count_nonzero(out) == 0, out

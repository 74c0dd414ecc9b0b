"""The Explainer against the command line (byte for byte), the PyTorch golden embeddings, and
bad input; the GIL released while the engine works."""

from __future__ import annotations

import _thread
import json
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import simattr
from simattr import _native

PAIR = ("a cat sat on the mat", "the dog ran in the park")


def cli_json(cli: Path, tmp_path: Path, args: list[str], a: str, b: str) -> str:
    """The file `simattr explain --json` writes for the pair with `args`."""
    out = tmp_path / "cli.json"
    run = subprocess.run(
        [str(cli), "explain", *args, "--json", str(out), a, b], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    return out.read_text()


# Each: the fixture, the Explainer's keywords, the same settings as CLI flags.
CASES = [
    ("tiny-bert", dict(steps=20), ["--steps", "20", "--words"]),
    ("tiny-bert", dict(steps=7, layer=2, rule="gauss-legendre", similarity="dot", words=False),
     ["--steps", "7", "--layer", "2", "--rule", "gauss-legendre", "--similarity", "dot"]),
    ("tiny-bert", dict(steps=9, mode="reverse", similarity="cos-exact", word_merge="mean"),
     ["--steps", "9", "--mode", "reverse", "--similarity", "cos-exact", "--words", "--word-merge", "mean"]),
    ("tiny-mpnet", dict(steps=12, layer=1, rule="gauss-legendre-adaptive"),
     ["--steps", "12", "--layer", "1", "--rule", "gauss-legendre-adaptive", "--words"]),
    ("tiny-xlm-roberta", dict(steps=10, backend="cpu-ref", precision="f64"),
     ["--steps", "10", "--backend", "cpu-ref", "--precision", "f64", "--words"]),
    ("tiny-mpnet-exact", dict(method="decomposition"), ["--method", "decomposition", "--words"]),
    # Prompts, truncation, Dense modules and a T5 encoder.
    ("tiny-bert-weightedmean", dict(steps=6, prompt_a="query", prompt_b="document"),
     ["--steps", "6", "--prompt-a", "query", "--prompt-b", "document", "--words"]),
    ("tiny-t5", dict(steps=6, truncate_dim=12), ["--steps", "6", "--truncate-dim", "12", "--words"]),
    # A Pooling that leaves the prompt out (include_prompt: false).
    ("tiny-bert-sqrtlen", dict(steps=6, prompt_a="query"), ["--steps", "6", "--prompt-a", "query", "--words"]),
    # The rotary families and remote-code families: a causal decoder with its query prompt,
    # sliding windows, ALiBi.
    ("tiny-qwen3", dict(steps=5, prompt_a="query"), ["--steps", "5", "--prompt-a", "query", "--words"]),
    ("tiny-gemma3", dict(steps=5, mode="reverse"), ["--steps", "5", "--mode", "reverse", "--words"]),
    ("tiny-jina-bert", dict(steps=5, layer=1), ["--steps", "5", "--layer", "1", "--words"]),
    # The device backends from inside Python: the CUDA kernels on the CPU harness (whose
    # thread-locals the module builds for a library loaded at run time) and WGSL on lavapipe.
    ("tiny-bert", dict(steps=5, backend="cuda-emu"), ["--steps", "5", "--backend", "cuda-emu", "--words"]),
    ("tiny-roberta", dict(steps=5, backend="wgpu"), ["--steps", "5", "--backend", "wgpu", "--words"]),
]


@pytest.mark.parametrize("fixture, keywords, flags", CASES, ids=[f"{c[0]}-{n}" for n, c in enumerate(CASES)])
def test_explain_equals_the_cli_byte_for_byte(repo, simattr_cli, tmp_path, fixture, keywords, flags):
    model = repo / "tests" / "fixtures" / fixture
    explainer = simattr.Explainer(str(model), threads=1, progress=False, **keywords)
    explanation = explainer.explain(*PAIR)
    expected = cli_json(simattr_cli, tmp_path, ["--model", str(model), "--threads", "1", *flags], *PAIR)
    assert explanation.to_json() == expected
    document = json.loads(expected)
    # The array holds exactly the numbers of the JSON (its shortest round-trip decimals).
    assert np.array_equal(explanation.attributions, np.array(document["attributions"]))
    assert explanation.attributions.shape == (len(document["tokens_a"]), len(document["tokens_b"]))
    assert explanation.score == document["score"]


def test_explain_batch_and_ranking_equal_single_explanations(explainer):
    pairs = [PAIR, {"a": PAIR[1], "b": PAIR[0]}, (PAIR[0], "a bird")]
    batch = explainer.explain_batch(pairs)
    singles = [explainer.explain(*PAIR), explainer.explain(PAIR[1], PAIR[0]), explainer.explain(PAIR[0], "a bird")]
    assert [e.to_json() for e in batch] == [e.to_json() for e in singles]
    import pandas

    frame = pandas.DataFrame({"a": [PAIR[0], PAIR[1]], "b": [PAIR[1], PAIR[0]], "label": [1, 0]})
    assert [e.to_json() for e in explainer.explain_batch(frame)] == [e.to_json() for e in singles[:2]]

    documents = ["a bird", "the dog ran in the park", "a cat on a mat", "trees"]
    ranking = explainer.rank(PAIR[0], documents)
    scores = [explainer.explain(PAIR[0], d).score for d in documents]
    assert [n for n, _ in ranking] == sorted(range(len(documents)), key=lambda n: -scores[n])
    assert np.allclose([s for _, s in ranking], sorted(scores, reverse=True), rtol=1e-6)
    top = explainer.rank_and_explain(PAIR[0], documents, top_k=2)
    assert [(e.rank, e.document) for e in top] == [(1, ranking[0][0]), (2, ranking[1][0])]
    assert top[0].to_json() == explainer.explain(PAIR[0], documents[ranking[0][0]]).to_json()


def test_each_text_is_attributed_once(tiny_bert):
    explainer = simattr.Explainer(str(tiny_bert), steps=5, threads=1, progress=False)
    explainer.explain_batch([("one text", "two text"), ("two text", "one text"), ("one text", "three")])
    stats = explainer.cache_stats()
    assert stats["computed"] == 3, stats
    assert stats["memory_hits"] == 3, stats


@pytest.mark.parametrize("fixture", ["tiny-bert", "tiny-mpnet", "tiny-roberta", "tiny-xlm-roberta", "tiny-bert-cls"])
def test_embed_equals_the_pytorch_golden_embeddings(repo, fixture):
    golden = json.loads((repo / "tests" / "fixtures" / "golden" / f"{fixture}.json").read_text())
    texts = [entry["text"] for entry in golden["embeddings"]]
    explainer = simattr.Explainer(str(repo / "tests" / "fixtures" / fixture), threads=1, progress=False)
    for key, normalize in (("encode", True), ("raw", False)):
        want = np.array([entry[key] for entry in golden["embeddings"]])
        got = explainer.embed(texts, normalize=normalize, batch_size=3)
        assert got.shape == want.shape and got.dtype == np.float64
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err <= 1e-5, f"{fixture} {key}: {err:.2e}"


def test_bad_input_raises_clear_exceptions(tiny_bert, explainer, tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        simattr.Explainer(str(tmp_path / "no-such-model"))
    bad_keywords = [
        (dict(rule="simpson"), "invalid argument rule: `simpson`"),
        (dict(steps=0), "steps"),
        (dict(similarity="euclid"), "similarity"),
        (dict(backend="tpu"), "invalid argument backend: `tpu`"),
        (dict(precision="f64"), "does not offer f64"),
        (dict(device=0), "invalid argument device"),
        (dict(threads=0), "invalid argument threads: must be at least 1"),
        (dict(max_memory="lots"), "invalid argument max_memory"),
        (dict(cache_memory="lots"), "invalid argument cache_memory"),
        (dict(word_merge="max"), "word_merge"),
        (dict(layer=99), "layer"),
    ]
    for keywords, message in bad_keywords:
        with pytest.raises(ValueError, match=message):
            simattr.Explainer(str(tiny_bert), progress=False, **keywords).explain(*PAIR)
    with pytest.raises(simattr.SimattrError, match="CUDA"):
        simattr.Explainer(str(tiny_bert), backend="cuda")
    with pytest.raises(ValueError, match="b is empty"):
        explainer.explain("text", "   ")
    with pytest.raises(TypeError, match="a must be a str"):
        explainer.explain(None, "text")
    with pytest.raises(ValueError, match="pair 1"):
        explainer.explain_batch([PAIR, ("only one",)])
    with pytest.raises(ValueError, match="top_k"):
        explainer.rank_and_explain("q", ["d"], top_k=-1)
    # Too long: cut with a warning by default, refused without truncation (the engine's message
    # names the text and the limit).
    with pytest.warns(UserWarning, match="text a has 42 tokens; truncated to max_seq_length 24"):
        cut = explainer.explain(" ".join(["word"] * 40), "short")
    assert len(cut.tokens_a) == 24
    strict = simattr.Explainer(str(tiny_bert), steps=3, truncate=False, progress=False)
    with pytest.raises(ValueError, match="over the model's max_seq_length 24"):
        strict.explain(" ".join(["word"] * 40), "short")
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        _native.read_pairs(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="report_html"):
        _native.report_html("{not json", "title")


def test_the_gil_is_released_while_the_engine_computes(tiny_bert):
    explainer = simattr.Explainer(str(tiny_bert), steps=400, threads=1, progress=False)
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    counter = threading.Thread(target=count)
    counter.start()
    time.sleep(0.05)
    before = ticks
    started = time.perf_counter()
    explainer.explain(" ".join(["cat"] * 20), " ".join(["dog"] * 20))
    seconds = time.perf_counter() - started
    during = ticks - before
    stop.set()
    counter.join()
    # With the GIL held the counter could not move at all while explain runs.
    assert seconds > 0.05, "the explanation was too quick to tell"
    assert during > 1000, f"the counter moved {during} times in {seconds:.2f} s"


def test_progress_reaches_the_total(session):
    calls: list[tuple[int, int]] = []
    session.explain("progress one", "progress two", lambda done, total: calls.append((done, total)))
    assert calls, "the progress callback was never called"
    done, total = calls[-1]
    assert total > 0 and done == total, calls
    assert all(d <= t for d, t in calls)


def test_batch_records_equal_the_cli_batch(repo, simattr_cli, tiny_bert, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    lines = [
        json.dumps({"id": "p1", "a": PAIR[0], "b": PAIR[1]}),
        json.dumps({"a": PAIR[1], "b": "a bird"}),
        json.dumps({"id": "empty", "a": "", "b": "x"}),
        "not json",
    ]
    pairs.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    run = subprocess.run(
        [str(simattr_cli), "batch", str(pairs), "--out", str(out), "--model", str(tiny_bert), "--steps", "20",
         "--threads", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 3, run.stderr  # error records were written
    session = _native.Session(str(tiny_bert), steps=20, threads=1, words=False, truncate=False)
    records = session.batch_records(_native.read_pairs(str(pairs)))
    assert records == out.read_text().splitlines()
    assert [json.loads(r).get("error") is not None for r in records] == [False, False, True, True]


def test_ctrl_c_stops_a_long_explanation_and_the_session_still_works(tiny_bert):
    # Layer 0: the whole depth to integrate through, slow enough to interrupt.
    explainer = simattr.Explainer(str(tiny_bert), layer=0, steps=400, threads=1, progress=False)
    texts = (" ".join(["cat"] * 20), " ".join(["dog"] * 20))
    started = time.perf_counter()
    whole = explainer.explain(*texts)
    uninterrupted = time.perf_counter() - started
    assert uninterrupted > 1.0, f"the explanation took {uninterrupted:.2f} s, too quick to interrupt"

    other = (" ".join(["bird"] * 20), " ".join(["fish"] * 20))
    timer = threading.Timer(0.2, _thread.interrupt_main)
    started = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        explainer.explain(*other)
    interrupted = time.perf_counter() - started
    timer.join()
    # Without the engine looking at the signals, KeyboardInterrupt would come only after the
    # whole explanation.
    assert interrupted < uninterrupted / 2, f"stopped after {interrupted:.2f} s of {uninterrupted:.2f} s"
    # Nothing half-done was kept: the session explains the interrupted pair in full afterwards.
    assert explainer.explain(*texts).to_json() == whole.to_json()
    fresh = simattr.Explainer(str(tiny_bert), layer=0, steps=400, threads=1, progress=False).explain(*other)
    assert explainer.explain(*other).to_json() == fresh.to_json()

#!/usr/bin/env python3
"""Agreement of simattr's golden attributions with the authors' own code (xsbert).

Runs lucasmllr/xsbert (Moeller, Nikolaev & Padó, EMNLP 2023 / EACL 2024; commit 471c77f,
"Merge for EACL updates and approximate attributions") on the off-the-shelf all-mpnet-base-v2
exactly as its demo_shelf_model.ipynb does -- ReferenceTransformer + Pooling (mean) wrapped in
XSMPNet, no Normalize -- and compares its token-token matrices with
tests/fixtures/golden/all-mpnet-base-v2.json (tests/reference/generate_golden.py). It also
recomputes our rule with a short independent float64 implementation (MPNet layers of
transformers, forward-mode JVPs, no xsbert code) so that the comparison does not depend on the
golden file being present.

No xsbert code lives in this repository. Setup (CPU is enough; HF hub not needed):

  python3 -m venv /tmp/venv-xsbert
  /tmp/venv-xsbert/bin/pip install torch transformers==4.39.3 sentence-transformers==2.6.1 \
      matplotlib wget
  # xsbert's `pip install .` omits its `models` subpackage: use the checkout on PYTHONPATH.
  git clone https://github.com/lucasmllr/xsbert /tmp/xsbert-src   # or any snapshot of 471c77f

Run (about an hour on 2 CPU cores: xsbert does 768 backward passes per text and layer):

  HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/xsbert-src /tmp/venv-xsbert/bin/python \
      benches/compare/xsbert_agreement.py \
      --model-dir ~/.cache/simattr/models/all-mpnet-base-v2 \
      --golden tests/fixtures/golden/all-mpnet-base-v2.json --out /tmp/xsbert-out/results.json

  Finished cases go to OUT.partial.jsonl as they come: an interrupted run resumes there.
  --compare-only re-reads --out and only redoes the comparison (e.g. once the golden appears).

xsbert's method, from its source (xsbert/models/ at 471c77f), is the same as ours:
  layer     XSTransformer.py:213-220  forward pre-hook on encoder.layer[idx]: h is the input of
            layer idx (MPNet's relative position bias is repeated to the batch, hooks.py:39,45)
  reference ReferenceTransformer.py:17  ids [0] + [1]*(T-2) + [2] = <s> <pad>... </s>, same length,
            appended to the batch as a second row; attention all ones (lines 19-21 add no mask
            row for a single text, the 1 x T ones mask broadcasts)
  nodes     hooks.py:8-13  a = torch.arange(1, 0, -1/N) (float32) -> alpha = 1, (N-1)/N, ..., 1/N;
            g = r + a (x - r), then r appended as row N+1
  weights   XSTransformer.py:55-56  J = Σ_{k<=N} grad_k / N (the reference row dropped): the right
            Riemann rule alpha_k = k/N, k = 1..N, weight 1/N -- ours
  Jacobian  XSTransformer.py:46-51  one autograd.grad of list(E[:, d]) per output dim d
  Δ         XSTransformer.py:85,97  g[0] - g[-1] = h(x) - h(r)
  A         XSTransformer.py:100-113  Σ_{h,h'} Δa (J_aᵀ J_b) Δb = P_aᵀ P_b;
            XSTransformer.py:109-110  cos: divided by |e(a)| |e(b)|, e = row 0 of the mean-pooled,
            unnormalized embeddings (XSTransformer.py:17; no Normalize module); dot: not divided
  lhs terms XSTransformer.py:125-134  cos: true cosines cos(e_a, r_b), cos(e_b, r_a), cos(r_a, r_b)
            (each divided by its own norms, not by |e(a)||e(b)| as A is); dot: plain dot products
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

PAIRS = [
    ("A man is playing a guitar.", "Someone plays an instrument."),
    ("The cat sits on the mat.", "A dog is lying on the rug."),
    ("Children are playing in the park.", "Kids play outside in the sunshine."),
]
LAYERS = [11, 9, 6]
STEPS = 10
SIMS = ["cos", "dot"]
F64 = torch.float64


def run_xsbert(model_dir, dtype, pairs, layers, steps, sims, partial):
    """xsbert's attributions for every case; each finished case is appended to `partial` (JSONL)
    at once, and cases already there are not recomputed, so an interrupted run resumes."""
    dname = str(dtype).replace("torch.", "")
    done = {}
    if os.path.exists(partial):
        with open(partial) as f:
            for line in f:
                r = json.loads(line)
                done[(key(r), r["dtype"])] = r
    todo = [(layer, a, b) for layer in layers for a, b in pairs
            if any((key({"text_a": a, "text_b": b, "layer": layer, "steps": steps, "similarity": s}), dname)
                   not in done for s in sims)]
    if not todo:
        return [r for r in done.values() if r["dtype"] == dname and int(r["layer"]) in layers]
    from sentence_transformers.models import Pooling
    from xsbert import models

    transformer = models.ReferenceTransformer(model_dir)
    pooling = Pooling(transformer.get_word_embedding_dimension())
    model = models.XSMPNet(modules=[transformer, pooling], device="cpu")
    model.to(dtype)
    # cos and dot share xsbert's integrated Jacobians (its explain_similarity differs between them
    # only in XSTransformer.py:109-110 and the lhs terms): memoize xsbert's own
    # _compute_integrated_jacobian on the interpolated input it receives, so the dot call reuses
    # what the cos call computed instead of redoing 2 x 768 backward passes.
    orig, memo = model._compute_integrated_jacobian, {}

    def jacobian(embedding, intermediate, **kw):
        k = (tuple(intermediate.shape), intermediate.detach().cpu().numpy().tobytes())
        if k not in memo:
            memo[k] = orig(embedding, intermediate, **kw)
        return memo[k]
    model._compute_integrated_jacobian = jacobian
    for layer in layers:
        model.reset_attribution()
        model.init_attribution_to_layer(idx=layer, N_steps=steps)
        memo.clear()
        for text_a, text_b in pairs:
            if (layer, text_a, text_b) not in todo:
                continue
            for sim in sims:
                t0 = time.time()
                A, tok_a, tok_b, score, ra, rb, rr = model.explain_similarity(
                    text_a, text_b, sim_measure=sim, return_lhs_terms=True,
                    move_to_cpu=True, verbose=False)
                ids_a = model[0].tokenize([text_a])["input_ids"][0].tolist()
                ids_b = model[0].tokenize([text_b])["input_ids"][0].tolist()
                A = A.double()
                r = {
                    "text_a": text_a, "text_b": text_b, "layer": layer, "steps": steps,
                    "similarity": sim, "dtype": str(dtype).replace("torch.", ""),
                    "tokens_a": tok_a, "tokens_b": tok_b, "ids_a": ids_a, "ids_b": ids_b,
                    "attributions": A.tolist(), "attribution_sum": A.sum().item(),
                    # xsbert's names: score, sim(e_a, r_b), sim(e_b, r_a), sim(r_a, r_b)
                    "score": score, "lhs_terms": {"emb_a__ref_b": ra, "emb_b__ref_a": rb,
                                                  "ref_a__ref_b": rr},
                    "lhs": score - ra - rb + rr,
                }
                done[(key(r), r["dtype"])] = r
                with open(partial, "a") as f:
                    f.write(json.dumps(r) + "\n")
                print(f"  xsbert {r['dtype']} L={layer} {sim}: score {score:+.6f} "
                      f"sum(A) {A.sum().item():+.6f} lhs {score - ra - rb + rr:+.6f} "
                      f"({time.time() - t0:.0f}s) [{text_a!r} / {text_b!r}]", flush=True)
    model.reset_attribution()
    return [r for r in done.values() if r["dtype"] == dname and int(r["layer"]) in layers]


class Ours:
    """Our rule, independently: float64 MPNet layers of transformers, P by forward-mode JVPs."""

    def __init__(self, model_dir):
        from transformers import AutoModel, AutoTokenizer
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModel.from_pretrained(model_dir).to(F64).eval()
        assert self.model.config.model_type == "mpnet"
        self.layers = list(self.model.encoder.layer)

    def ids(self, text):
        return self.tok(text)["input_ids"]

    def hidden(self, ids, layer):
        with torch.no_grad():
            x = torch.tensor([ids])
            return self.model(x, attention_mask=torch.ones_like(x),
                              output_hidden_states=True).hidden_states[layer][0]

    def head(self, layer):
        def f(h):  # N x T x H -> N x D (layers layer.. and mean pooling)
            pb = self.model.encoder.compute_position_bias(h)
            for lay in self.layers[layer:]:
                h = lay(h, None, None, pb)[0]
            return h.mean(1)
        return f

    def embedding(self, ids):
        return self.head(0)(self.hidden(ids, 0)[None])[0].detach()

    def P(self, ids, layer, steps):
        ref = [self.tok.cls_token_id] + [self.tok.pad_token_id] * (len(ids) - 2) + [self.tok.sep_token_id]
        h, hr = self.hidden(ids, layer), self.hidden(ref, layer)
        delta = h - hr
        alphas = torch.arange(1, steps + 1, dtype=F64) / steps
        x = hr[None] + alphas[:, None, None] * delta[None]
        P = torch.zeros(self.model.config.hidden_size, len(ids), dtype=F64)
        with torch.no_grad():
            for i in range(len(ids)):
                v = torch.zeros_like(x)
                v[:, i] = delta[i]
                _, de = torch.func.jvp(self.head(layer), (x,), (v,))
                P[:, i] = de.sum(0) / steps
        return P

    def attributions(self, pairs, layers, steps, sims):
        out, cache = [], {}
        for layer in layers:
            for text_a, text_b in pairs:
                ids_a, ids_b = self.ids(text_a), self.ids(text_b)
                for t, ids in ((text_a, ids_a), (text_b, ids_b)):
                    if (t, layer) not in cache:
                        cache[(t, layer)] = self.P(ids, layer, steps)
                A = cache[(text_a, layer)].T @ cache[(text_b, layer)]
                e_a, e_b = self.embedding(ids_a), self.embedding(ids_b)
                for sim in sims:
                    scale = (e_a.norm() * e_b.norm()).item() if sim == "cos" else 1.0
                    out.append({"text_a": text_a, "text_b": text_b, "layer": layer, "steps": steps,
                                "similarity": sim,
                                "tokens_a": self.tok.convert_ids_to_tokens(ids_a),
                                "tokens_b": self.tok.convert_ids_to_tokens(ids_b),
                                "ids_a": ids_a, "ids_b": ids_b,
                                "attributions": (A / scale).tolist(),
                                "score": (e_a @ e_b).item() / scale})
        return out


def key(r):
    return (r["text_a"], r["text_b"], int(r["layer"]), int(r["steps"]), r["similarity"])


def strip(tokens):
    """Inner tokens (xsbert labels the ends 'CLS'/'EOS' and strips a leading 'Ġ'/'Â')."""
    return list(tokens[1:-1])


def compare(name, xs, ref):
    ref = {key(r): r for r in ref}
    xs = [r for r in xs if key(r) in ref]
    print(f"\nxsbert vs {name}: max|ΔA|/max|A|, |Δscore|, token lists")
    rows = []
    for r in xs:
        g = ref.get(key(r))
        if g is None:
            continue
        A, B = np.array(r["attributions"]), np.array(g["attributions"])
        assert A.shape == B.shape, (A.shape, B.shape)
        rel = float(np.abs(A - B).max() / np.abs(B).max())
        toks = strip(r["tokens_a"]) == strip(g["tokens_a"]) and strip(r["tokens_b"]) == strip(g["tokens_b"])
        ids = ("ids_a" not in g) or (r["ids_a"] == g["ids_a"] and r["ids_b"] == g["ids_b"])
        ds = abs(r["score"] - float(g["score"]))
        rows.append({"pair": PAIRS.index((r["text_a"], r["text_b"])) + 1 if (r["text_a"], r["text_b"]) in PAIRS else -1,
                     "layer": r["layer"], "similarity": r["similarity"], "xsbert_dtype": r["dtype"],
                     "rel_max_abs_diff": rel, "abs_score_diff": ds, "tokens_equal": toks, "ids_equal": ids,
                     "max_abs_A": float(np.abs(B).max())})
        print(f"  P{rows[-1]['pair']} L={r['layer']:2d} {r['similarity']} xsbert-{r['dtype']}: "
              f"{rel:.2e}  |Δscore| {ds:.1e}  tokens {'equal' if toks else 'DIFFER'}"
              f"{'' if ids else ' (ids DIFFER)'}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=os.path.expanduser("~/.cache/simattr/models/all-mpnet-base-v2"))
    ap.add_argument("--golden", default="tests/fixtures/golden/all-mpnet-base-v2.json")
    ap.add_argument("--out", default="/tmp/xsbert-out/results.json")
    ap.add_argument("--compare-only", action="store_true")
    ap.add_argument("--float64", action="store_true",
                    help="also run xsbert with the model cast to float64, at layer 11")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    if args.compare_only:
        with open(args.out) as f:
            res = json.load(f)
    else:
        import transformers
        import sentence_transformers
        res = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                            "sentence_transformers": sentence_transformers.__version__,
                            "xsbert": "lucasmllr/xsbert 471c77f"},
               "model_dir": args.model_dir, "pairs": PAIRS, "layers": LAYERS, "steps": STEPS}
        print(res["versions"])
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        partial = args.out + ".partial.jsonl"
        res["ours_float64"] = Ours(args.model_dir).attributions(PAIRS, LAYERS, STEPS, SIMS)
        # The deep (cheap) layers first, so that an interrupted run has the most cases.
        res["xsbert_float32"] = run_xsbert(args.model_dir, torch.float32, PAIRS, LAYERS, STEPS, SIMS, partial)
        # float64 (model cast with .to(float64)) only where it is cheapest, layer 11: enough to
        # show what float32 accounts for.
        res["xsbert_float64"] = (run_xsbert(args.model_dir, F64, PAIRS, [11], STEPS, SIMS, partial)
                                 if args.float64 else [])
        with open(args.out, "w") as f:
            json.dump(res, f)

    xs = res["xsbert_float32"] + res["xsbert_float64"]
    res["agreement"] = {"ours_float64": compare("our independent float64 script", xs, res["ours_float64"])}
    if os.path.exists(args.golden):
        with open(args.golden) as f:
            golden = json.load(f)
        res["agreement"]["golden"] = compare(args.golden, xs, golden["attributions"])
        res["golden_versions"] = golden.get("versions")
    else:
        print(f"\n{args.golden} not found: compared with the independent script only", file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump(res, f)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

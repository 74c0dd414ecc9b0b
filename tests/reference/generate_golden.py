#!/usr/bin/env python3
"""Golden embeddings and integrated-Jacobian attributions for simattr, computed with PyTorch.

Independent of the Rust code: uses sentence-transformers for tokenization and `encode`, and
transformers' own BertModel modules (eager attention) in float64 for everything else.

Method (xsbert, Moeller et al. EMNLP 2023 / EACL 2024), for a text x of T tokens:
  e(x)   mean over all T tokens of the last hidden state (attention mask all ones), unnormalized
  r      reference input of the same length: [CLS] [PAD]*(T-2) [SEP], token types 0, positions 0..T-1
  h(x)   input of encoder layer L (L = 0: the embedding output after its LayerNorm)
  D      Δ = h(x) - h(r)
  alpha  right Riemann rule, alpha_k = k/N, k = 1..N, weight 1/N
  E      layers L..end on the batch of N inputs h(r) + alpha_k Δ, mean-pooled (N x D)
  J_d    Σ_k (1/N) ∂E[k,d]/∂input_k   (one reverse pass per output dimension d, as xsbert does)
  P      P[d,i] = Σ_h J_d[i,h] Δ[i,h]  (D x T)
  A      P_aᵀ P_b (T_a x T_b); for cos divided by |e(a)| |e(b)|

Usage:
  python generate_golden.py --model-dir tests/fixtures/tiny-bert --name tiny-bert \
      --out tests/fixtures/golden/tiny-bert.json --pairs-preset tiny
  python generate_golden.py --model-dir /path/to/all-MiniLM-L6-v2 --name all-MiniLM-L6-v2 \
      --out tests/fixtures/golden/all-MiniLM-L6-v2.json --pairs-preset real
"""
import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import sentence_transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from transformers import AutoModel  # noqa: E402

F64 = torch.float64

PRESETS = {
    "tiny": {
        "embedding_texts": [
            "hi",
            "A man is playing a guitar.",
            "The dogs were jumping happily in the garden.",
            "The children played in the park at 7 o'clock!",
            "Someone plays an instrument.",
            "The quick brown fox jumps over the lazy dog near the riverbank while the children "
            "are watching from the old bridge.",
        ],
        "pairs": [
            ("A man is playing a guitar.", "Someone plays an instrument."),
            ("The dogs were jumping happily in the garden.", "A cat runs in the park."),
            ("The children played in the park at 7 o'clock!", "hi"),
        ],
        "layers": [0, 2],
        "steps": [5, 20],
        "similarities": ["cos", "dot"],
        # Only for the convergence check (not written): completeness error at many steps.
        "check_steps": 400,
    },
    "real": {
        "embedding_texts": [
            "hi",
            "A man is playing a guitar.",
            "Tokenization splits unbelievably long words into subwords.",
            "Café prices rose 7% in 2023 ☃",
            "The quick brown fox jumps over the lazy dog near the riverbank.",
        ],
        "pairs": [
            ("A man is playing a guitar.", "Someone plays an instrument."),
            ("The cat sits on the mat.", "A dog is lying on the rug."),
            ("Children are playing in the park.", "Kids play outside in the sunshine."),
        ],
        "layers": [0, 3, 5],
        "steps": [10],
        "similarities": ["cos", "dot"],
        "check_steps": 200,
    },
}


class Reference:
    def __init__(self, model_dir):
        self.st = SentenceTransformer(model_dir, device="cpu")
        mods = list(self.st)
        kinds = [type(m).__name__ for m in mods]
        assert kinds[:2] == ["Transformer", "Pooling"], kinds
        pool_cfg = mods[1].get_config_dict()
        mode = pool_cfg.get("pooling_mode")
        assert mode == "mean" or (mode is None and pool_cfg.get("pooling_mode_mean_tokens")), pool_cfg
        self.has_normalize = kinds[2:] == ["Normalize"]
        self.tok = self.st.tokenizer
        self.max_seq_length = self.st.max_seq_length

        self.model = AutoModel.from_pretrained(model_dir, attn_implementation="eager")
        self.model = self.model.to(F64).eval()
        impl = getattr(self.model.config, "_attn_implementation", "eager")
        assert impl == "eager", impl
        assert self.model.config.model_type == "bert", self.model.config.model_type
        self.layers = list(self.model.encoder.layer)
        self.num_layers = len(self.layers)
        self.cls_id, self.sep_id, self.pad_id = self.tok.cls_token_id, self.tok.sep_token_id, self.tok.pad_token_id

    # -- tokenization, exactly as sentence-transformers does it ---------------------------------
    def tokenize(self, text):
        fn = getattr(self.st, "preprocess", None) or self.st.tokenize
        feats = fn([text])
        ids = feats["input_ids"][0].tolist()
        assert all(m == 1 for m in feats["attention_mask"][0].tolist())
        if "token_type_ids" in feats:
            assert all(t == 0 for t in feats["token_type_ids"][0].tolist())
        assert len(ids) <= self.max_seq_length
        assert ids[0] == self.cls_id and ids[-1] == self.sep_id, ids
        return ids, self.tok.convert_ids_to_tokens(ids)

    def reference_ids(self, n):
        assert n >= 2
        return [self.cls_id] + [self.pad_id] * (n - 2) + [self.sep_id]

    def check_raw_tokenizer(self, model_dir, texts):
        """The folder's tokenizer.json read by the bare `tokenizers` library (what a Rust loader
        sees) must give the same ids as sentence-transformers once padding is off and truncation
        is set to max_seq_length. Returns the padding/truncation settings stored in the file."""
        from tokenizers import Tokenizer
        raw = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        stored = {"padding": raw.padding, "truncation": raw.truncation}
        raw.no_padding()
        raw.enable_truncation(max_length=self.max_seq_length)
        for text in texts:
            ids, _ = self.tokenize(text)
            got = raw.encode(text).ids
            assert got == ids, (text, got, ids)
        return stored

    # -- the network, through transformers' own modules ---------------------------------------
    def embed(self, ids):
        ids = torch.tensor([ids], dtype=torch.long)
        t = ids.shape[1]
        return self.model.embeddings(
            input_ids=ids,
            token_type_ids=torch.zeros_like(ids),
            position_ids=torch.arange(t, dtype=torch.long)[None],
        )

    def run_layers(self, h, start, end):
        b, t, _ = h.shape
        mask = torch.ones(b, t, dtype=F64)
        ext = (1.0 - mask[:, None, None, :]) * torch.finfo(F64).min  # all zeros: every token attends
        for layer in self.layers[start:end]:
            out = layer(h, attention_mask=ext)
            h = out[0] if isinstance(out, (tuple, list)) else out
        return h

    def hidden_at(self, ids, layer):
        """Input of encoder layer `layer` (1 x T x H)."""
        with torch.no_grad():
            return self.run_layers(self.embed(ids), 0, layer)

    def embedding(self, ids):
        """e(x): unnormalized mean-pooled last hidden state (D,), float64."""
        with torch.no_grad():
            return self.run_layers(self.embed(ids), 0, self.num_layers)[0].mean(0)

    def check_forward(self, ids):
        with torch.no_grad():
            x = torch.tensor([ids], dtype=torch.long)
            ref = self.model(input_ids=x, attention_mask=torch.ones_like(x),
                             token_type_ids=torch.zeros_like(x)).last_hidden_state
            mine = self.run_layers(self.embed(ids), 0, self.num_layers)
        return (ref - mine).abs().max().item()

    # -- integrated Jacobian ------------------------------------------------------------------
    def path(self, ids, layer, steps):
        """Δ (T x H) and the N right-Riemann interpolation points h(r) + (k/N) Δ (N x T x H)."""
        h = self.hidden_at(ids, layer)[0]
        hr = self.hidden_at(self.reference_ids(len(ids)), layer)[0]
        delta = h - hr
        alphas = torch.arange(1, steps + 1, dtype=F64) / steps
        return delta, hr[None] + alphas[:, None, None] * delta[None]

    def head(self, layer):
        """Layers layer..end and mean pooling: N x T x H -> N x D."""
        return lambda x: self.run_layers(x, layer, self.num_layers).mean(1)

    def compute_P(self, ids, layer, steps, chunk=64):
        """P (D x T) by reverse mode: one backward pass per output dimension d, as xsbert does.
        The D cotangents go through autograd in vectorized chunks (is_grads_batched); each one is
        still an ordinary backward pass of E[:, d]."""
        delta, x = self.path(ids, layer, steps)
        x = x.detach().requires_grad_(True)
        e = self.head(layer)(x)  # N x D
        d_out = e.shape[1]
        P = torch.zeros(d_out, len(ids), dtype=F64)
        for d0 in range(0, d_out, chunk):
            d1 = min(d0 + chunk, d_out)
            cot = torch.zeros(d1 - d0, *e.shape, dtype=F64)
            cot[torch.arange(d1 - d0), :, torch.arange(d0, d1)] = 1.0  # cotangent of Σ_k E[k, d]
            # E[k, d] depends on input_k only, so row k of the gradient is ∂E[k,d]/∂input_k.
            (g,) = torch.autograd.grad(e, x, grad_outputs=cot, retain_graph=d1 < d_out,
                                       is_grads_batched=True)  # (d1-d0) x N x T x H
            J = g.sum(1) / steps  # (d1-d0) x T x H
            P[d0:d1] = (J * delta[None]).sum(-1)
        return P.detach()

    def compute_P_forward(self, ids, layer, steps):
        """P (D x T) by forward mode (one JVP per token i, tangent Δ on row i only): an independent
        cross-check of compute_P, and what the Rust engine does."""
        delta, x = self.path(ids, layer, steps)
        P = torch.zeros(self.model.config.hidden_size, len(ids), dtype=F64)
        with torch.no_grad():
            for i in range(len(ids)):
                v = torch.zeros_like(x)
                v[:, i] = delta[i]
                _, de = torch.func.jvp(self.head(layer), (x,), (v,))
                P[:, i] = de.sum(0) / steps
        return P

    def path_sum(self, ids, layer, steps):
        """Σ_i P[:, i] (D,) by one JVP along Δ: the Riemann sum of d/dα e(h(r) + αΔ)."""
        delta, x = self.path(ids, layer, steps)
        with torch.no_grad():
            _, de = torch.func.jvp(self.head(layer), (x,), (delta[None].expand_as(x).contiguous(),))
        return de.sum(0) / steps


def floats(t):
    return [float(v) for v in (t.tolist() if hasattr(t, "tolist") else t)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pairs-preset", choices=sorted(PRESETS), default="tiny")
    args = ap.parse_args()
    preset = PRESETS[args.pairs_preset]
    torch.manual_seed(0)

    R = Reference(args.model_dir)
    print(f"model {args.name}: {R.num_layers} layers, max_seq_length {R.max_seq_length}, "
          f"normalize {R.has_normalize}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"sentence-transformers {sentence_transformers.__version__}")

    all_texts = list(preset["embedding_texts"]) + [t for p in preset["pairs"] for t in p]
    stored = R.check_raw_tokenizer(args.model_dir, all_texts)
    print(f"tokenizer.json stored settings (overridden per call by sentence-transformers): {stored}")

    # ---------------- embeddings ----------------
    embeddings = []
    worst = {"forward": 0.0, "encode_vs_raw": 0.0}
    for text in preset["embedding_texts"]:
        ids, tokens = R.tokenize(text)
        raw = R.embedding(ids)
        enc = R.st.encode(text, convert_to_numpy=True)  # float32, as sentence-transformers does by default
        assert enc.dtype == np.float32, enc.dtype
        fwd_err = R.check_forward(ids)
        expect = raw / raw.norm() if R.has_normalize else raw
        enc_err = float(np.abs(enc.astype(np.float64) - expect.numpy()).max())
        worst["forward"] = max(worst["forward"], fwd_err)
        worst["encode_vs_raw"] = max(worst["encode_vs_raw"], enc_err)
        print(f"  embed T={len(ids):3d} forward-err {fwd_err:.2e} encode-vs-raw {enc_err:.2e}  {tokens}")
        assert fwd_err < 1e-10, fwd_err
        assert enc_err < 1e-5, enc_err
        embeddings.append({"text": text, "tokens": tokens, "ids": ids,
                           "raw": floats(raw), "encode": [float(v) for v in enc]})

    print(f"embeddings: max |layer-by-layer - model()| {worst['forward']:.2e}, "
          f"max |encode - raw/|raw|| {worst['encode_vs_raw']:.2e}")

    # ---------------- attributions ----------------
    cache = {}
    rev_vs_fwd = []

    def get_P(ids, layer, steps):
        key = (tuple(ids), layer, steps)
        if key not in cache:
            P = R.compute_P(ids, layer, steps)
            P_fwd = R.compute_P_forward(ids, layer, steps)
            err = ((P - P_fwd).abs().max() / P.abs().max()).item()
            rev_vs_fwd.append(err)
            assert err < 1e-10, f"reverse vs forward mode P differ: {err:.3e}"
            cache[key] = P
        return cache[key]

    completeness = {}  # (text, layer, steps) -> max abs error
    attributions = []
    max_steps = max(preset["steps"])
    identity_errs = []
    for text_a, text_b in preset["pairs"]:
        ids_a, tok_a = R.tokenize(text_a)
        ids_b, tok_b = R.tokenize(text_b)
        e_a, e_b = R.embedding(ids_a), R.embedding(ids_b)
        r_a, r_b = R.embedding(R.reference_ids(len(ids_a))), R.embedding(R.reference_ids(len(ids_b)))
        for layer in preset["layers"]:
            assert 0 <= layer < R.num_layers
            for steps in preset["steps"]:
                P_a, P_b = get_P(ids_a, layer, steps), get_P(ids_b, layer, steps)
                for text, P, e, r in ((text_a, P_a, e_a, r_a), (text_b, P_b, e_b, r_b)):
                    err = (P.sum(1) - (e - r)).abs().max().item()
                    completeness[(text, layer, steps)] = (err, (e - r).abs().max().item())
                A_dot = P_a.T @ P_b
                for sim in preset["similarities"]:
                    if sim == "cos":
                        scale = (e_a.norm() * e_b.norm()).item()
                        score = (e_a @ e_b).item() / scale
                    else:
                        scale = 1.0
                        score = (e_a @ e_b).item()
                    A = A_dot / scale
                    refs = {"ref_a__b": (r_a @ e_b).item() / scale,
                            "a__ref_b": (e_a @ r_b).item() / scale,
                            "ref_a__ref_b": (r_a @ r_b).item() / scale}
                    asum = A.sum().item()
                    expected = score - refs["ref_a__b"] - refs["a__ref_b"] + refs["ref_a__ref_b"]
                    ident = asum - expected
                    if steps == max_steps:
                        identity_errs.append((abs(ident), abs(expected), text_a, text_b, layer, sim,
                                              scale, ident))
                    attributions.append({
                        "text_a": text_a, "text_b": text_b, "layer": layer, "steps": steps,
                        "similarity": sim, "tokens_a": tok_a, "tokens_b": tok_b,
                        "attributions": [floats(row) for row in A],
                        "score": score, "attribution_sum": asum, "reference_terms": refs,
                        "embedding_a": floats(e_a), "embedding_b": floats(e_b),
                        "reference_embedding_a": floats(r_a), "reference_embedding_b": floats(r_b),
                        "checks": {
                            "completeness_max_abs_err_a": completeness[(text_a, layer, steps)][0],
                            "completeness_max_abs_err_b": completeness[(text_b, layer, steps)][0],
                            "identity_err": ident,
                        },
                    })
                    print(f"  L={layer} N={steps:3d} {sim}: score {score:+.5f} sum(A) {asum:+.5f} "
                          f"expected {expected:+.5f} identity-err {ident:+.2e}  [{text_a!r} / {text_b!r}]")

    print(f"reverse- vs forward-mode P: max relative difference {max(rev_vs_fwd):.3e} over {len(rev_vs_fwd)} P")
    print("completeness  max_d |Σ_i P_di - (e_d(x) - e_d(r))|   (relative to max_d |e_d(x) - e_d(r)|):")
    for (text, layer, steps), (err, mag) in sorted(completeness.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        print(f"  L={layer} N={steps:3d} err {err:.3e} (rel {err / mag:.3e})  {text!r}")
    max_rel_at_max = max(err / mag for (t, l, n), (err, mag) in completeness.items() if n == max_steps)
    print(f"max completeness error at N={max_steps}: abs "
          f"{max(err for (t, l, n), (err, mag) in completeness.items() if n == max_steps):.3e}, rel {max_rel_at_max:.3e}")
    worst_ident = max(identity_errs)
    print(f"max identity error at N={max_steps}: {worst_ident[0]:.3e} (|expected| {worst_ident[1]:.3e}, {worst_ident[2:]})")

    # Convergence check (not written): right Riemann error is O(1/N), so at many steps the
    # per-text completeness error must shrink accordingly. Σ_i P_di at many steps comes from one
    # JVP along Δ per step (path_sum), which is cheap; Σ_ij A_ij = Σ_d (Σ_i P^a_di)(Σ_j P^b_dj).
    n_chk = preset["check_steps"]
    worst_chk = 0.0
    P_chk = {}
    for (text, layer, steps), (err, mag) in sorted(completeness.items()):
        if steps != max_steps:
            continue
        ids, _ = R.tokenize(text)
        S = R.path_sum(ids, layer, n_chk)
        P_chk[(text, layer)] = S
        e, r = R.embedding(ids), R.embedding(R.reference_ids(len(ids)))
        err_chk = (S - (e - r)).abs().max().item()
        worst_chk = max(worst_chk, err_chk / mag)
        print(f"  convergence L={layer}: err N={max_steps} {err:.3e} -> N={n_chk} {err_chk:.3e} "
              f"(ratio {err / max(err_chk, 1e-300):.1f}, ideal {n_chk / max_steps:.0f})  {text!r}")
        assert err_chk <= err * 2.0 * max_steps / n_chk + 1e-12, "completeness does not converge as O(1/N)"
    print(f"max relative completeness error at N={n_chk}: {worst_chk:.3e}")
    assert worst_chk < 2e-2, worst_chk
    # Pair identity at many steps: Σ A -> score - ref_a__b - a__ref_b + ref_a__ref_b, also O(1/N).
    worst_ident_chk = 0.0
    for _, _, text_a, text_b, layer, sim, scale, ident in identity_errs:
        ids_a, _ = R.tokenize(text_a)
        ids_b, _ = R.tokenize(text_b)
        e_a, e_b = R.embedding(ids_a), R.embedding(ids_b)
        r_a, r_b = R.embedding(R.reference_ids(len(ids_a))), R.embedding(R.reference_ids(len(ids_b)))
        asum = (P_chk[(text_a, layer)] @ P_chk[(text_b, layer)]).item() / scale  # Σ_ij A_ij
        expected = ((e_a - r_a) @ (e_b - r_b)).item() / scale
        ident_chk = asum - expected
        worst_ident_chk = max(worst_ident_chk, abs(ident_chk))
        print(f"  identity L={layer} {sim}: err N={max_steps} {ident:+.3e} -> N={n_chk} {ident_chk:+.3e}  "
              f"[{text_a!r} / {text_b!r}]")
        assert abs(ident_chk) <= abs(ident) * 2.0 * max_steps / n_chk + 1e-12, "identity does not converge"
        assert abs(ident_chk) <= 1e-2 * max(abs(expected), 1e-3), (ident_chk, expected)
    print(f"max identity error at N={n_chk}: {worst_ident_chk:.3e}")

    out = {
        "generator": "tests/reference/generate_golden.py",
        "model": args.name,
        "dtype": "float64",
        "max_seq_length": R.max_seq_length,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "sentence_transformers": sentence_transformers.__version__},
        "embeddings": embeddings,
        "attributions": attributions,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes): {len(embeddings)} embeddings, "
          f"{len(attributions)} attributions")


if __name__ == "__main__":
    sys.exit(main())

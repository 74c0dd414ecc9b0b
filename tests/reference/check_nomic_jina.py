#!/usr/bin/env python3
"""Independent checks of the NomicBERT and JinaBERT v2 goldens (tests/fixtures/golden/tiny-nomic-bert.json,
tiny-jina-bert.json), from the math rather than from the code that wrote them.

1. A second float64 forward, written out here from model.safetensors and config.json with plain
   torch ops (its own LayerNorm, GELU, rotation and ALiBi formulas; no transformers, no
   sentence-transformers, no nomic_jina_reference), reproduces every golden embedding (`raw`,
   `embedding_*`, `reference_embedding_*`) and every attribution matrix (P by one JVP per token,
   right Riemann rule, N = `steps`), and agrees layer by layer with the reference modules the
   goldens were computed with.
2. Derivatives of the reference modules' layers and of the functional head f_L (layers L.., mean
   pooling): the JVP (torch.func.jvp) equals the VJP transposed (<w, J u> = <Jᵀ w, u>) and central
   finite differences in float64.
3. Completeness at many steps: Σ_i P_di at N = 1000 (one JVP along Δ per step) tends to
   e_d(x) - e_d(r) as O(1/N) from the golden's N, and Σ A tends to score - ref_a__b - a__ref_b +
   ref_a__ref_b (cos terms divided by |e(a)| |e(b)|), as generate_golden_generic.py checks.
4. Family invariants. JinaBERT: the ALiBi bias is symmetric and equals -m_h |i - j| with
   m = 2^-2, 2^-4, 2^-6, 2^-8 for 4 heads (and the non-power-of-two rule for 6 and 12 heads); the
   golden's slopes are those; with no absolute positions and a symmetric bias, the token states
   of the reversed sequence are the reversed states (so the mean-pooled embedding is unchanged).
   NomicBERT: the rotated q·k of positions p and p + s depends on s only (half-split and
   interleaved pairing); shifting every position id by s leaves the token states unchanged;
   transformers 5.23's own NomicBertModel (loaded through its checkpoint conversion from the
   fixture's tensors, rotary patched to float64) gives the same token states.
   Both: the position encoding matters (dropping it moves the embeddings).

Prints every result; exits non-zero when any check fails.

Usage: python check_nomic_jina.py            (both committed fixtures, 40 s-3.5 min on the 2-core CPU, depending on load)
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

F64 = torch.float64
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures"))
FAILURES = []


def check(ok, msg):
    print(("  ok    " if ok else "  FAIL  ") + msg)
    if not ok:
        FAILURES.append(msg)


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


# ---- a second forward, written out --------------------------------------------------------------
def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def slopes_closed_form(n):
    """m_h for heads h = 0..n-1: n a power of two: 2^(-8(h+1)/n); otherwise the c = 2^floor(log2 n)
    slopes 2^(-8(h+1)/c), then the slopes 2^(-8(2j+1)/(2c)), j = 0..n-c-1 (every other one of 2c's)."""
    c = 1 << (n.bit_length() - 1)
    out = [2.0 ** (-8.0 * (h + 1) / c) for h in range(c)]
    out += [2.0 ** (-8.0 * (2 * j + 1) / (2 * c)) for j in range(n - c)]
    return out


class Functional:
    """Token states and embeddings of one fixture, float64, from its files."""

    def __init__(self, folder):
        self.folder = folder
        self.cfg = json.load(open(os.path.join(folder, "config.json")))
        self.W = {k: v.to(F64) for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
        self.nomic = self.cfg["model_type"] == "nomic_bert"
        c = self.cfg
        if self.nomic:
            self.H, self.nh, self.L = c["n_embd"], c["n_head"], c["n_layer"]
            self.eps = c["layer_norm_epsilon"]
            self.d = self.H // self.nh
            self.rd = int(self.d * c["rotary_emb_fraction"])
            self.base = float(c["rotary_emb_base"])
            self.interleaved = c["rotary_emb_interleaved"]
            assert c["activation_function"] == "swiglu" and not c["prenorm"] and not c["qkv_proj_bias"]
            assert not c["mlp_fc1_bias"] and not c["mlp_fc2_bias"] and c["rotary_scaling_factor"] is None
        else:
            self.H, self.nh, self.L = c["hidden_size"], c["num_attention_heads"], c["num_hidden_layers"]
            self.eps = c["layer_norm_eps"]
            self.d = self.H // self.nh
            self.F = c["intermediate_size"]
            assert c["position_embedding_type"] == "alibi" and c["feed_forward_type"] == "geglu"
            self.slopes = torch.tensor(slopes_closed_form(self.nh), dtype=F64)
        self.use_positions = True

    # positions -------------------------------------------------------------------------------
    def angles(self, pos):
        i = torch.arange(self.rd // 2, dtype=F64)
        return pos.to(F64)[:, None] * self.base ** (-2.0 * i / self.rd)  # T x rd/2

    def rotate(self, x, pos, interleaved=None):
        """x [..., T, heads, d]: pairs rotate by p·θ_i (half-split: (x_i, x_{i+rd/2}); interleaved:
        (x_{2i}, x_{2i+1})); dims past rd untouched."""
        interleaved = self.interleaved if interleaved is None else interleaved
        if not self.use_positions:
            return x
        a = self.angles(pos)[:, None, :]
        c, s = torch.cos(a), torch.sin(a)
        xr, rest = x[..., : self.rd], x[..., self.rd:]
        if interleaved:
            x1, x2 = xr[..., 0::2], xr[..., 1::2]
            y = torch.stack((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).flatten(-2)
        else:
            x1, x2 = xr[..., : self.rd // 2], xr[..., self.rd // 2:]
            y = torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)
        return torch.cat((y, rest), dim=-1)

    def alibi(self, t):
        i = torch.arange(t, dtype=F64)
        dist = (i[:, None] - i[None, :]).abs()
        return -self.slopes[:, None, None] * dist if self.use_positions else torch.zeros(self.nh, t, t, dtype=F64)

    # network -----------------------------------------------------------------------------------
    def embed(self, ids):
        W = self.W
        ids = torch.as_tensor(ids)
        e = W["embeddings.word_embeddings.weight"][ids] + W["embeddings.token_type_embeddings.weight"][0]
        if self.nomic:
            return layer_norm(e, W["emb_ln.weight"], W["emb_ln.bias"], self.eps)
        return layer_norm(e, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], self.eps)

    def layer(self, l, h, pos=None):
        """h [N, T, H] -> [N, T, H]."""
        W, H, nh, d = self.W, self.H, self.nh, self.d
        n, t, _ = h.shape
        pos = torch.arange(t) if pos is None else pos
        if self.nomic:
            p = f"encoder.layers.{l}."
            qkv = h @ W[p + "attn.Wqkv.weight"].T
            q, k, v = (x.reshape(n, t, nh, d) for x in (qkv[..., :H], qkv[..., H:2 * H], qkv[..., 2 * H:]))
            q, k = self.rotate(q, pos), self.rotate(k, pos)
            s = torch.einsum("nqhd,nkhd->nhqk", q, k) / math.sqrt(d)
            o = torch.einsum("nhqk,nkhd->nqhd", torch.softmax(s, -1), v).reshape(n, t, H)
            h = layer_norm(h + o @ W[p + "attn.out_proj.weight"].T, W[p + "norm1.weight"], W[p + "norm1.bias"], self.eps)
            gate, up = h @ W[p + "mlp.fc12.weight"].T, h @ W[p + "mlp.fc11.weight"].T
            m = (up * gate * torch.sigmoid(gate)) @ W[p + "mlp.fc2.weight"].T
            return layer_norm(h + m, W[p + "norm2.weight"], W[p + "norm2.bias"], self.eps)
        p = f"encoder.layer.{l}."

        def lin(name, x):
            return x @ W[p + name + ".weight"].T + W[p + name + ".bias"]

        q, k, v = (lin(f"attention.self.{n_}", h).reshape(n, t, nh, d) for n_ in ("query", "key", "value"))
        s = torch.einsum("nqhd,nkhd->nhqk", q, k) / math.sqrt(d) + self.alibi(t)
        o = torch.einsum("nhqk,nkhd->nqhd", torch.softmax(s, -1), v).reshape(n, t, H)
        h = layer_norm(h + lin("attention.output.dense", o), W[p + "attention.output.LayerNorm.weight"],
                       W[p + "attention.output.LayerNorm.bias"], self.eps)
        g = h @ W[p + "mlp.gated_layers.weight"].T
        m = lin("mlp.wo", gelu_erf(g[..., : self.F]) * g[..., self.F:])
        return layer_norm(h + m, W[p + "mlp.layernorm.weight"], W[p + "mlp.layernorm.bias"], self.eps)

    def states_at(self, ids, L):
        """The hidden states entering layer L (L = 0: the embedding output), [T, H]."""
        h = self.embed(ids)[None]
        for l in range(L):
            h = self.layer(l, h)
        return h[0]

    def head(self, L, k=None):
        """x [N, T, H] entering layer L -> mean-pooled last states [N, D] (first k values)."""
        def f(x):
            for l in range(L, self.L):
                x = self.layer(l, x)
            e = x.mean(1)
            return e if k is None else e[:, :k]
        return f

    def embedding(self, ids, k=None):
        return self.head(0, k)(self.embed(ids)[None])[0]


# ---- the checks ---------------------------------------------------------------------------------
def check_goldens(fn, g):
    """(1) embeddings and attribution matrices reproduced; reference ids follow the rule."""
    print(f"[1] {g['model']}: golden values from the written-out forward")
    worst, worst_enc, seen = 0.0, 0.0, set()
    tok = Tokenizer.from_file(os.path.join(fn.folder, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=g["max_seq_length"])
    for e in g["embeddings"]:
        prompt = g["prompts"][e["prompt"]] if e["prompt"] else ""
        assert tok.encode(prompt + e["text"]).ids == e["ids"], e["text"]
        got = fn.embedding(e["ids"], e["truncate_dim"])
        worst = max(worst, rel(got, torch.tensor(e["raw"], dtype=F64)))
        full = torch.nn.functional.normalize(fn.embedding(e["ids"]), dim=0)
        k = e["truncate_dim"] or len(full)
        worst_enc = max(worst_enc, (full[:k] - torch.tensor(e["encode"], dtype=F64)).abs().max().item())
    for a in g["attributions"]:
        for side in "ab":
            ids, ref = a[f"ids_{side}"], a[f"reference_ids_{side}"]
            assert ref == [ids[0]] + [0] * (len(ids) - 2) + [ids[-1]] and ids[0] == 101 and ids[-1] == 102, ref
            for key, emb in ((f"ids_{side}", f"embedding_{side}"), (f"reference_ids_{side}", f"reference_embedding_{side}")):
                if (tuple(a[key]), a["truncate_dim"]) in seen:
                    continue
                seen.add((tuple(a[key]), a["truncate_dim"]))
                worst = max(worst, rel(fn.embedding(a[key], a["truncate_dim"]), torch.tensor(a[emb], dtype=F64)))
    check(worst < 1e-12, f"{len(g['embeddings'])} embeddings and {len(seen)} attribution inputs: max relative "
                         f"difference {worst:.2e} (< 1e-12)")
    check(worst_enc < 1e-5, f"float32 `encode` = normalized embedding (first truncate_dim values): {worst_enc:.1e} "
                            f"(< 1e-5)")
    # attribution matrices: P by one JVP per token (tangent Δ on that token's row), right Riemann rule
    cache, worst_a, worst_s = {}, 0.0, 0.0
    for a in g["attributions"]:
        N, L, k = a["steps"], a["layer"], a["truncate_dim"]
        Ps = []
        for side in "ab":
            key = (tuple(a[f"ids_{side}"]), L, N, k)
            if key not in cache:
                h, hr = fn.states_at(a[f"ids_{side}"], L), fn.states_at(a[f"reference_ids_{side}"], L)
                delta = h - hr
                x = hr[None] + (torch.arange(1, N + 1, dtype=F64) / N)[:, None, None] * delta[None]
                f = fn.head(L, k)
                P = []
                for i in range(delta.shape[0]):
                    v = torch.zeros_like(x)
                    v[:, i] = delta[i]
                    P.append(torch.func.jvp(f, (x,), (v,))[1].sum(0) / N)
                cache[key] = torch.stack(P, dim=1)  # D x T
            Ps.append(cache[key])
        ea, eb = torch.tensor(a["embedding_a"], dtype=F64), torch.tensor(a["embedding_b"], dtype=F64)
        scale = (ea.norm() * eb.norm()).item() if a["similarity"] == "cos" else 1.0
        A = Ps[0].T @ Ps[1] / scale
        worst_a = max(worst_a, rel(A, torch.tensor(a["attributions"], dtype=F64)))
        worst_s = max(worst_s, abs(A.sum().item() - a["attribution_sum"]) / max(abs(a["attribution_sum"]), 1e-300))
    check(worst_a < 1e-10 and worst_s < 1e-10, f"{len(g['attributions'])} attribution matrices (forward mode, own "
          f"forward): max relative difference {worst_a:.2e}, attribution_sum {worst_s:.2e} (< 1e-10)")


def check_reference_layers(fn, model):
    """(1) the reference modules agree layer by layer; (2) their JVP = VJPᵀ = central differences."""
    import nomic_jina_reference as ref
    print(f"[1, 2] {os.path.basename(fn.folder)}: reference modules vs the written-out forward; derivatives")
    layers = ref.layer_list(model)
    gen = torch.Generator().manual_seed(7)
    ids = [101] + torch.randint(104, 409, (17,), generator=gen).tolist() + [102]
    t = len(ids)
    if fn.nomic:
        cos, sin = ref.rotary_cos_sin(fn.base, fn.rd, t, F64)
        kw = dict(cos=cos, sin=sin, mask=None)
    else:
        kw = dict(bias=ref.alibi_bias(fn.nh, t, F64), mask=None)
    h = fn.embed(ids)[None]
    with torch.no_grad():
        worst = rel(model.embed(torch.tensor([ids])), h)
    for l, layer in enumerate(layers):
        def g(x, layer=layer):
            return layer(x, **kw)

        with torch.no_grad():
            out_ref, out_fn = g(h), fn.layer(l, h)
        worst = max(worst, rel(out_ref, out_fn))
        u = torch.randn(h.shape, generator=gen, dtype=F64)
        w = torch.randn(h.shape, generator=gen, dtype=F64)
        _, ju = torch.func.jvp(g, (h,), (u,))
        _, pullback = torch.func.vjp(g, h)
        (jtw,) = pullback(w)
        lhs, rhs = (w * ju).sum().item(), (jtw * u).sum().item()
        eps = 1e-5
        with torch.no_grad():
            fd = (g(h + eps * u) - g(h - eps * u)) / (2 * eps)
        check(abs(lhs - rhs) <= 1e-12 * max(abs(lhs), 1.0) and rel(fd, ju) < 1e-7,
              f"layer {l}: <w, J u> {lhs:+.15e} vs <Jᵀw, u> {rhs:+.15e}; central differences vs JVP {rel(fd, ju):.1e}")
        h = out_fn
    check(worst < 1e-13, f"embedding output and {len(layers)} layers: reference modules vs written-out forward "
                         f"{worst:.1e} (< 1e-13)")
    # the whole head f_L (layers L.., mean pooling), written-out forward
    for L in range(fn.L):
        x = fn.states_at(ids, L)[None].expand(3, -1, -1).contiguous()
        f = fn.head(L)
        u = torch.randn(x.shape, generator=gen, dtype=F64)
        w = torch.randn(3, fn.H, generator=gen, dtype=F64)
        _, ju = torch.func.jvp(f, (x,), (u,))
        _, pullback = torch.func.vjp(f, x)
        (jtw,) = pullback(w)
        lhs, rhs = (w * ju).sum().item(), (jtw * u).sum().item()
        eps = 1e-5
        fd = (f(x + eps * u) - f(x - eps * u)) / (2 * eps)
        check(abs(lhs - rhs) <= 1e-12 * max(abs(lhs), 1.0) and rel(fd, ju) < 1e-7,
              f"head f_{L}: <w, J u> vs <Jᵀw, u> differ by {abs(lhs - rhs):.1e}; central differences vs JVP "
              f"{rel(fd, ju):.1e}")


def check_completeness(fn, g, big=1000):
    """(3) Σ_i P_di and Σ A converge to their limits as O(1/N)."""
    print(f"[3] {g['model']}: completeness at N = {big} (JVP along Δ)")
    done, worst_ratio, worst_ident = {}, float("inf"), 0.0
    (N,) = {a["steps"] for a in g["attributions"]}

    def path_sum(ids, ref_ids, L, N):
        h, hr = fn.states_at(ids, L), fn.states_at(ref_ids, L)
        x = hr[None] + (torch.arange(1, N + 1, dtype=F64) / N)[:, None, None] * (h - hr)[None]
        return torch.func.jvp(fn.head(L), (x,), ((h - hr)[None].expand_as(x).contiguous(),))[1].sum(0) / N

    for a in g["attributions"]:
        if a["truncate_dim"] is not None:
            continue
        L = a["layer"]
        S = {}
        for side in "ab":
            ids, ref_ids = a[f"ids_{side}"], a[f"reference_ids_{side}"]
            key = (tuple(ids), L)
            if key not in done:
                de = fn.embedding(ids) - fn.embedding(ref_ids)
                err_n = (path_sum(ids, ref_ids, L, N) - de).abs().max().item()
                sb = path_sum(ids, ref_ids, L, big)
                err_big = (sb - de).abs().max().item()
                done[key] = sb
                ratio = err_n / max(err_big, 1e-300)
                worst_ratio = min(worst_ratio, ratio)
                ok = err_big <= err_n * 2.0 * N / big + 1e-12 and err_big / de.abs().max().item() < 1e-2
                if not ok:
                    check(False, f"L={L} {a[f'text_{side}']!r}: completeness {err_n:.2e} at N={N} -> {err_big:.2e}")
            S[side] = done[key]
        ea, eb = torch.tensor(a["embedding_a"], dtype=F64), torch.tensor(a["embedding_b"], dtype=F64)
        scale = (ea.norm() * eb.norm()).item() if a["similarity"] == "cos" else 1.0
        t = a["reference_terms"]
        rhs = a["score"] - t["ref_a__b"] - t["a__ref_b"] + t["ref_a__ref_b"]
        size = abs(a["score"]) + abs(t["ref_a__b"]) + abs(t["a__ref_b"]) + abs(t["ref_a__ref_b"])
        ident = (S["a"] @ S["b"]).item() / scale - rhs
        worst_ident = max(worst_ident, abs(ident) / size)
        if abs(ident) > 1e-2 * size:
            check(False, f"L={L} {a['similarity']}: identity error {ident:.2e} at N={big} (terms {size:.2e})")
    check(worst_ratio >= big / N / 2, f"{len(done)} (text, layer): completeness error shrinks from "
          f"N={N} to N={big} by at least x{worst_ratio:.0f} (needed x{big // N // 2}, ideal x{big // N})")
    check(worst_ident < 1e-2, f"Σ A -> score - ref_a__b - a__ref_b + ref_a__ref_b: max |error| / |terms| at N={big} "
                              f"{worst_ident:.1e} (< 1e-2)")


def check_jina_invariants(fn, g):
    import nomic_jina_reference as ref
    print("[4] JinaBERT: ALiBi")
    worst = max(rel(torch.tensor(ref.alibi_slopes(n), dtype=F64), torch.tensor(slopes_closed_form(n), dtype=F64))
                for n in range(1, 17))  # start · start^i: a few ulps from the closed form
    check(ref.alibi_slopes(4) == [0.25, 0.0625, 0.015625, 0.00390625], f"4 heads: slopes {ref.alibi_slopes(4)}")
    s6, s12 = ref.alibi_slopes(6), ref.alibi_slopes(12)
    check(s6 == [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3],
          f"6 heads (not a power of two): {s6} = 2^-2, 2^-4, 2^-6, 2^-8, then 2^-1, 2^-3")
    expect12 = [2.0 ** -e for e in range(1, 9)] + [2.0 ** -e for e in (0.5, 1.5, 2.5, 3.5)]
    check(rel(torch.tensor(s12, dtype=F64), torch.tensor(expect12, dtype=F64)) < 4e-15,
          "12 heads (jina-embeddings-v2-base-en): 2^-1..2^-8, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5")
    check(worst < 4e-15, f"1..16 heads: the recursive rule = the closed form 2^(-8(h+1)/c), 2^(-8(2j+1)/2c) "
                         f"({worst:.1e})")
    for t in (1, 7, 33):
        b = ref.alibi_bias(4, t, F64)
        i = torch.arange(t, dtype=F64)
        expect = -torch.tensor([0.25, 0.0625, 0.015625, 0.00390625], dtype=F64)[:, None, None] * (i[:, None] - i[None]).abs()
        check(torch.equal(b, b.transpose(1, 2)) and torch.equal(b, expect) and torch.equal(b, fn.alibi(t)),
              f"T={t}: bias[h, i, j] symmetric, = -m_h |i - j| exactly (reference and written-out)")
        b32 = ref.alibi_bias(4, t, torch.float32)
        check(torch.equal(b32.to(F64), expect), f"T={t}: the float32 bias (published code's precision) is exact for 4 heads")
    check(all(a["alibi_slopes"] == [0.25, 0.0625, 0.015625, 0.00390625] for a in g["attention_layers"]),
          "the golden's attention_layers list these slopes for every layer")
    # reversal equivariance: no absolute positions, bias symmetric in i, j
    ids = g["embeddings"][2]["ids"]
    h = fn.embed(ids)[None]
    hrev = fn.embed(ids[::-1])[None]
    for l in range(fn.L):
        h, hrev = fn.layer(l, h), fn.layer(l, hrev)
    check(rel(hrev.flip(1), h) < 1e-13, f"token states of the reversed sequence = reversed token states "
                                        f"({rel(hrev.flip(1), h):.1e}; T={len(ids)})")
    fn.use_positions = False
    moved = rel(fn.embedding(ids), torch.tensor(g["embeddings"][2]["raw"], dtype=F64))
    fn.use_positions = True
    check(moved > 1e-2, f"without ALiBi the embedding of a {len(ids)}-token text moves by {moved:.2f} (relative)")


def check_nomic_invariants(fn, g):
    import nomic_jina_reference as ref
    print("[4] NomicBERT: rotary")
    gen = torch.Generator().manual_seed(11)
    for interleaved in (False, True):
        q = torch.randn(1, 1, fn.d, generator=gen, dtype=F64)
        k = torch.randn(1, 1, fn.d, generator=gen, dtype=F64)
        worst = 0.0
        for s in (0, 1, 5, 23):
            dots = []
            for p in (0, 3, 17, 40):
                qr = fn.rotate(q, torch.tensor([p]), interleaved)
                kr = fn.rotate(k, torch.tensor([p + s]), interleaved)
                cos, sin = ref.rotary_cos_sin(fn.base, fn.rd, p + s + 1, F64)
                qr2 = ref.apply_rotary(q, cos[p:p + 1], sin[p:p + 1], interleaved)
                kr2 = ref.apply_rotary(k, cos[p + s:p + s + 1], sin[p + s:p + s + 1], interleaved)
                worst = max(worst, rel(qr2, qr), rel(kr2, kr))
                dots.append((qr * kr).sum().item())
            spread = max(dots) - min(dots)
            check(spread < 1e-12 * max(1.0, abs(dots[0])),
                  f"{'interleaved' if interleaved else 'half-split'}: q·k at positions p, p+{s} for p = 0, 3, 17, 40: "
                  f"spread {spread:.1e}")
        check(worst < 1e-14, f"{'interleaved' if interleaved else 'half-split'}: reference rotation = written-out "
                             f"rotation ({worst:.1e})")
    inv = torch.tensor(g["attention_layers"][0]["inv_freq"], dtype=F64)
    check(torch.equal(inv, ref.rotary_inv_freq(fn.base, fn.rd, F64)) and
          torch.allclose(inv, fn.base ** (-2.0 * torch.arange(fn.rd // 2, dtype=F64) / fn.rd), rtol=1e-15, atol=0),
          f"golden inv_freq = 1000^(-2i/8): {inv.tolist()}")
    ids = g["embeddings"][2]["ids"]
    t = len(ids)
    h1 = fn.embed(ids)[None]
    h2 = h1.clone()
    for l in range(fn.L):
        h1, h2 = fn.layer(l, h1), fn.layer(l, h2, pos=torch.arange(t) + 9)
    check(rel(h2, h1) < 1e-12, f"positions 9..{t + 8} instead of 0..{t - 1}: token states unchanged ({rel(h2, h1):.1e})")
    fn.use_positions = False
    moved = rel(fn.embedding(ids), torch.tensor(g["embeddings"][2]["raw"], dtype=F64))
    fn.use_positions = True
    check(moved > 1e-2, f"without the rotation the embedding of a {t}-token text moves by {moved:.2f} (relative)")
    check_native_nomic(fn, g)


def check_native_nomic(fn, g):
    """transformers 5.23's NomicBertModel (hidden_size etc. from n_embd etc.; the checkpoint names
    renamed by transformers' own conversion mapping: fc11 -> up_proj, fc12 -> gate_proj, Wqkv split in
    q, k, v) gives the same token states; its rotary is float32, patched here to float64."""
    import shutil
    import tempfile
    import warnings
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import NomicBertConfig, NomicBertModel
    from transformers.models.nomic_bert import modeling_nomic_bert as mnb
    c = fn.cfg
    native = NomicBertConfig(vocab_size=c["vocab_size"], hidden_size=c["n_embd"], num_hidden_layers=c["n_layer"],
                             num_attention_heads=c["n_head"], intermediate_size=c["n_inner"], hidden_act="silu",
                             max_position_embeddings=c["n_positions"], type_vocab_size=c["type_vocab_size"],
                             layer_norm_eps=c["layer_norm_epsilon"],
                             rope_parameters={"rope_type": "default", "rope_theta": float(c["rotary_emb_base"])})
    orig = mnb.NomicBertRotaryEmbedding.forward

    def forward_f64(self, x, position_ids):
        if x.dtype != F64:
            return orig(self, x, position_ids)
        d = self.config.hidden_size // self.config.num_attention_heads
        inv = 1.0 / (self.config.rope_parameters["rope_theta"] ** (torch.arange(0, d, 2, dtype=F64) / d))
        f = position_ids[..., None].to(F64) * inv
        emb = torch.cat((f, f), dim=-1)
        return emb.cos(), emb.sin()

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        native.save_pretrained(tmp)
        shutil.copyfile(os.path.join(fn.folder, "model.safetensors"), os.path.join(tmp, "model.safetensors"))
        model, info = NomicBertModel.from_pretrained(tmp, attn_implementation="eager", output_loading_info=True)
    clean = not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    model = model.to(F64).eval()
    mnb.NomicBertRotaryEmbedding.forward = forward_f64
    try:
        worst = 0.0
        for e in g["embeddings"]:
            with torch.no_grad():
                a = model(input_ids=torch.tensor([e["ids"]])).last_hidden_state[0]
            worst = max(worst, rel(a, fn.states_at(e["ids"], fn.L)))
    finally:
        mnb.NomicBertRotaryEmbedding.forward = orig
    check(clean and worst < 1e-12, f"transformers' own NomicBertModel (checkpoint converted by transformers, no "
                                   f"missing/unexpected keys: {clean}): token states {worst:.1e} (< 1e-12)")


def main():
    sys.path.insert(0, HERE)
    import nomic_jina_reference as ref
    torch.set_grad_enabled(True)
    for name in ("tiny-nomic-bert", "tiny-jina-bert"):
        folder = os.path.join(FIXTURES, name)
        g = json.load(open(os.path.join(FIXTURES, "golden", name + ".json"), encoding="utf-8"))
        fn = Functional(folder)
        model = ref.load_model(folder, dtype=F64)
        check_goldens(fn, g)
        check_reference_layers(fn, model)
        check_completeness(fn, g)
        (check_nomic_invariants if fn.nomic else check_jina_invariants)(fn, g)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

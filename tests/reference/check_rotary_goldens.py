#!/usr/bin/env python3
"""An independent float64 re-implementation of the three rotary-position families (Qwen3,
Gemma3 with bidirectional attention, ModernBERT), from model.safetensors and config.json (or
config.legacy.json) with torch and safetensors only (no transformers, no sentence-transformers),
checked against the golden files generate_golden_generic.py wrote.

It is the written-out specification a port follows (the Rust engine's loader reads both config
formats): for every embedding of the golden file and every attribution entry's text and reference
input it computes the unnormalized embedding e (pooling, Dense modules, truncate_dim) from the token
ids and compares it with the golden `raw` / `embedding_*` / `reference_embedding_*`, and compares
the per-layer attention facts with the file's `attention_layers`.

Usage:
  python check_rotary_goldens.py tests/fixtures/tiny-qwen3 tests/fixtures/golden/tiny-qwen3.json
  python check_rotary_goldens.py --config config.legacy.json tests/fixtures/tiny-gemma3 tests/fixtures/golden/tiny-gemma3.json
(without arguments: the three committed fixtures, with both config files)
"""
import argparse
import json
import math
import os
import sys

import torch
from safetensors.torch import load_file

F64 = torch.float64
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures"))


# ---- configuration: both formats ----------------------------------------------------------------
def read_config(cfg):
    """The facts the forward needs, from transformers 5's keys (rope_parameters, layer_types) or the
    older ones (rope_theta, rope_local_base_freq, sliding_window_pattern, global_rope_theta,
    local_rope_theta, global_attn_every_n_layers)."""
    mt = cfg["model_type"]
    n = cfg["num_hidden_layers"]
    heads = cfg["num_attention_heads"]
    out = {"model_type": mt, "layers": n, "hidden": cfg["hidden_size"], "heads": heads}
    rope = cfg.get("rope_parameters")
    if mt == "qwen3":
        theta = rope["rope_theta"] if rope else cfg["rope_theta"]
        types = cfg.get("layer_types") or ["full_attention"] * n
        assert not cfg.get("use_sliding_window"), "sliding windows in Qwen3 are not covered"
        out.update(kv_heads=cfg["num_key_value_heads"], head_dim=cfg["head_dim"], eps=cfg["rms_norm_eps"],
                   types=types, theta={"full_attention": theta}, causal=True, window={"full_attention": None},
                   scale=cfg["head_dim"] ** -0.5)
    elif mt == "gemma3_text":
        if rope:
            theta = {k: v["rope_theta"] for k, v in rope.items()}
        else:
            theta = {"full_attention": cfg["rope_theta"], "sliding_attention": cfg["rope_local_base_freq"]}
        types = cfg.get("layer_types")
        if not types:
            p = cfg.get("sliding_window_pattern", 6)
            types = ["sliding_attention" if (i + 1) % p else "full_attention" for i in range(n)]
        bidir = bool(cfg.get("use_bidirectional_attention"))
        w = cfg["sliding_window"]
        # bidirectional: key j visible from query i iff |i - j| <= w // 2; causal: i - w < j <= i
        out.update(kv_heads=cfg["num_key_value_heads"], head_dim=cfg["head_dim"], eps=cfg["rms_norm_eps"],
                   types=types, theta=theta, causal=not bidir,
                   window={"full_attention": None, "sliding_attention": w // 2 if bidir else w - 1},
                   scale=cfg["query_pre_attn_scalar"] ** -0.5, embed_scale=math.sqrt(cfg["hidden_size"]))
        assert cfg.get("attn_logit_softcapping") is None
    elif mt == "modernbert":
        if rope:
            theta = {k: v["rope_theta"] for k, v in rope.items()}
        else:
            theta = {"full_attention": cfg["global_rope_theta"], "sliding_attention": cfg["local_rope_theta"]}
        types = cfg.get("layer_types")
        if not types:
            every = cfg.get("global_attn_every_n_layers", 3)
            types = ["sliding_attention" if i % every else "full_attention" for i in range(n)]
        d = cfg["hidden_size"] // heads
        out.update(kv_heads=heads, head_dim=d, eps=cfg["norm_eps"], types=types, theta=theta, causal=False,
                   window={"full_attention": None, "sliding_attention": cfg["local_attention"] // 2},
                   scale=d ** -0.5, act=cfg["hidden_activation"])
        assert not cfg["norm_bias"] and not cfg["attention_bias"] and not cfg["mlp_bias"]
    else:
        raise ValueError(mt)
    return out


# ---- building blocks ----------------------------------------------------------------------------
def rms(x, w, eps, one_plus=False):
    """x / sqrt(mean(x²) + eps) times w (Qwen3) or (1 + w) (Gemma3), over the last axis."""
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * (1.0 + w) if one_plus else w * y


def layer_norm(x, w, eps):
    """LayerNorm without bias (biased variance)."""
    mu = x.mean(-1, keepdim=True)
    var = (x - mu).pow(2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w


def inv_freq(theta, d):
    return 1.0 / (theta ** (torch.arange(0, d, 2, dtype=F64) / d))


def rope(x, theta):
    """x: [heads, T, d]; rotate-half convention: the pair (x[i], x[i + d/2]) is rotated by p·inv_freq[i]."""
    t, d = x.shape[-2], x.shape[-1]
    f = torch.arange(t, dtype=F64)[:, None] * inv_freq(theta, d)[None]
    cos, sin = torch.cat((f, f), -1).cos(), torch.cat((f, f), -1).sin()
    rot = torch.cat((-x[..., d // 2:], x[..., :d // 2]), -1)
    return x * cos + rot * sin


def visible(t, causal, window):
    i = torch.arange(t)[:, None]
    j = torch.arange(t)[None, :]
    m = torch.ones(t, t, dtype=torch.bool)
    if causal:
        m &= j <= i
    if window is not None:
        m &= (i - j).abs() <= window
    return m


def attention(q, k, v, c, layer_type):
    """q: [heads, T, d], k, v: [kv_heads, T, d]; query head h uses key/value head h // (heads / kv_heads)."""
    rep = c["heads"] // c["kv_heads"]
    k, v = k.repeat_interleave(rep, 0), v.repeat_interleave(rep, 0)
    s = q @ k.transpose(1, 2) * c["scale"]
    s = s.masked_fill(~visible(q.shape[1], c["causal"], c["window"][layer_type]), float("-inf"))
    return torch.softmax(s, -1) @ v  # [heads, T, d]


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


# ---- the three networks: ids -> token states (the Transformer module's output) ------------------
def forward(W, c, ids):
    t = len(ids)
    ids = torch.tensor(ids)
    H, nq, nkv, d = c["hidden"], c["heads"], c["kv_heads"], c["head_dim"]
    mt = c["model_type"]
    if mt == "qwen3":
        h = W["embed_tokens.weight"][ids]
    elif mt == "gemma3_text":
        h = W["embed_tokens.weight"][ids] * c["embed_scale"]
    else:
        h = layer_norm(W["embeddings.tok_embeddings.weight"][ids], W["embeddings.norm.weight"], c["eps"])
    for l in range(c["layers"]):
        p = f"layers.{l}."
        lt = c["types"][l]
        theta = c["theta"][lt]
        if mt in ("qwen3", "gemma3_text"):
            g = mt == "gemma3_text"
            x = rms(h, W[p + "input_layernorm.weight"], c["eps"], g)
            q = (x @ W[p + "self_attn.q_proj.weight"].T).view(t, nq, d).transpose(0, 1)
            k = (x @ W[p + "self_attn.k_proj.weight"].T).view(t, nkv, d).transpose(0, 1)
            v = (x @ W[p + "self_attn.v_proj.weight"].T).view(t, nkv, d).transpose(0, 1)
            q = rope(rms(q, W[p + "self_attn.q_norm.weight"], c["eps"], g), theta)
            k = rope(rms(k, W[p + "self_attn.k_norm.weight"], c["eps"], g), theta)
            o = attention(q, k, v, c, lt).transpose(0, 1).reshape(t, nq * d) @ W[p + "self_attn.o_proj.weight"].T
            if g:
                o = rms(o, W[p + "post_attention_layernorm.weight"], c["eps"], True)
                h = h + o
                x = rms(h, W[p + "pre_feedforward_layernorm.weight"], c["eps"], True)
                m = (gelu_tanh(x @ W[p + "mlp.gate_proj.weight"].T) * (x @ W[p + "mlp.up_proj.weight"].T)) \
                    @ W[p + "mlp.down_proj.weight"].T
                h = h + rms(m, W[p + "post_feedforward_layernorm.weight"], c["eps"], True)
            else:
                h = h + o
                x = rms(h, W[p + "post_attention_layernorm.weight"], c["eps"])
                gate = x @ W[p + "mlp.gate_proj.weight"].T
                m = (gate * torch.sigmoid(gate) * (x @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
                h = h + m
        else:
            x = h if l == 0 else layer_norm(h, W[p + "attn_norm.weight"], c["eps"])
            qkv = (x @ W[p + "attn.Wqkv.weight"].T).view(t, 3, nq, d)
            q, k, v = (qkv[:, i].transpose(0, 1) for i in range(3))
            o = attention(rope(q, theta), rope(k, theta), v, c, lt).transpose(0, 1).reshape(t, H)
            h = h + o @ W[p + "attn.Wo.weight"].T
            x = layer_norm(h, W[p + "mlp_norm.weight"], c["eps"])
            a, gate = (x @ W[p + "mlp.Wi.weight"].T).chunk(2, -1)  # first half activated, second half the gate
            assert c["act"] == "gelu"
            h = h + (gelu(a) * gate) @ W[p + "mlp.Wo.weight"].T
    if mt == "qwen3":
        return rms(h, W["norm.weight"], c["eps"])
    if mt == "gemma3_text":
        return rms(h, W["norm.weight"], c["eps"], True)
    return layer_norm(h, W["final_norm.weight"], c["eps"])


def pool(states, mode):
    if mode == "mean":
        return states.mean(0)
    if mode == "lasttoken":
        return states[-1]
    raise ValueError(mode)


def dense_modules(folder):
    mods = json.load(open(os.path.join(folder, "modules.json")))
    out = []
    for m in mods:
        if m["type"].endswith("Dense"):
            cfg = json.load(open(os.path.join(folder, m["path"], "config.json")))
            w = load_file(os.path.join(folder, m["path"], "model.safetensors"))
            assert cfg["activation_function"] == "torch.nn.modules.linear.Identity"
            out.append((w["linear.weight"].to(F64), w["linear.bias"].to(F64) if cfg["bias"] else None))
    return out


def check(folder, golden, config_name):
    g = json.load(open(golden, encoding="utf-8"))
    c = read_config(json.load(open(os.path.join(folder, config_name))))
    W = {k: v.to(F64) for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
    dense = dense_modules(folder)
    assert [d["in"] for d in g["dense"]] == [w.shape[1] for w, _ in dense]

    def embed(ids, k=None):
        e = pool(forward(W, c, ids), g["pooling"])
        for w, b in dense:
            e = e @ w.T + (b if b is not None else 0.0)
        return e if k is None else e[:k]

    worst = 0.0
    for e in g["embeddings"]:
        ref = torch.tensor(e["raw"], dtype=F64)
        got = embed(e["ids"], e["truncate_dim"])
        worst = max(worst, ((got - ref).abs().max() / ref.abs().max()).item())
    seen = set()
    for a in g["attributions"]:
        for side in ("a", "b"):
            for ids_key, e_key in ((f"ids_{side}", f"embedding_{side}"), (f"reference_ids_{side}",
                                                                         f"reference_embedding_{side}")):
                key = (tuple(a[ids_key]), a["truncate_dim"])
                if key in seen:
                    continue
                seen.add(key)
                ref = torch.tensor(a[e_key], dtype=F64)
                got = embed(a[ids_key], a["truncate_dim"])
                worst = max(worst, ((got - ref).abs().max() / ref.abs().max()).item())
    for a in g["attention_layers"]:
        lt = a["layer_type"]
        assert a["layer_type"] == c["types"][a["layer"]]
        assert a["causal"] == c["causal"] and a["window"] == c["window"][lt], (a, c)
        assert a["rope_theta"] == c["theta"][lt] and a["scale"] == c["scale"]
        assert a["num_heads"] == c["heads"] and a["num_kv_heads"] == c["kv_heads"] and a["head_dim"] == c["head_dim"]
        assert torch.allclose(torch.tensor(a["inv_freq"], dtype=F64), inv_freq(c["theta"][lt], c["head_dim"]),
                              rtol=1e-15, atol=0)
    if c["model_type"] == "gemma3_text":
        assert g["embedding_scale"] == c["embed_scale"]
    print(f"{os.path.basename(folder)} ({config_name}): {len(seen)} attribution inputs and {len(g['embeddings'])} "
          f"embeddings, max relative difference from the golden values {worst:.2e}")
    assert worst < 1e-12, worst
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?")
    ap.add_argument("golden", nargs="?")
    ap.add_argument("--config", default=None, help="config file name in the folder (default: both)")
    args = ap.parse_args()
    if args.folder:
        jobs = [(args.folder, args.golden)]
    else:
        jobs = [(os.path.join(FIXTURES, n), os.path.join(FIXTURES, "golden", n + ".json"))
                for n in ("tiny-qwen3", "tiny-gemma3", "tiny-modernbert")]
    names = [args.config] if args.config else ["config.json", "config.legacy.json"]
    with torch.no_grad():
        for folder, golden in jobs:
            for name in names:
                check(folder, golden, name)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Own PyTorch references for two sentence-transformers families that run on remote code
(`trust_remote_code=True` on the Hub), written from the published modelling code (read, not
copied; see tests/reference/README.md, "NomicBERT and JinaBERT (own references)"):

  NomicBERT    nomic-embed-text-v1 / v1.5: config.json `model_type` "nomic_bert", architectures
               ["NomicBertModel"], GPT-2-style keys (n_embd, n_head, n_layer, n_inner, ...); rotary
               positions, SwiGLU, post-LayerNorm, bias-free projections.
  JinaBERT v2  jina-embeddings-v2-base-en: `model_type` "bert", architectures ["JinaBertForMaskedLM"],
               `position_embedding_type` "alibi", `feed_forward_type` "geglu"; symmetric ALiBi, GeGLU
               MLP with its own residual LayerNorm, BERT attention with biases.

`install()` makes sentence-transformers load such a folder offline with these modules in place of
the remote code: it patches `Transformer._load_config` / `Transformer._load_model` (only for folders
whose config.json names one of the two architectures; every other folder loads as before). The
tokenizer, Pooling, Normalize, prompts and `encode` are sentence-transformers' own. The modules
compute in the dtype of their parameters: in float32 they follow the published code's float32
choices (rotary cos/sin from float32 positions and inverse frequencies; ALiBi slopes as a float32
tensor), in float64 every step is float64.

The module and parameter names are the checkpoint's tensor names, so `load_state_dict(strict=True)`
checks that model.safetensors holds exactly the tensors the published code loads, with the shapes
the config implies.

Usage as a library (generate_golden_generic.py, make_tiny_model.py, check_nomic_jina.py):
    import nomic_jina_reference as ref
    ref.install()
    st = SentenceTransformer("tests/fixtures/tiny-nomic-bert", device="cpu")
"""
import json
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

F64 = torch.float64
NOMIC_ARCHITECTURES = ("NomicBertModel",)
JINA_ARCHITECTURES = ("JinaBertForMaskedLM", "JinaBertModel")


# ---- configuration ------------------------------------------------------------------------------
def family_of(cfg):
    """'nomic_bert', 'jina_bert' or None, from a config.json dict."""
    archs = cfg.get("architectures") or []
    if cfg.get("model_type") == "nomic_bert" and any(a in NOMIC_ARCHITECTURES for a in archs):
        return "nomic_bert"
    if cfg.get("model_type") == "bert" and any(a in JINA_ARCHITECTURES for a in archs):
        assert cfg.get("position_embedding_type") == "alibi", cfg.get("position_embedding_type")
        return "jina_bert"
    return None


def read_config(folder):
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def padded_vocab(cfg):
    """NomicBertModel rounds vocab_size up to a multiple of pad_vocab_size_multiple (the real
    30528 is already one)."""
    m = cfg.get("pad_vocab_size_multiple", 1) or 1
    v = cfg["vocab_size"]
    return v + (m - v % m) % m


def nomic_facts(cfg):
    """The NomicBERT options this reference implements; anything else is refused with the key's name."""
    H, heads = cfg["n_embd"], cfg["n_head"]
    assert H % heads == 0, "n_embd must be a multiple of n_head"
    d = H // heads
    assert cfg.get("activation_function") == "swiglu", f"activation_function {cfg.get('activation_function')!r}"
    assert not cfg.get("prenorm"), "prenorm true (pre-LayerNorm blocks) is not covered"
    assert not cfg.get("parallel_block"), "parallel_block true is not covered"
    assert not cfg.get("use_rms_norm"), "use_rms_norm true is not covered"
    assert not cfg.get("causal"), "causal true is not covered"
    assert cfg.get("rotary_emb_scale_base") is None, "rotary_emb_scale_base (xPos) is not covered"
    assert cfg.get("rotary_scaling_factor") is None, "rotary_scaling_factor (dynamic NTK) is not covered"
    frac = float(cfg.get("rotary_emb_fraction", 0.0))
    assert frac > 0, "rotary_emb_fraction 0 (learned absolute positions) is not covered"
    rd = d * frac
    assert rd == int(rd) and int(rd) % 2 == 0, f"rotary dimension {rd} must be an even integer"
    assert cfg.get("n_inner") is not None, "n_inner null (8·n_embd/3 rounded to 256) is not covered"
    return {"hidden": H, "heads": heads, "head_dim": d, "layers": cfg["n_layer"], "ffn": cfg["n_inner"],
            "vocab": padded_vocab(cfg), "type_vocab": cfg.get("type_vocab_size", 2),
            "pad": cfg.get("pad_token_id", 0) if cfg.get("pad_token_id") is not None else 0,
            "eps": cfg.get("layer_norm_epsilon", 1e-5), "rotary_dim": int(rd),
            "base": float(cfg.get("rotary_emb_base", 10000.0)),
            "interleaved": bool(cfg.get("rotary_emb_interleaved", False)),
            "qkv_bias": bool(cfg.get("qkv_proj_bias", True)), "fc1_bias": bool(cfg.get("mlp_fc1_bias", True)),
            "fc2_bias": bool(cfg.get("mlp_fc2_bias", True))}


def jina_facts(cfg):
    H, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    assert H % heads == 0
    ff = cfg.get("feed_forward_type", "original")
    assert ff in ("geglu", "reglu"), f"feed_forward_type {ff!r} is not covered"
    assert cfg.get("position_embedding_type") == "alibi"
    return {"hidden": H, "heads": heads, "head_dim": H // heads, "layers": cfg["num_hidden_layers"],
            "ffn": cfg["intermediate_size"], "vocab": cfg["vocab_size"], "type_vocab": cfg.get("type_vocab_size", 2),
            "pad": cfg.get("pad_token_id", 0) if cfg.get("pad_token_id") is not None else 0,
            "eps": cfg.get("layer_norm_eps", 1e-12), "feed_forward_type": ff}


# ---- position encodings -------------------------------------------------------------------------
def rotary_inv_freq(base, rotary_dim, dtype):
    """1 / base^(2i / rotary_dim), i = 0 .. rotary_dim/2 - 1 (computed in dtype)."""
    return 1.0 / (base ** (torch.arange(0, rotary_dim, 2, dtype=dtype) / rotary_dim))


def rotary_cos_sin(base, rotary_dim, t, dtype):
    """cos, sin [t, rotary_dim/2] of p · inv_freq[i] at positions p = 0..t-1. float64: computed in
    float64; otherwise as the published code: float32 positions and inverse frequencies, then cast."""
    work = F64 if dtype == F64 else torch.float32
    freqs = torch.outer(torch.arange(t, dtype=work), rotary_inv_freq(base, rotary_dim, work))
    return freqs.cos().to(dtype), freqs.sin().to(dtype)


def apply_rotary(x, cos, sin, interleaved):
    """x [..., T, heads, head_dim]; the first 2·cos.shape[-1] dims of each head are rotated.
    Half-split (interleaved false): pairs (x[i], x[i + r/2]) rotate by angle i; interleaved: pairs
    (x[2i], x[2i + 1])."""
    r = cos.shape[-1] * 2
    xr, rest = x[..., :r], x[..., r:]
    if interleaved:
        c = cos.repeat_interleave(2, dim=-1)[:, None, :]
        s = sin.repeat_interleave(2, dim=-1)[:, None, :]
        x1, x2 = xr[..., 0::2], xr[..., 1::2]
        rot = torch.stack((-x2, x1), dim=-1).flatten(-2)
    else:
        c = torch.cat((cos, cos), dim=-1)[:, None, :]
        s = torch.cat((sin, sin), dim=-1)[:, None, :]
        x1, x2 = xr[..., : r // 2], xr[..., r // 2:]
        rot = torch.cat((-x2, x1), dim=-1)
    return torch.cat((xr * c + rot * s, rest), dim=-1)


def alibi_slopes(n_heads):
    """ALiBi's head slopes (Press et al.; the function JinaBERT's encoder uses): for n a power of
    two, m_h = 2^(-8(h+1)/n); otherwise the slopes of the largest power of two c < n, then every
    other slope of 2c, the first n - c of them."""
    def power_of_2(n):
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start * start ** i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return power_of_2(n_heads)
    c = 2 ** math.floor(math.log2(n_heads))
    return power_of_2(c) + alibi_slopes(2 * c)[0::2][: n_heads - c]


def alibi_bias(n_heads, t, dtype):
    """[heads, t, t]: -m_h |i - j| (symmetric). float64: float64 slopes; otherwise float32 slopes (the
    published code builds them with torch.Tensor) times float32 distances, then cast."""
    work = F64 if dtype == F64 else torch.float32
    pos = torch.arange(t)
    dist = (pos[None, :] - pos[:, None]).abs().to(work)
    slopes = torch.tensor(alibi_slopes(n_heads), dtype=work)
    return (-slopes[:, None, None] * dist[None]).to(dtype)


def padding_mask(attention_mask, dtype):
    """Additive key mask [B, 1, 1, T] (finfo.min at padded keys) or None when nothing is padded."""
    if attention_mask is None or bool((attention_mask != 0).all()):
        return None
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class Output(dict):
    """The dict-like output sentence-transformers reads `last_hidden_state` from."""
    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError as e:
            raise AttributeError(k) from e


# ---- NomicBERT ----------------------------------------------------------------------------------
class NomicEmbeddings(nn.Module):
    def __init__(self, f):
        super().__init__()
        # padding_idx as upstream builds the table: the pad row gets no gradient (training's
        # goldens); the forward pass is the same.
        self.word_embeddings = nn.Embedding(f["vocab"], f["hidden"], padding_idx=f["pad"])
        self.token_type_embeddings = nn.Embedding(f["type_vocab"], f["hidden"])


class NomicAttention(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f
        self.Wqkv = nn.Linear(f["hidden"], 3 * f["hidden"], bias=f["qkv_bias"])
        self.out_proj = nn.Linear(f["hidden"], f["hidden"], bias=f["qkv_bias"])

    def forward(self, h, cos, sin, mask):
        f = self.f
        B, T, H = h.shape
        qkv = self.Wqkv(h).view(B, T, 3, f["heads"], f["head_dim"])  # rows: q (0..H-1), k, v; head-major
        q = apply_rotary(qkv[:, :, 0], cos, sin, f["interleaved"])
        k = apply_rotary(qkv[:, :, 1], cos, sin, f["interleaved"])
        v = qkv[:, :, 2]
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # B, heads, T, d
        s = torch.matmul(q, k.transpose(-1, -2)) * (f["head_dim"] ** -0.5)
        if mask is not None:
            s = s + mask
        p = torch.softmax(s, dim=-1)
        if getattr(self, "keep_probs", False):
            self.last_probs = p.detach()
        a = torch.matmul(p, v).transpose(1, 2).reshape(B, T, H)
        return self.out_proj(a)


class NomicMLP(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.fc11 = nn.Linear(f["hidden"], f["ffn"], bias=f["fc1_bias"])
        self.fc12 = nn.Linear(f["hidden"], f["ffn"], bias=f["fc1_bias"])
        self.fc2 = nn.Linear(f["ffn"], f["hidden"], bias=f["fc2_bias"])

    def forward(self, x):
        # SwiGLU: fc12 is the gate (SiLU-activated), fc11 the multiplier
        return self.fc2(self.fc11(x) * F.silu(self.fc12(x)))


class NomicBlock(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.attn = NomicAttention(f)
        self.mlp = NomicMLP(f)
        self.norm1 = nn.LayerNorm(f["hidden"], eps=f["eps"])
        self.norm2 = nn.LayerNorm(f["hidden"], eps=f["eps"])

    def forward(self, hidden_states, cos=None, sin=None, mask=None):
        h = self.norm1(self.attn(hidden_states, cos, sin, mask) + hidden_states)  # post-LN
        return self.norm2(self.mlp(h) + h)


class NomicEncoder(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.layers = nn.ModuleList([NomicBlock(f) for _ in range(f["layers"])])


class NomicBertReference(nn.Module):
    """NomicBertModel without its pooler: last_hidden_state = the last block's output."""

    def __init__(self, cfg, config=None):
        super().__init__()
        self.facts = f = nomic_facts(cfg)
        self.config = config
        self.embeddings = NomicEmbeddings(f)
        self.emb_ln = nn.LayerNorm(f["hidden"], eps=f["eps"])
        self.encoder = NomicEncoder(f)

    def embed(self, input_ids, token_type_ids=None):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        e = self.embeddings.word_embeddings(input_ids) + self.embeddings.token_type_embeddings(token_type_ids)
        return self.emb_ln(e)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, return_dict=True):
        h = self.embed(input_ids, token_type_ids)
        f = self.facts
        cos, sin = rotary_cos_sin(f["base"], f["rotary_dim"], h.shape[1], h.dtype)
        mask = padding_mask(attention_mask, h.dtype)
        for layer in self.encoder.layers:
            h = layer(h, cos=cos, sin=sin, mask=mask)
        return Output(last_hidden_state=h)


# ---- JinaBERT v2 --------------------------------------------------------------------------------
class JinaEmbeddings(nn.Module):
    def __init__(self, f):
        super().__init__()
        # padding_idx as upstream builds the table: the pad row gets no gradient (training's
        # goldens); the forward pass is the same.
        self.word_embeddings = nn.Embedding(f["vocab"], f["hidden"], padding_idx=f["pad"])
        self.token_type_embeddings = nn.Embedding(f["type_vocab"], f["hidden"])
        self.LayerNorm = nn.LayerNorm(f["hidden"], eps=f["eps"])


class JinaSelfAttention(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.query = nn.Linear(f["hidden"], f["hidden"])
        self.key = nn.Linear(f["hidden"], f["hidden"])
        self.value = nn.Linear(f["hidden"], f["hidden"])


class JinaSelfOutput(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.dense = nn.Linear(f["hidden"], f["hidden"])
        self.LayerNorm = nn.LayerNorm(f["hidden"], eps=f["eps"])


class JinaAttention(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f
        self.self = JinaSelfAttention(f)
        self.output = JinaSelfOutput(f)

    def forward(self, h, bias, mask):
        f = self.f
        B, T, H = h.shape

        def heads(x):
            return x.view(B, T, f["heads"], f["head_dim"]).transpose(1, 2)

        q, k, v = heads(self.self.query(h)), heads(self.self.key(h)), heads(self.self.value(h))
        s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(f["head_dim"])
        if mask is not None:
            s = s + mask
        s = s + bias  # ALiBi, after the 1/sqrt(d) scaling
        p = torch.softmax(s, dim=-1)
        if getattr(self, "keep_probs", False):
            self.last_probs = p.detach()
        a = torch.matmul(p, v).transpose(1, 2).reshape(B, T, H)
        return self.output.LayerNorm(self.output.dense(a) + h)


class JinaGLUMLP(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f
        self.gated_layers = nn.Linear(f["hidden"], 2 * f["ffn"], bias=False)
        self.wo = nn.Linear(f["ffn"], f["hidden"])
        self.layernorm = nn.LayerNorm(f["hidden"], eps=f["eps"])

    def forward(self, h):
        g = self.gated_layers(h)
        gated, non_gated = g[..., : self.f["ffn"]], g[..., self.f["ffn"]:]
        act = F.gelu(gated) if self.f["feed_forward_type"] == "geglu" else F.relu(gated)  # exact (erf) GELU
        return self.layernorm(self.wo(act * non_gated) + h)


class JinaLayer(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.attention = JinaAttention(f)
        self.mlp = JinaGLUMLP(f)

    def forward(self, hidden_states, bias=None, mask=None):
        return self.mlp(self.attention(hidden_states, bias, mask))


class JinaEncoder(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.layer = nn.ModuleList([JinaLayer(f) for _ in range(f["layers"])])


class JinaPooler(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.dense = nn.Linear(f["hidden"], f["hidden"])


class JinaBertReference(nn.Module):
    """JinaBertModel (with its pooler's weights, which sentence-transformers does not use)."""

    def __init__(self, cfg, config=None):
        super().__init__()
        self.facts = f = jina_facts(cfg)
        self.config = config
        self.embeddings = JinaEmbeddings(f)
        self.encoder = JinaEncoder(f)
        self.pooler = JinaPooler(f)

    def embed(self, input_ids, token_type_ids=None):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        e = self.embeddings.word_embeddings(input_ids) + self.embeddings.token_type_embeddings(token_type_ids)
        return self.embeddings.LayerNorm(e)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, return_dict=True):
        h = self.embed(input_ids, token_type_ids)
        bias = alibi_bias(self.facts["heads"], h.shape[1], h.dtype)
        mask = padding_mask(attention_mask, h.dtype)
        for layer in self.encoder.layer:
            h = layer(h, bias=bias, mask=mask)
        return Output(last_hidden_state=h)


# ---- loading ------------------------------------------------------------------------------------
MODELS = {"nomic_bert": NomicBertReference, "jina_bert": JinaBertReference}


def layer_list(model):
    return model.encoder.layers if isinstance(model, NomicBertReference) else model.encoder.layer


def load_model(folder, config=None, dtype=torch.float32):
    """The reference module with model.safetensors loaded strictly (exactly these names and shapes)."""
    from safetensors.torch import load_file
    cfg = read_config(folder)
    fam = family_of(cfg)
    assert fam is not None, f"{folder}: not a NomicBERT / JinaBERT config"
    model = MODELS[fam](cfg, config)
    sd = load_file(os.path.join(folder, "model.safetensors"))
    model.load_state_dict(sd, strict=True)
    return model.to(dtype).eval()


def reference_config(folder):
    """A transformers PretrainedConfig carrying config.json's keys (as the remote-code config does,
    which for NomicBERT maps hidden_size etc. to n_embd etc.), with model_type set to the family
    name ("nomic_bert" or "jina_bert") and eager attention."""
    from transformers import PretrainedConfig
    cfg = read_config(folder)
    fam = family_of(cfg)
    extra = {}
    if fam == "nomic_bert":
        extra = {"hidden_size": cfg["n_embd"], "num_attention_heads": cfg["n_head"],
                 "num_hidden_layers": cfg["n_layer"], "intermediate_size": cfg["n_inner"],
                 "max_position_embeddings": cfg["n_positions"]}
    keep = {k: v for k, v in cfg.items() if k not in ("model_type", "transformers_version", "torch_dtype", "dtype")}
    config = PretrainedConfig(**{**keep, **extra})
    config.model_type = fam
    config._attn_implementation = "eager"
    config.reference_family = fam
    return config


def install():
    """Make sentence-transformers' Transformer module build these references for NomicBERT /
    JinaBERT folders (config and model), leaving every other folder to transformers."""
    from sentence_transformers.base.modules.transformer import Transformer
    if getattr(Transformer, "_simattr_reference_installed", False):
        return
    orig_config, orig_model = Transformer._load_config, Transformer._load_model

    def _load_config(self, model_name_or_path, backend, config_kwargs):
        path = os.path.join(model_name_or_path, "config.json")
        if os.path.isfile(path) and family_of(read_config(model_name_or_path)) is not None:
            assert backend == "torch", backend
            return reference_config(model_name_or_path), False
        return orig_config(self, model_name_or_path, backend, config_kwargs)

    def _load_model(self, model_name_or_path, transformer_task, config, backend, is_peft_model, **model_kwargs):
        if getattr(config, "reference_family", None) is not None:
            assert transformer_task == "feature-extraction" and not is_peft_model
            return load_model(model_name_or_path, config)
        return orig_model(self, model_name_or_path, transformer_task, config, backend, is_peft_model, **model_kwargs)

    Transformer._load_config = _load_config
    Transformer._load_model = _load_model
    Transformer._simattr_reference_installed = True


# ---- facts for the golden files -----------------------------------------------------------------
def attention_facts(model, input_ids):
    """Top-level golden JSON keys (the rotary families' format): per layer the attention pattern
    (full, bidirectional), QKᵀ scale, heads, and NomicBERT's rotary θ, inv_freq (float64), rotary
    dimension and pairing, or JinaBERT's ALiBi slopes. Checks on a run over input_ids that every
    layer receives exactly these: cos/sin of cat(p·inv_freq, p·inv_freq) at p = 0..T-1 (float64), or
    the bias -slope_h·|i - j|, and no mask."""
    seen = {}
    layers = layer_list(model)

    def hook(l):
        def f(module, args, kwargs):
            seen[l] = kwargs
        return f

    handles = [layer.register_forward_pre_hook(hook(l), with_kwargs=True) for l, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            model(input_ids)
    finally:
        for h in handles:
            h.remove()
    f = model.facts
    t = input_ids.shape[1]
    pos = torch.arange(t, dtype=F64)
    out = []
    for l in range(len(layers)):
        kw = seen[l]
        assert kw["mask"] is None
        entry = {"layer": l, "layer_type": "full_attention", "causal": False, "window": None,
                 "scale": float(f["head_dim"] ** -0.5), "num_heads": f["heads"], "num_kv_heads": f["heads"],
                 "head_dim": f["head_dim"]}
        if isinstance(model, NomicBertReference):
            inv = rotary_inv_freq(f["base"], f["rotary_dim"], F64)
            ang = pos[:, None] * inv
            assert kw["cos"].dtype == F64 and torch.equal(kw["cos"], ang.cos()) and torch.equal(kw["sin"], ang.sin())
            entry.update(rope_theta=f["base"], inv_freq=[float(v) for v in inv], rotary_dim=f["rotary_dim"],
                         rotary_interleaved=f["interleaved"])
        else:
            slopes = alibi_slopes(f["heads"])
            dist = (pos[None, :] - pos[:, None]).abs()
            expect = torch.stack([-s * dist for s in slopes])
            assert kw["bias"].dtype == F64 and torch.equal(kw["bias"], expect), l
            entry.update(alibi_slopes=[float(s) for s in slopes])
        out.append(entry)
    return {"attention_layers": out, "position_ids": "arange", "embedding_scale": None}

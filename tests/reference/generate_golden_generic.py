#!/usr/bin/env python3
"""Golden embeddings and integrated-Jacobian attributions for any sentence-transformers folder,
computed through the sentence-transformers model itself (float64, eager attention).

Unlike generate_golden.py, which re-implements the embedding and layer loop per architecture with
transformers' modules, this script runs the folder's own modules (Transformer, Pooling, every
Dense; Normalize left out) and splits the network with a forward pre-hook on the transformer's
layer list (LAYER_LISTS: T5 `encoder.block`, BERT-like `encoder.layer`, Qwen3 / Gemma3 /
ModernBERT `layers`), which replaces the hidden states entering layer L by a given batch x
(N x T x H). So it covers any pooling mode, prompts (include_prompt true or false), Dense modules
and truncate_dim, as sentence-transformers' `encode` applies them.

For a text x (tokenized as sentence-transformers does with the prompt: prompt + text):
  h      the hidden states entering layer L (L = 0: the embedding output; T5, Qwen3: the token table
         row; Gemma3: the row times sqrt(hidden); ModernBERT: the row after the embedding LayerNorm)
  r      reference input of the same length T: every token the tokenizer itself added (its
         special_tokens_mask: BERT [CLS] first and [SEP] last, T5 </s> last) at its place, the pad
         token everywhere else (EOS if the tokenizer has no pad). Prompt tokens are not special:
         they become pad in r.
  f(x)   the embedding from hidden states x entering layer L: the remaining layers, the Transformer
         module's output processing (T5: final_layer_norm), Pooling with the features
         sentence-transformers gives it (attention mask, prompt_length when a prompt is used), every
         Dense module; not Normalize. With truncate_dim K: f's first K values.
  e      e(x) = f(h), e(r) = f(h_r); unnormalized (xsbert attributes the unnormalized embedding)
  P      (D x T) right Riemann rule, alpha_k = k/N, k = 1..N, x_k = h_r + alpha_k Δ, Δ = h - h_r:
         P[:, i] = (1/N) Σ_k J(x_k)[:, i, :] · Δ_i, by reverse mode (one cotangent per output
         dimension; written) and by forward mode (torch.func.jvp, one tangent per token, Δ on
         row i only); both must agree to 1e-10 relative
  A      P_aᵀ P_b (T_a x T_b); for cos divided by |e(a)| |e(b)|

Checks the script asserts: f(h) (through the hook) equals the same modules run without the hook
bit for bit, and equals sentence-transformers' own encode of the folder without its Normalize
module (float64, same prompt and truncate_dim) to 1e-10; encode of the whole folder (float64)
equals f(h) of the untruncated head normalized, then truncated (that is what encode does with
truncate_dim: truncation after Normalize, no renormalization) to 1e-10; float32 encode (the
written "encode") to 1e-5; the bare `tokenizers` library reading tokenizer.json gives the same ids
and special-token mask as sentence-transformers / transformers; reverse- vs forward-mode P to 1e-10;
completeness converges (the JVP path sum at check_steps = 400 has at most 2·N/400 of the error at N
and is below 2% of max_d |e_d(x) - e_d(r)|).

T5: transformers' T5LayerNorm computes the variance in float32 whatever the input dtype
(hidden_states.to(torch.float32).pow(2).mean(-1)); this script replaces its forward by the same
formula in the input's dtype, so that the float64 golden values are float64 throughout (the
float32 path, used for "encode", is unchanged by this: for float32 inputs both are the same ops).

Qwen3, Gemma3, ModernBERT: transformers computes RMSNorm (Qwen3, Gemma3), the rotary inv_freq and
cos/sin, the eager softmax and (ModernBERT) the rotary product in float32 whatever the model's dtype,
and Gemma3's embedding scale is a float32 buffer; patch_float64_internals() and
set_float64_embed_scale() make each float64 (see there; float32 inputs take transformers' own code).
Unpatched, the float64 embeddings of the tiny folders move by 1.2e-7 to 4.3e-7 relative. For these
families the JSON also has "attention_layers" (per layer: type, causal, window, QKᵀ scale, heads, KV
heads, head_dim, rotary θ and inv_freq; the mask pattern and the cos/sin each layer receives are
checked against them), "position_ids" ("arange": 0..T-1) and "embedding_scale" (Gemma3: sqrt(hidden)
in float64; null otherwise). check_rotary_goldens.py re-implements the three networks from the
safetensors and either config file and reproduces the golden values.

NomicBERT and JinaBERT v2 (remote code on the Hub, which cannot run here): nomic_jina_reference.install()
makes sentence-transformers build the own float64 references of nomic_jina_reference.py for those
folders (tokenizer, Pooling, Normalize, prompts and encode stay sentence-transformers' own), so the
same machinery applies (layer lists `encoder.layers` / `encoder.layer`; "architecture" is the
family name "nomic_bert" / "jina_bert"; the JSON also has "attention_layers" in the rotary families'
format, with NomicBERT's rotary_dim / rotary_interleaved or JinaBERT's alibi_slopes, checked against
what each layer receives). check_nomic_jina.py checks those goldens independently.

Usage:
  python generate_golden_generic.py --model-dir tests/fixtures/tiny-t5 --name tiny-t5 \\
      --out tests/fixtures/golden/tiny-t5.json
(tests/reference/README.md lists the command for every committed golden file.)
"""
import argparse
import json
import os
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import sentence_transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate_golden import PRESETS as BASE_PRESETS  # noqa: E402
import nomic_jina_reference  # noqa: E402

F64 = torch.float64

# model_type -> attribute path of the transformer's list of layers (blocks), relative to the
# Transformer module's model (st[0].auto_model). The pre-hook replaces the first positional
# argument (or the `hidden_states` keyword) of layer L.
LAYER_LISTS = {
    "bert": "encoder.layer",
    "roberta": "encoder.layer",
    "xlm-roberta": "encoder.layer",
    "mpnet": "encoder.layer",
    "t5": "encoder.block",
    "qwen3": "layers",
    "gemma3_text": "layers",
    "modernbert": "layers",
    # own references (nomic_jina_reference.py) of two remote-code families; "jina_bert" is the
    # family name the reference's config reports (config.json says model_type "bert")
    "nomic_bert": "encoder.layers",
    "jina_bert": "encoder.layer",
}

# Cases. Texts and pairs are generate_golden.py's "tiny" preset.
TINY = BASE_PRESETS["tiny"]
EMBEDDING_TEXTS = list(TINY["embedding_texts"])
PAIRS = [tuple(p) for p in TINY["pairs"]]
LAYERS = [0, 1, 2]
STEPS = 10
SIMILARITIES = ["cos", "dot"]
# prompts of the prompted pair (default: query / document); Qwen3-Embedding prompts queries only
PROMPTED_PAIR = {"qwen3": ("query", None)}
ROTARY_ARCHS = ("qwen3", "gemma3_text", "modernbert")
REFERENCE_ARCHS = ("nomic_bert", "jina_bert")
# --cases prompted (include_prompt_goldens.py): each text with no prompt, prompt "query" and prompt
# "document" ("hi": the prompt is most of the tokens), and the query / document pair at the first and
# last layer; the folder must have non-empty "query" and "document" prompts
PROMPTED_TEXTS = ["A man is playing a guitar.", "Someone plays an instrument.", "hi"]
PROMPTED_PAIR_TEXTS = ("A man is playing a guitar.", "Someone plays an instrument.")
CHECK_STEPS = 400
TRUNCATE_DIM = 8
BUCKET_RANGE = 600


def t5_layer_norm_forward_in_input_dtype(self, hidden_states):
    """T5LayerNorm.forward with the variance in the input's dtype (transformers: float32 always)."""
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
    if self.weight.dtype in [torch.float16, torch.bfloat16]:
        hidden_states = hidden_states.to(self.weight.dtype)
    return self.weight * hidden_states


def patch_t5_layer_norm():
    from transformers.models.t5 import modeling_t5
    modeling_t5.T5LayerNorm.forward = t5_layer_norm_forward_in_input_dtype


# ---- float64 throughout for Qwen3, Gemma3 and ModernBERT ------------------------------------------
# transformers computes these in float32 whatever the model's dtype; each patch below takes the
# float64 path only for float64 inputs and calls transformers' own code otherwise (so the float32
# model used for "encode" runs unchanged):
#   RMSNorm (Qwen3RMSNorm, Gemma3RMSNorm): the input is cast to float32 (Gemma3: and the weight), so
#       the normalized output has float32 precision;
#   rotary embeddings (Qwen3/Gemma3/ModernBert RotaryEmbedding): inv_freq is computed in float32 at
#       init and cos/sin from float32 position * inv_freq; here inv_freq = 1 / θ^(2i/d) and cos/sin are
#       computed in float64 (θ from config.rope_parameters, per layer type);
#   eager attention (eager_attention_forward of the three modules): softmax(..., dtype=torch.float32);
#   ModernBERT's apply_rotary_pos_emb: q.float(), k.float();
#   Gemma3's embedding scale: the buffer embed_scale = torch.tensor(sqrt(hidden)) is float32
#       (5.656854152679443 for 32); in float64 it stays that float32 value. Generic.__init__ sets it to
#       sqrt(hidden) in float64 (Gemma casts the normalizer to the activations' dtype: float64 here).
def rope_inv_freq_f64(config, layer_type=None):
    """1 / θ^(arange(0, d, 2) / d) in float64 (transformers' compute_default_rope_parameters)."""
    rp = config.rope_parameters if layer_type is None else config.rope_parameters[layer_type]
    assert rp["rope_type"] == "default", rp
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 1.0 / (rp["rope_theta"] ** (torch.arange(0, dim, 2, dtype=F64) / dim))


def rotary_forward_f64(orig):
    def forward(self, x, position_ids, layer_type=None):
        if x.dtype != F64:
            return orig(self, x, position_ids) if layer_type is None else orig(self, x, position_ids, layer_type)
        prefix = "" if layer_type is None else f"{layer_type}_"
        assert getattr(self, prefix + "attention_scaling") == 1.0
        inv_freq = rope_inv_freq_f64(self.config, layer_type)
        own = getattr(self, prefix + "inv_freq")  # transformers' float32 values
        assert torch.allclose(own.to(F64), inv_freq, rtol=1e-6, atol=0), (own, inv_freq)
        with torch.no_grad():
            freqs = position_ids[..., None].to(F64) * inv_freq.to(x.device)
            emb = torch.cat((freqs, freqs), dim=-1)
            return emb.cos(), emb.sin()
    return forward


def rms_norm_forward_f64(orig, one_plus):
    def forward(self, x):
        if x.dtype != F64:
            return orig(self, x)
        eps = self.eps if one_plus else self.variance_epsilon
        normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return normed * (1.0 + self.weight) if one_plus else self.weight * normed
    return forward


def eager_attention_f64(orig, repeat_kv):
    def forward(module, query, key, value, attention_mask, *args, **kwargs):
        if query.dtype != F64:
            return orig(module, query, key, value, attention_mask, *args, **kwargs)
        assert not args, "scaling and dropout are passed by keyword"
        scaling, dropout, softcap = kwargs["scaling"], kwargs.get("dropout", 0.0), kwargs.get("softcap")
        assert scaling is not None and softcap is None and (dropout == 0.0 or not module.training)
        groups = getattr(module, "num_key_value_groups", 1)
        if repeat_kv is not None:
            key, value = repeat_kv(key, groups), repeat_kv(value, groups)
        else:
            assert groups == 1
        w = torch.matmul(query, key.transpose(2, 3)) * scaling
        if attention_mask is not None:
            assert attention_mask.dtype == F64, attention_mask.dtype
            w = w + attention_mask
        w = torch.nn.functional.softmax(w, dim=-1)
        out = torch.matmul(w, value).transpose(1, 2).contiguous()
        return out, w
    return forward


def apply_rotary_pos_emb_f64(orig, rotate_half):
    def apply(q, k, cos, sin, unsqueeze_dim=1):
        if q.dtype != F64:
            return orig(q, k, cos, sin, unsqueeze_dim=unsqueeze_dim)
        cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    return apply


def patch_float64_internals():
    from transformers.models.qwen3 import modeling_qwen3 as q3
    from transformers.models.gemma3 import modeling_gemma3 as g3
    from transformers.models.modernbert import modeling_modernbert as mb
    q3.Qwen3RMSNorm.forward = rms_norm_forward_f64(q3.Qwen3RMSNorm.forward, one_plus=False)
    g3.Gemma3RMSNorm.forward = rms_norm_forward_f64(g3.Gemma3RMSNorm.forward, one_plus=True)
    q3.Qwen3RotaryEmbedding.forward = rotary_forward_f64(q3.Qwen3RotaryEmbedding.forward)
    g3.Gemma3RotaryEmbedding.forward = rotary_forward_f64(g3.Gemma3RotaryEmbedding.forward)
    mb.ModernBertRotaryEmbedding.forward = rotary_forward_f64(mb.ModernBertRotaryEmbedding.forward)
    q3.eager_attention_forward = eager_attention_f64(q3.eager_attention_forward, q3.repeat_kv)
    g3.eager_attention_forward = eager_attention_f64(g3.eager_attention_forward, g3.repeat_kv)
    mb.eager_attention_forward = eager_attention_f64(mb.eager_attention_forward, None)
    mb.apply_rotary_pos_emb = apply_rotary_pos_emb_f64(mb.apply_rotary_pos_emb, mb.rotate_half)


def set_float64_embed_scale(model):
    """Gemma3: the embedding scale sqrt(hidden) in float64 instead of the float32 buffer's value."""
    n = 0
    for m in model.modules():
        if type(m).__name__ == "Gemma3TextScaledWordEmbedding":
            assert m.embed_scale.dtype == F64 and float(m.embed_scale) == float(torch.tensor(m.scalar_embed_scale))
            m.embed_scale = torch.tensor(m.scalar_embed_scale, dtype=F64)
            n += 1
    return n


def fullname(obj):
    return type(obj).__module__ + "." + type(obj).__qualname__


def floats(t):
    return [float(v) for v in (t.tolist() if hasattr(t, "tolist") else t)]


class Generic:
    def __init__(self, model_dir):
        kw = dict(device="cpu", model_kwargs={"attn_implementation": "eager"})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.st32 = SentenceTransformer(model_dir, **kw)  # float32, for "encode"
            self.st = SentenceTransformer(model_dir, **kw).to(F64).eval()
        self.model_dir = model_dir
        self.embed_scale = None
        if set_float64_embed_scale(self.st):
            self.embed_scale = self.st[0].auto_model.config.hidden_size ** 0.5
        mods = list(self.st)
        kinds = [type(m).__name__ for m in mods]
        assert kinds[:2] == ["Transformer", "Pooling"], kinds
        self.normalize = kinds[-1] == "Normalize"
        middle = kinds[2:-1] if self.normalize else kinds[2:]
        assert all(k == "Dense" for k in middle), kinds
        self.head_modules = [m for m in mods if type(m).__name__ != "Normalize"]
        self.pool_module = mods[1]
        self.pooling = self.pool_module.pooling_mode
        assert isinstance(self.pooling, str), f"combined pooling modes are not supported: {self.pooling}"
        self.include_prompt = bool(self.pool_module.include_prompt)
        self.dense = [{"in": m.in_features, "out": m.out_features, "bias": bool(m.bias),
                       "activation": fullname(m.activation_function)} for m in mods[2:2 + len(middle)]]
        for m in mods[2:2 + len(middle)]:
            assert not m.use_residual
        self.model = mods[0].auto_model
        impl = getattr(self.model.config, "_attn_implementation", "eager")
        assert impl == "eager", impl
        self.arch = self.model.config.model_type
        assert self.arch in LAYER_LISTS, f"no layer list known for model_type {self.arch!r}"
        layers = self.model
        for part in LAYER_LISTS[self.arch].split("."):
            layers = getattr(layers, part)
        self.layers = layers
        self.num_layers = len(layers)
        self.tok = self.st.tokenizer
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        self.max_seq_length = self.st.max_seq_length
        self.prompts = dict(self.st.prompts)
        from tokenizers import Tokenizer
        self.raw = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.raw.no_padding()
        self.raw.enable_truncation(max_length=self.max_seq_length)
        # encode of the same modules without Normalize (float64): the check of f(h)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.st_head = SentenceTransformer(modules=self.head_modules, device="cpu")
        self._cache = {}

    # -- tokenization, exactly as sentence-transformers does it ---------------------------------
    def prompt_string(self, prompt_name):
        return None if prompt_name is None else self.st.prompts[prompt_name]

    def features(self, text, prompt_name):
        """sentence-transformers' features for one text (batch 1), its ids, tokens, special-token
        mask and reference ids."""
        prompt = self.prompt_string(prompt_name)
        feats = self.st.preprocess([text], prompt=prompt)
        ids = feats["input_ids"][0].tolist()
        assert all(v == 1 for v in feats["attention_mask"][0].tolist())
        full = (prompt or "") + text
        hf = self.tok(full, truncation=True, max_length=self.max_seq_length, return_special_tokens_mask=True)
        assert hf["input_ids"] == ids, (full, hf["input_ids"], ids)
        enc = self.raw.encode(full)
        assert enc.ids == ids, (full, enc.ids, ids)
        special = hf["special_tokens_mask"]
        assert enc.special_tokens_mask == special, (full, enc.special_tokens_mask, special)
        ref = [t if s else self.pad_id for t, s in zip(ids, special)]
        return feats, ids, self.tok.convert_ids_to_tokens(ids), ref, feats.get("prompt_length")

    @staticmethod
    def batch(feats, n, ids=None):
        """The features repeated n times (input_ids replaced by ids if given)."""
        out = {}
        for k, v in feats.items():
            if k == "input_ids" and ids is not None:
                v = torch.tensor([ids], dtype=v.dtype)
            out[k] = v.expand(n, *v.shape[1:]) if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == 1 else v
        return out

    # -- the network, through sentence-transformers' modules ---------------------------------------
    def run(self, feats, layer=0, x=None, capture=None):
        """Transformer, Pooling, Dense... (not Normalize) on feats; a forward pre-hook on layer
        `layer` records its hidden-state input (capture) and/or replaces it by x."""
        def hook(module, args, kwargs):
            hs = args[0] if args else kwargs["hidden_states"]
            if capture is not None:
                capture.append(hs.detach())
            if x is None:
                return None
            assert hs.shape == x.shape, (hs.shape, x.shape)
            if args:
                return (x,) + tuple(args[1:]), kwargs
            return args, {**kwargs, "hidden_states": x}

        handle = self.layers[layer].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            f = dict(feats)
            for m in self.head_modules:
                f = m(f)
        finally:
            handle.remove()
        return f["sentence_embedding"]

    def hidden_at(self, feats, layer, ids=None):
        cap = []
        with torch.no_grad():
            self.run(self.batch(feats, 1, ids), layer, capture=cap)
        assert len(cap) == 1
        return cap[0][0]

    def head(self, feats, layer, n, k=None):
        """x (n x T x H) -> f(x) (n x D, or n x K)."""
        fb = self.batch(feats, n)

        def fn(x):
            e = self.run(fb, layer, x=x)
            return e if k is None else e[:, :k]
        return fn

    def case(self, text, prompt_name, layer):
        """h, h_r, e = f(h), e_r = f(h_r) (untruncated) for a text at a split layer."""
        key = (text, prompt_name, layer)
        if key not in self._cache:
            feats, ids, tokens, ref, plen = self.features(text, prompt_name)
            h = self.hidden_at(feats, layer)
            hr = self.hidden_at(feats, layer, ids=ref)
            fn = self.head(feats, layer, 1)
            with torch.no_grad():
                e = fn(h[None])[0]
                er = fn(hr[None])[0]
                plain = self.run(self.batch(feats, 1))[0]
            assert torch.equal(e, plain), "the hook changes f(h)"
            self._cache[key] = dict(feats=feats, ids=ids, tokens=tokens, ref=ref, prompt_length=plen,
                                    h=h, hr=hr, e=e, er=er)
        return self._cache[key]

    def check_encode(self, text, prompt_name, k):
        """f(h) against sentence-transformers' encode: the folder without Normalize (float64), the
        whole folder (float64) and float32 (returned, written as "encode")."""
        c = self.case(text, prompt_name, 0)
        raw = c["e"] if k is None else c["e"][:k]
        prompt = self.prompt_string(prompt_name)
        kw = dict(truncate_dim=k, convert_to_tensor=True, show_progress_bar=False)
        head = self.st_head.encode(text, prompt=prompt, **kw)
        assert head.dtype == F64, head.dtype
        err_head = (head - raw).abs().max().item()
        assert err_head <= 1e-10 * max(1.0, raw.abs().max().item()), err_head
        full = self.st.encode(text, prompt_name=prompt_name, **kw)
        expect = torch.nn.functional.normalize(c["e"], dim=0) if self.normalize else c["e"]
        expect = expect if k is None else expect[:k]
        err_full = (full - expect).abs().max().item()
        assert err_full <= 1e-10, err_full
        enc = self.st32.encode(text, prompt_name=prompt_name, truncate_dim=k, convert_to_numpy=True,
                               show_progress_bar=False)
        assert enc.dtype == np.float32, enc.dtype
        err32 = float(np.abs(enc.astype(np.float64) - expect.numpy()).max())
        assert err32 < 1e-5, err32
        return raw, enc, err_head, err_full, err32

    # -- integrated Jacobian ----------------------------------------------------------------------
    def path(self, c, steps):
        delta = c["h"] - c["hr"]
        alphas = torch.arange(1, steps + 1, dtype=F64) / steps
        return delta, c["hr"][None] + alphas[:, None, None] * delta[None]

    def compute_P(self, text, prompt_name, layer, steps):
        """P (D x T), reverse mode (written), and its relative difference from forward mode."""
        key = ("P", text, prompt_name, layer, steps)
        if key in self._cache:
            return self._cache[key]
        c = self.case(text, prompt_name, layer)
        delta, x = self.path(c, steps)
        fn = self.head(c["feats"], layer, steps)
        x = x.detach().requires_grad_(True)
        e = fn(x)  # N x D
        d_out, t = e.shape[1], x.shape[1]
        P = torch.zeros(d_out, t, dtype=F64)
        for d in range(d_out):
            (g,) = torch.autograd.grad(e[:, d].sum(), x, retain_graph=d + 1 < d_out)
            # E[k, d] depends on x_k only, so row k of the gradient is ∂E[k,d]/∂x_k
            P[d] = ((g.sum(0) / steps) * delta).sum(-1)
        P_fwd = torch.zeros_like(P)
        xd = x.detach()
        with torch.no_grad():
            for i in range(t):
                v = torch.zeros_like(xd)
                v[:, i] = delta[i]
                _, de = torch.func.jvp(fn, (xd,), (v,))
                P_fwd[:, i] = de.sum(0) / steps
        rel = ((P - P_fwd).abs().max() / P.abs().max()).item()
        assert rel < 1e-10, f"reverse vs forward mode P differ: {rel:.3e}"
        self._cache[key] = (P.detach(), rel)
        return self._cache[key]

    def path_sum(self, text, prompt_name, layer, steps):
        """Σ_i P[:, i] by one JVP along Δ (the Riemann sum of d/dα f(h_r + αΔ))."""
        c = self.case(text, prompt_name, layer)
        delta, x = self.path(c, steps)
        fn = self.head(c["feats"], layer, steps)
        with torch.no_grad():
            _, de = torch.func.jvp(fn, (x,), (delta[None].expand_as(x).contiguous(),))
        return de.sum(0) / steps

    def attention_layers(self, feats):
        """Rotary families: per layer the attention pattern transformers builds (read from the mask
        each layer receives, on feats' T positions, and checked against `causal` and `window`: key j is
        visible from query i iff |i - j| <= window (no window: any distance) and, if causal, j <= i),
        the QKᵀ scale, the heads and the rotary θ and inv_freq (float64). Also checks that the rotary
        cos/sin each layer receives are cos/sin of cat(p·inv_freq, p·inv_freq) at positions p = 0..T-1."""
        cfg = self.model.config
        seen = {}

        def hook(l):
            def f(module, args, kwargs):
                seen[l] = (kwargs.get("attention_mask"), kwargs.get("position_embeddings"))
            return f

        handles = [layer.register_forward_pre_hook(hook(l), with_kwargs=True) for l, layer in enumerate(self.layers)]
        try:
            with torch.no_grad():
                self.run(self.batch(feats, 1))
        finally:
            for h in handles:
                h.remove()
        t = feats["input_ids"].shape[1]
        i = torch.arange(t)[:, None]
        j = torch.arange(t)[None, :]
        pos = torch.arange(t, dtype=F64)
        out = []
        for l, layer in enumerate(self.layers):
            mask, (cos, sin) = seen[l]
            allowed = torch.ones(t, t, dtype=torch.bool) if mask is None else (mask[0, 0] == 0)
            if mask is not None:
                assert mask.shape == (1, 1, t, t) and mask.dtype == F64
                assert bool(((mask[0, 0] == 0) | (mask[0, 0] == torch.finfo(F64).min)).all())
            causal = not bool(allowed[j.expand(t, t) > i.expand(t, t)].any())
            dist = (i - j).abs().expand(t, t)
            window = int(dist[allowed].max())
            window = None if window == t - 1 else window
            expect = (dist <= (t if window is None else window)) & ((j <= i) if causal else True)
            assert torch.equal(allowed, expect), (l, allowed.int())
            layer_type = cfg.layer_types[l]
            if self.arch == "qwen3":
                att, theta, inv = layer.self_attn, cfg.rope_parameters["rope_theta"], rope_inv_freq_f64(cfg)
                scale = att.scaling
            elif self.arch == "gemma3_text":
                att, theta = layer.self_attn, cfg.rope_parameters[layer_type]["rope_theta"]
                inv, scale = rope_inv_freq_f64(cfg, layer_type), att.scaling
            else:
                att, theta = layer.attn, cfg.rope_parameters[layer_type]["rope_theta"]
                inv, scale = rope_inv_freq_f64(cfg, layer_type), att.head_dim ** -0.5
            emb = torch.cat((pos[:, None] * inv, pos[:, None] * inv), dim=-1)
            assert cos.dtype == F64 and torch.equal(cos[0], emb.cos()) and torch.equal(sin[0], emb.sin()), l
            heads = cfg.num_attention_heads
            kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
            out.append({"layer": l, "layer_type": layer_type, "causal": causal, "window": window,
                        "scale": float(scale), "num_heads": heads, "num_kv_heads": kv_heads,
                        "head_dim": att.head_dim, "rope_theta": float(theta), "inv_freq": floats(inv)})
        return out

    def relative_position_buckets(self):
        """T5: transformers' own bucket function on relative positions -600..600 (key - query), and a
        check that compute_bias (layer 0's SelfAttention) looks the bias up with exactly these."""
        att = self.layers[0].layer[0].SelfAttention
        assert att.has_relative_attention_bias
        assert all(not b.layer[0].SelfAttention.has_relative_attention_bias for b in self.layers[1:])
        nb, md = att.relative_attention_num_buckets, att.relative_attention_max_distance
        rel = torch.arange(-BUCKET_RANGE, BUCKET_RANGE + 1, dtype=torch.long)
        buckets = att._relative_position_bucket(rel, bidirectional=True, num_buckets=nb, max_distance=md)
        t = 2 * BUCKET_RANGE // 8
        with torch.no_grad():
            bias = att.compute_bias(t, t)[0]  # heads x T x T
            q = torch.arange(t)[:, None]
            k = torch.arange(t)[None, :]
            expect = att.relative_attention_bias.weight[buckets[(k - q) + BUCKET_RANGE]].permute(2, 0, 1)
        assert torch.equal(bias, expect), "compute_bias does not use _relative_position_bucket(key - query)"
        return {"num_buckets": nb, "max_distance": md, "bidirectional": True,
                "relative_positions": rel.tolist(), "buckets": buckets.tolist()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", choices=("default", "prompted"), default="default",
                    help="default: the cases of tests/reference/README.md (\"Generic golden values\"); "
                         "prompted: only PROMPTED_TEXTS x (no prompt, query, document) and the query / "
                         "document pair at the first and last layer (include_prompt_goldens.py)")
    args = ap.parse_args()
    t0 = time.time()
    torch.manual_seed(0)
    patch_t5_layer_norm()
    patch_float64_internals()
    nomic_jina_reference.install()  # NomicBERT / JinaBERT folders only

    G = Generic(args.model_dir)
    has_prompts = any(v for v in G.prompts.values())
    special = {n: getattr(G.tok, n + "_token_id", None) for n in ("bos", "cls", "pad", "eos", "sep", "unk")}
    print(f"model {args.name}: {G.arch}, {G.num_layers} layers, pooling {G.pooling} (include_prompt "
          f"{G.include_prompt}), dense {G.dense}, normalize {G.normalize}, max_seq_length {G.max_seq_length}, "
          f"prompts {G.prompts}; special ids {special}, reference pad id {G.pad_id}; torch {torch.__version__}, "
          f"transformers {transformers.__version__}, sentence-transformers {sentence_transformers.__version__}")

    # ---------------- embeddings ----------------
    if args.cases == "prompted":
        assert G.prompts.get("query") and G.prompts.get("document"), f"--cases prompted needs both prompts: {G.prompts}"
        emb_cases = [(t, pn, None) for t in PROMPTED_TEXTS for pn in (None, "query", "document")]
    else:
        emb_cases = [(t, None, None) for t in EMBEDDING_TEXTS] + [("A man is playing a guitar.", None, TRUNCATE_DIM)]
    if has_prompts and args.cases == "default":
        emb_cases += [("A man is playing a guitar.", "query", None), ("Someone plays an instrument.", "document", None),
                      ("hi", "query", TRUNCATE_DIM)]
    embeddings = []
    worst = [0.0, 0.0, 0.0]
    for text, pn, k in emb_cases:
        c = G.case(text, pn, 0)
        raw, enc, e1, e2, e3 = G.check_encode(text, pn, k)
        worst = [max(a, b) for a, b in zip(worst, (e1, e2, e3))]
        print(f"  embed T={len(c['ids']):3d} prompt {pn} (length {c['prompt_length']}) K={k}: |f(h) - encode "
              f"w/o Normalize| {e1:.1e}, |normalize(f) - encode| {e2:.1e}, float32 {e3:.1e}  {c['tokens']} ref {c['ref']}")
        embeddings.append({"text": text, "tokens": c["tokens"], "ids": c["ids"], "raw": floats(raw),
                           "encode": [float(v) for v in enc], "prompt": pn, "prompt_length": c["prompt_length"],
                           "truncate_dim": k})
    print(f"embeddings: max |f(h) - encode w/o Normalize| {worst[0]:.2e}, max |normalized - encode| {worst[1]:.2e}, "
          f"max |float32 encode - normalized| {worst[2]:.2e}")

    # ---------------- attributions ----------------
    # (text_a, text_b, prompt_a, prompt_b, truncate_dim, layers)
    if args.cases == "prompted":
        pair_cases = [PROMPTED_PAIR_TEXTS + ("query", "document", None, [0, G.num_layers - 1])]
    else:
        pair_cases = [(a, b, None, None, None, LAYERS) for a, b in PAIRS]
    if has_prompts and args.cases == "default":
        pa, pb = PROMPTED_PAIR.get(G.arch, ("query", "document"))
        pair_cases.append(("A man is playing a guitar.", "Someone plays an instrument.", pa, pb, None, LAYERS))
    if args.name == "tiny-bert-weightedmean" and args.cases == "default":
        pair_cases.append((PAIRS[0][0], PAIRS[0][1], None, None, TRUNCATE_DIM, [1]))

    attributions, rev_fwd, compl = [], [], {}
    for text_a, text_b, pa, pb, k, layers in pair_cases:
        for layer in layers:
            assert 0 <= layer < G.num_layers
            ca, cb = G.case(text_a, pa, layer), G.case(text_b, pb, layer)
            (P_a, rel_a), (P_b, rel_b) = G.compute_P(text_a, pa, layer, STEPS), G.compute_P(text_b, pb, layer, STEPS)
            rev_fwd += [rel_a, rel_b]
            sl = slice(None) if k is None else slice(0, k)
            P_a, P_b = P_a[sl], P_b[sl]
            e_a, e_b, r_a, r_b = ca["e"][sl], cb["e"][sl], ca["er"][sl], cb["er"][sl]
            for text, pn, P, e, r in ((text_a, pa, P_a, e_a, r_a), (text_b, pb, P_b, e_b, r_b)):
                err = (P.sum(1) - (e - r)).abs().max().item()
                compl[(text, pn, layer, k)] = (err, (e - r).abs().max().item())
            A_dot = P_a.T @ P_b
            for sim in SIMILARITIES:
                if sim == "cos":
                    scale = (e_a.norm() * e_b.norm()).item()
                    score = (e_a @ e_b).item() / scale
                else:
                    scale = 1.0
                    score = (e_a @ e_b).item()
                A = A_dot / scale
                refs = {"ref_a__b": (r_a @ e_b).item() / scale, "a__ref_b": (e_a @ r_b).item() / scale,
                        "ref_a__ref_b": (r_a @ r_b).item() / scale}
                asum = A.sum().item()
                expected = score - refs["ref_a__b"] - refs["a__ref_b"] + refs["ref_a__ref_b"]
                ident = asum - expected
                attributions.append({
                    "text_a": text_a, "text_b": text_b, "layer": layer, "steps": STEPS, "similarity": sim,
                    "tokens_a": ca["tokens"], "tokens_b": cb["tokens"],
                    "attributions": [floats(row) for row in A],
                    "score": score, "attribution_sum": asum, "reference_terms": refs,
                    "embedding_a": floats(e_a), "embedding_b": floats(e_b),
                    "reference_embedding_a": floats(r_a), "reference_embedding_b": floats(r_b),
                    "checks": {"completeness_max_abs_err_a": compl[(text_a, pa, layer, k)][0],
                               "completeness_max_abs_err_b": compl[(text_b, pb, layer, k)][0],
                               "identity_err": ident},
                    "prompt_a": pa, "prompt_b": pb, "truncate_dim": k,
                    "reference_ids_a": ca["ref"], "reference_ids_b": cb["ref"],
                    "ids_a": ca["ids"], "ids_b": cb["ids"], "rev_vs_fwd": max(rel_a, rel_b),
                })
                print(f"  L={layer} N={STEPS} {sim} K={k} prompts {pa}/{pb}: score {score:+.5f} sum(A) {asum:+.5f} "
                      f"expected {expected:+.5f} identity-err {ident:+.2e} rev-vs-fwd {max(rel_a, rel_b):.1e}  "
                      f"[{text_a!r} / {text_b!r}]", flush=True)

    print(f"reverse- vs forward-mode P: max relative difference {max(rev_fwd):.3e} over {len(rev_fwd)} P")
    # Completeness at N and (JVP path sum) at CHECK_STEPS: the right Riemann error is O(1/N).
    print(f"completeness max_d |Σ_i P_di - (e_d(x) - e_d(r))| at N={STEPS} -> N={CHECK_STEPS} (rel. to max_d |Δe_d|):")
    worst_rel = 0.0
    for (text, pn, layer, k), (err, mag) in sorted(compl.items(), key=lambda kv: (kv[0][2], str(kv[0]))):
        if k is not None:
            continue
        c = G.case(text, pn, layer)
        err_chk = (G.path_sum(text, pn, layer, CHECK_STEPS) - (c["e"] - c["er"])).abs().max().item()
        worst_rel = max(worst_rel, err / mag)
        print(f"  L={layer} prompt {pn}: {err:.3e} (rel {err / mag:.2e}) -> {err_chk:.3e} (rel {err_chk / mag:.2e}, "
              f"ratio {err / max(err_chk, 1e-300):.1f}, ideal {CHECK_STEPS / STEPS:.0f})  {text!r}")
        assert err_chk <= err * 2.0 * STEPS / CHECK_STEPS + 1e-12, "completeness does not converge as O(1/N)"
        assert err_chk / mag < 2e-2, f"completeness error {err_chk / mag:.3e} at N={CHECK_STEPS}"
    print(f"max relative completeness error at N={STEPS}: {worst_rel:.3e}")

    out = {"generator": "tests/reference/generate_golden_generic.py", "model": args.name,
           "architecture": G.arch, "pooling": G.pooling, "dtype": "float64", "max_seq_length": G.max_seq_length,
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "sentence_transformers": sentence_transformers.__version__},
           "include_prompt": G.include_prompt, "prompts": G.prompts, "dense": G.dense, "normalize": G.normalize,
           "layers": G.num_layers}
    if args.cases != "default":
        out["cases"] = args.cases
    if G.arch == "t5":
        out["relative_position_buckets"] = G.relative_position_buckets()
    if G.arch in ROTARY_ARCHS:
        feats = G.features(max(EMBEDDING_TEXTS, key=len), None)[0]
        out["attention_layers"] = G.attention_layers(feats)
        out["position_ids"] = "arange"
        out["embedding_scale"] = G.embed_scale
        for a in out["attention_layers"]:
            print(f"  layer {a['layer']} {a['layer_type']}: causal {a['causal']}, window {a['window']}, scale "
                  f"{a['scale']!r}, heads {a['num_heads']}/{a['num_kv_heads']} x {a['head_dim']}, θ {a['rope_theta']}")
    if G.arch in REFERENCE_ARCHS:
        ids = torch.tensor([G.features(max(EMBEDDING_TEXTS, key=len), None)[1]])
        out.update(nomic_jina_reference.attention_facts(G.model, ids))
        for a in out["attention_layers"]:
            print(f"  layer {a['layer']}: scale {a['scale']!r}, heads {a['num_heads']} x {a['head_dim']}, "
                  + (f"rotary θ {a['rope_theta']} dim {a['rotary_dim']}" if "rope_theta" in a
                     else f"ALiBi slopes {a['alibi_slopes']}"))
    out["embeddings"] = embeddings
    out["attributions"] = attributions
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes): {len(embeddings)} embeddings, "
          f"{len(attributions)} attributions in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    sys.exit(main())

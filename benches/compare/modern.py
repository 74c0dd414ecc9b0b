#!/usr/bin/env python3
"""Side-by-side benchmark of simattr against PyTorch on the newer encoder families.

Random-weight sentence-transformers folders of the real shapes (written once into
~/.cache/simattr/bench-models/NAME/ through transformers' own classes and configs):

    qwen3-embedding-0.6b-shape   Qwen3Model: hidden 1024, 28 layers, 16 query / 8 KV heads, head_dim
                                 128, SwiGLU 3072, rotary θ 1e6, causal; lasttoken pooling, Normalize
    embeddinggemma-300m-shape    Gemma3TextModel: hidden 768, 24 layers, 3 query / 1 KV head, head_dim
                                 256, GeGLU 1152, 5 sliding (window 512) : 1 full, θ 1e4 / 1e6,
                                 bidirectional; mean pooling, Dense 768->3072->768, Normalize
    modernbert-base-shape        ModernBertModel: hidden 768, 22 layers, 12 heads, GeGLU 1152, global
                                 every 3rd layer, local_attention 128, θ 160000 / 10000; mean, Normalize
    gtr-t5-base-shape            T5EncoderModel: d_model 768, 12 layers, 12 heads, d_kv 64, relu d_ff
                                 3072, 32 buckets / max distance 128; mean, Dense 768->768, Normalize

with the real vocabulary sizes (151669, 262144, 50368, 32128) and the tiny fixtures' tokenizers
(tests/fixtures/tiny-{qwen3,gemma3,modernbert,t5}/: each family's format; their ids are a few
hundred, so most of the token table is never looked up). Per family it checks `simattr embed`
against sentence-transformers' `encode`, then times the attribution at the last layer:

  (s) `simattr explain` as a whole process (model load included), under /usr/bin/time -v (peak RSS)
  (b) PyTorch forward mode, f32: torch.func.jvp of the transformers layers >= L, the final norm,
      pooling and the Dense modules, vmapped over the T token directions (compare.py's (b))
  (a) PyTorch reverse mode, f32: one backward pass per output dimension, --reverse-chunk of them per
      autograd.grad call (compare.py's (a); xsbert, XPLAINSIM, retrivex), on --reverse families only

checks that all give the same A, alternates the implementations run by run and reports medians.
--long also runs one long text (--long-tokens, default 512) against a short one through
`simattr explain` per family (wall time, peak RSS under the default --max-memory).
Not part of CI; see README.md in this folder.
"""
import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
DEFAULT_MODELS = os.path.join(os.path.expanduser("~"), ".cache", "simattr", "bench-models")

# Pairs of ~12 tokens with every family's (fixture) tokenizer: words of the tiny vocabularies, so
# that no word falls apart into letters. Token counts (a + b): Qwen3 13 + 12 and 13 + 12, Gemma3
# 15 + 13 and 16 + 15, ModernBERT 12 + 10 and 11 + 9, T5 11 + 9 and 10 + 8. (The MPNet pairs of
# compare.py give 14-30 tokens with these tokenizers: "guitar" is "g uitar", "tomatoes" 4-6 pieces.)
PAIRS = [("A man is playing a guitar on the street.", "Someone plays an instrument in the park."),
         ("A woman is playing the piano at home.", "Someone plays music in the house.")]
SHORT_TEXT = "A man is playing a guitar."
LONG_SENTENCES = [  # tiny-vocabulary sentences, cycled into one long text
    "The young man plays the guitar in the street every morning.",
    "A small dog runs after the red ball in the park.",
    "Some children are eating bread and apples at school.",
    "The old woman reads a long book at home when it is raining.",
    "Many people walk on the beach at night under the sky.",
    "A girl rides her bike down the road to the city.",
    "The teacher writes a sentence on the board for the students.",
    "We will cook fish and drink water in the kitchen today.",
    "They saw a big black horse in the green field.",
    "He was happy when his team won the game again.",
]

SPECS = {
    "qwen3": dict(name="qwen3-embedding-0.6b-shape", fixture="tiny-qwen3", pooling="lasttoken", dense=[],
                  max_seq_length=32768, seed=1001),
    "gemma3": dict(name="embeddinggemma-300m-shape", fixture="tiny-gemma3", pooling="mean",
                   dense=[3072, 768], max_seq_length=2048, seed=1002),
    "modernbert": dict(name="modernbert-base-shape", fixture="tiny-modernbert", pooling="mean", dense=[],
                       max_seq_length=8192, seed=1003),
    "t5": dict(name="gtr-t5-base-shape", fixture="tiny-t5", pooling="mean", dense=[768],
               max_seq_length=512, seed=1004),
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "vocab.txt")

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--families", default="qwen3,gemma3,modernbert,t5", help="comma-separated, of " + ", ".join(SPECS))
ap.add_argument("--models", default=DEFAULT_MODELS, help="where the random-weight folders live (written once)")
ap.add_argument("--rebuild", action="store_true", help="write the folders again even if they exist")
ap.add_argument("--simattr", default=os.path.join(REPO, "target", "release", "simattr"))
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--steps", type=int, default=50)
ap.add_argument("--pairs", help='JSONL file, one {"a": ..., "b": ...} per line (default: the two ~12-token pairs)')
ap.add_argument("--pair-count", type=int, help="use only the first K pairs")
ap.add_argument("--reverse", default="modernbert",
                help="families to time (a) on, FAMILY[:STEPS],... ('' = none, 'all'); it costs ~D/T times (b)'s "
                     "arithmetic. STEPS (default --reverse-steps) below --steps: (a) runs at STEPS and its pass time "
                     "is scaled by steps/STEPS (its work is exactly proportional to the steps), and its A is checked "
                     "against (b) at STEPS steps")
ap.add_argument("--reverse-runs", type=int, default=1, help="runs of (a): it takes part in the first R rounds")
ap.add_argument("--reverse-pairs", type=int, default=1, help="(a) on the first K pairs only")
ap.add_argument("--reverse-steps", type=int, help="steps of (a) where --reverse gives none (default --steps)")
ap.add_argument("--reverse-chunk", type=int, default=64)
ap.add_argument("--with-primal-f32", action="store_true", help="also time `simattr explain --primal f32`")
ap.add_argument("--with-mode-reverse", action="store_true", help="also time `simattr explain --mode reverse` (one run)")
ap.add_argument("--skip-attribution", action="store_true", help="build, check embeddings (and --long) only")
ap.add_argument("--long", action="store_true", help="also one --long-tokens text against a short one, per family")
ap.add_argument("--long-tokens", type=int, default=512)
ap.add_argument("--long-steps", type=int, default=1)
ap.add_argument("--json", help="also write every run and the medians as JSON")
ap.add_argument("--report", help="only print the tables of earlier --json files (comma-separated; later files' "
                "families replace earlier ones')")
args = ap.parse_args()
FAMS = [f for f in args.families.split(",") if f]
for f in FAMS:
    if f not in SPECS:
        sys.exit(f"unknown family {f!r}: one of {', '.join(SPECS)}")
REVERSE = {}
for item in (",".join(SPECS) if args.reverse == "all" else args.reverse).split(","):
    if item:
        fam_name, _, st = item.partition(":")
        REVERSE[fam_name] = int(st) if st else (args.reverse_steps or args.steps)

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)
os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                  HF_HUB_DISABLE_PROGRESS_BARS="1")
T_START = time.perf_counter()
import warnings  # noqa: E402
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import log, provenance, rel, stats  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

torch.set_num_threads(args.threads)
transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()
F32 = torch.float32


# --------------------------------------------------------------------------------------------
# The random-weight folders
# --------------------------------------------------------------------------------------------
def make_config(family):
    """transformers' config object of the real hyper-parameters; token ids from the fixture."""
    from transformers import Gemma3TextConfig, ModernBertConfig, Qwen3Config, T5Config
    with open(os.path.join(FIXTURES, SPECS[family]["fixture"], "config.json"), encoding="utf-8") as f:
        tiny = json.load(f)
    if family == "qwen3":
        cfg = Qwen3Config(
            vocab_size=151669, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
            num_attention_heads=16, num_key_value_heads=8, head_dim=128, hidden_act="silu",
            max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=True,
            attention_bias=False, use_sliding_window=False, max_window_layers=28,
            bos_token_id=tiny["bos_token_id"], eos_token_id=tiny["eos_token_id"], initializer_range=0.02)
        cls = "Qwen3Model"
    elif family == "gemma3":
        n = 24
        cfg = Gemma3TextConfig(
            vocab_size=262144, hidden_size=768, intermediate_size=1152, num_hidden_layers=n,
            num_attention_heads=3, num_key_value_heads=1, head_dim=256, hidden_activation="gelu_pytorch_tanh",
            max_position_embeddings=2048, rms_norm_eps=1e-6, pad_token_id=tiny["pad_token_id"],
            eos_token_id=tiny["eos_token_id"], bos_token_id=tiny["bos_token_id"], tie_word_embeddings=True,
            rope_theta=1e6, rope_local_base_freq=1e4, query_pre_attn_scalar=256, sliding_window=512,
            layer_types=["sliding_attention" if (i + 1) % 6 else "full_attention" for i in range(n)],
            use_bidirectional_attention=True, attention_bias=False, initializer_range=0.02)
        cls = "Gemma3TextModel"
    elif family == "modernbert":
        cfg = ModernBertConfig(
            vocab_size=50368, hidden_size=768, intermediate_size=1152, num_hidden_layers=22,
            num_attention_heads=12, hidden_activation="gelu", max_position_embeddings=8192, norm_eps=1e-5,
            norm_bias=False, attention_bias=False, mlp_bias=False, pad_token_id=tiny["pad_token_id"],
            bos_token_id=tiny["bos_token_id"], eos_token_id=tiny["eos_token_id"],
            cls_token_id=tiny["cls_token_id"], sep_token_id=tiny["sep_token_id"],
            global_attn_every_n_layers=3, local_attention=128, global_rope_theta=160000.0,
            local_rope_theta=10000.0, classifier_pooling="mean", initializer_range=0.02)
        cls = "ModernBertModel"
    else:
        cfg = T5Config(
            vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
            relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="relu",
            layer_norm_epsilon=1e-6, dropout_rate=0.1, initializer_factor=1.0, is_encoder_decoder=True,
            pad_token_id=tiny["pad_token_id"], eos_token_id=tiny["eos_token_id"],
            decoder_start_token_id=tiny.get("decoder_start_token_id", 0))
        cls = "T5EncoderModel"
    cfg.architectures = [cls]
    return cfg, cls


def tiny_scales(family):
    """The tiny fixtures' weight distributions (make_tiny_model.py's constants) by tensor role."""
    sys.path.insert(0, os.path.join(REPO, "tests", "reference"))
    import make_tiny_model as mt  # noqa: E402
    return {"qwen3": mt.QWEN3_STD, "gemma3": mt.GEMMA3_STD, "modernbert": mt.MODERNBERT_STD,
            "t5": mt.T5_STD}[family], mt


def role(family, name):
    """(mean, std key) of a tensor of the fixture's scheme, by its name; None = a linear weight
    (its std key is returned as the second element) vs a vector."""
    if family in ("qwen3", "gemma3"):
        if "embed_tokens" in name:
            return "embed"
        if "q_norm" in name or "k_norm" in name:
            return "qk_norm"
        if "norm" in name:
            return "norm"
        if any(k in name for k in ("q_proj", "k_proj", "v_proj", "o_proj")):
            return "proj"
        if "gate_proj" in name or "up_proj" in name:
            return "up"
        if "down_proj" in name:
            return "down"
    elif family == "modernbert":
        if "tok_embeddings" in name:
            return "embed"
        if "norm" in name:
            return "norm"
        return {"attn.Wqkv": "qkv", "attn.Wo": "o", "mlp.Wi": "wi", "mlp.Wo": "wo"}[
            next(k for k in ("attn.Wqkv", "attn.Wo", "mlp.Wi", "mlp.Wo") if k in name)]
    else:
        if name == "shared.weight":
            return "embed"
        if "relative_attention_bias" in name:
            return "rel_bias"
        if "layer_norm" in name:
            return "norm"
        for k, r in ((".q.", "qk"), (".k.", "qk"), (".v.", "vo"), (".o.", "vo"), (".wi.", "wi"), (".wo.", "wo")):
            if k in name:
                return r
    raise KeyError(f"{family}: no scale for {name}")


def draw_weights(family, model, cfg, g):
    """Every parameter of the class, drawn as the tiny fixture's scheme draws it, the linear
    weights' std scaled by sqrt(tiny fan-in / fan-in) (so the activations keep the fixture's
    size), T5's q and k by a further (d_kv_tiny / d_kv)^¼ (its scores are not scaled by 1/√d_kv),
    Gemma's token table by sqrt(32 / hidden) (the model multiplies by √hidden)."""
    from safetensors import safe_open
    std, _ = tiny_scales(family)
    fixture = os.path.join(FIXTURES, SPECS[family]["fixture"])
    with safe_open(os.path.join(fixture, "model.safetensors"), "pt") as f:
        tiny_shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    tiny_cfg = json.load(open(os.path.join(fixture, "config.json"), encoding="utf-8"))
    sd = {}
    for name, p in model.state_dict().items():
        if family == "t5" and name == "encoder.embed_tokens.weight":
            continue  # tied to shared.weight, not stored
        r = role(family, name)
        shape = tuple(p.shape)
        if r == "embed":
            s, mean = std["embed"], 0.0
            if family == "gemma3":
                s *= math.sqrt(tiny_cfg["hidden_size"] / cfg.hidden_size)
        elif r == "rel_bias":
            s, mean = std["rel_bias"], 0.0
        elif r in ("norm", "qk_norm"):
            if family == "t5":
                s, mean = std["norm"], 1.0
            elif r == "qk_norm":
                s, mean = std["qk_norm"], std["qk_norm_mean"]
            else:
                s, mean = std["norm"], (0.0 if family == "gemma3" else 1.0)
        else:
            tiny_name = re.sub(r"^(layers|encoder\.block)\.\d+\.", r"\1.1.", name)
            if tiny_name not in tiny_shapes:
                tiny_name = re.sub(r"\.\d+\.", ".0.", name, count=1)
            if tiny_name not in tiny_shapes:  # tiny-t5 is gated: its wi_0 has wi's fan-in
                tiny_name = tiny_name.replace(".wi.", ".wi_0.")
            tiny_in = tiny_shapes[tiny_name][1]
            s, mean = std[r] * math.sqrt(tiny_in / shape[1]), 0.0
            if family == "t5" and r == "qk":
                s *= (tiny_cfg["d_kv"] / cfg.d_kv) ** 0.25
        sd[name] = (torch.randn(*shape, generator=g, dtype=F32) * s + mean).contiguous()
    return sd


def dense_modules(family, hidden, g):
    """(in, out, weight, bias, activation) of the family's Dense chain (make_tiny_model's form): no
    bias, Identity, weights N(0, std²) with the fixture's std scaled by sqrt(tiny fan-in / fan-in)."""
    from safetensors import safe_open
    std, _ = tiny_scales(family)
    fixture = os.path.join(FIXTURES, SPECS[family]["fixture"])
    out, n_in = [], hidden
    for k, n_out in enumerate(SPECS[family]["dense"]):
        with safe_open(os.path.join(fixture, f"{k + 2}_Dense", "model.safetensors"), "pt") as f:
            tiny_in = f.get_slice("linear.weight").get_shape()[1]
        s = std["dense"] * math.sqrt(tiny_in / n_in)
        out.append((n_in, n_out, torch.randn(n_out, n_in, generator=g, dtype=F32) * s, None, "Identity"))
        n_in = n_out
    return out


def build_folder(family, out):
    """Write the folder: config.json and model.safetensors (names from transformers' class, checked
    by loading them back strictly), the fixture's tokenizer files, modules, pooling, Dense."""
    import transformers as tf
    from safetensors.torch import save_file
    spec = SPECS[family]
    cfg, cls_name = make_config(family)
    cls = getattr(tf, cls_name)
    log(f"  writing {out} ({cls_name}, vocab {cfg.vocab_size})")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    with torch.device("meta"):
        meta = cls(cfg)
    g = torch.Generator().manual_seed(spec["seed"])
    sd = draw_weights(family, meta, cfg, g)
    del meta
    hidden = cfg.d_model if family == "t5" else cfg.hidden_size
    dense = dense_modules(family, hidden, g)
    save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    cfg.save_pretrained(out)
    model, info = cls.from_pretrained(out, output_loading_info=True)
    missing = [k for k in info.get("missing_keys", []) if k != "encoder.embed_tokens.weight"]  # T5: tied
    assert not missing and not info.get("unexpected_keys") and not info.get("mismatched_keys"), info
    for k in list(sd)[:3] + list(sd)[-3:]:
        assert torch.equal(model.state_dict()[k], sd[k]), k
    del model
    fixture = os.path.join(FIXTURES, spec["fixture"])
    for fn in TOKENIZER_FILES:
        if os.path.isfile(os.path.join(fixture, fn)):
            shutil.copyfile(os.path.join(fixture, fn), os.path.join(out, fn))
    tc_path = os.path.join(out, "tokenizer_config.json")
    tc = json.load(open(tc_path, encoding="utf-8"))
    tc["model_max_length"] = spec["max_seq_length"]
    with open(tc_path, "w", encoding="utf-8") as f:
        json.dump(tc, f, indent=2)
        f.write("\n")
    _, mt = tiny_scales(family)
    mt.write_modules(out, hidden, spec["pooling"], spec["max_seq_length"], include_prompt=True, dense=dense)
    with open(os.path.join(out, "bench-model.json"), "w", encoding="utf-8") as f:
        json.dump({"family": family, "class": cls_name, "seed": spec["seed"], "vocab_size": cfg.vocab_size,
                   "written_by": "benches/compare/modern.py"}, f, indent=1)


def folder(family):
    out = os.path.join(args.models, SPECS[family]["name"])
    if args.rebuild or not os.path.isfile(os.path.join(out, "bench-model.json")):
        t0 = time.perf_counter()
        build_folder(family, out)
        log(f"  written in {time.perf_counter() - t0:.0f} s")
    return out


RUSAGE = {"cpu": None}  # CPU seconds (user + sys) of the last simattr process or PyTorch call


def cpu_seconds():
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def loadavg():
    try:
        return float(open("/proc/loadavg", encoding="utf-8").read().split()[0])
    except OSError:
        return None


# --------------------------------------------------------------------------------------------
# simattr as a process
# --------------------------------------------------------------------------------------------
def run_simattr(argv, tmp, json_out=True):
    """Runs simattr under /usr/bin/time -v; returns (wall s, peak RSS MB, JSON or None, rc, stderr)."""
    out = os.path.join(tmp, "out.json")
    tv = os.path.join(tmp, "time.txt")
    if os.path.exists(out):
        os.remove(out)
    cmd = [args.simattr, "--threads", str(args.threads), *argv[:1], *(["--json", out] if json_out else []), *argv[1:]]
    full = (["/usr/bin/time", "-v", "-o", tv] if os.path.exists("/usr/bin/time") else []) + cmd
    t0 = time.perf_counter()
    res = subprocess.run(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    rss = None
    RUSAGE["cpu"] = None
    if os.path.exists(tv):
        tv_text = open(tv, encoding="utf-8").read()
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", tv_text)
        rss = int(m.group(1)) / 1024 if m else None
        u = re.search(r"User time \(seconds\): ([\d.]+)", tv_text)
        sy = re.search(r"System time \(seconds\): ([\d.]+)", tv_text)
        if u and sy:
            RUSAGE["cpu"] = float(u.group(1)) + float(sy.group(1))
    data = None
    if res.returncode == 0 and json_out and os.path.exists(out):
        with open(out, encoding="utf-8") as f:
            data = json.load(f)
    return wall, rss, data, res.returncode, res.stderr, cmd


# --------------------------------------------------------------------------------------------
# PyTorch: the transformers modules of layers >= L, driven with the arguments they receive
# --------------------------------------------------------------------------------------------
class Torch:
    def __init__(self, model_dir, impl):
        self.st = SentenceTransformer(model_dir, device="cpu", model_kwargs={"attn_implementation": impl})
        self.st.eval()
        self.st.requires_grad_(False)
        mods = list(self.st)
        kinds = [type(m).__name__ for m in mods]
        assert kinds[:2] == ["Transformer", "Pooling"] and kinds[-1] == "Normalize", kinds
        self.head_modules = mods[:-1]
        self.dense = [m for m in mods[2:-1]]
        assert all(type(m).__name__ == "Dense" for m in self.dense), kinds
        self.pooling = mods[1].pooling_mode
        assert self.pooling in ("mean", "lasttoken"), self.pooling
        self.model = mods[0].auto_model
        self.cfg = self.model.config
        self.attn = getattr(self.cfg, "_attn_implementation", impl)
        mt = self.cfg.model_type
        if mt == "t5":
            self.layers, self.final = self.model.encoder.block, self.model.encoder.final_layer_norm
        elif mt == "modernbert":
            self.layers, self.final = self.model.layers, self.model.final_norm
        else:
            self.layers, self.final = self.model.layers, self.model.norm
        self.tok = self.st.tokenizer
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        self.pass_time = 0.0
        self.shape = model_shape(self.cfg, [(m.in_features, m.out_features) for m in self.dense])

    def features(self, text):
        feats = self.st.preprocess([text])
        ids = feats["input_ids"][0].tolist()
        special = self.tok(text, truncation=True, max_length=self.st.max_seq_length,
                           return_special_tokens_mask=True)["special_tokens_mask"]
        ref = [t if s else self.pad for t, s in zip(ids, special)]
        return ids, ref

    def capture(self, ids, layer):
        """h entering `layer` (T x H) and, per layer >= `layer`, the other arguments it receives."""
        calls, hs = {}, []

        def hook(l):
            def f(module, a, kw):
                kw = dict(kw)
                if a:
                    h, rest = a[0], tuple(a[1:])
                else:
                    h, rest = kw.pop("hidden_states"), ()
                if l == layer:
                    hs.append(h.detach()[0])
                calls[l] = (rest, kw)
            return f

        handles = [self.layers[l].register_forward_pre_hook(hook(l), with_kwargs=True)
                   for l in range(layer, len(self.layers))]
        try:
            with torch.no_grad():
                x = torch.tensor([ids])
                self.model(input_ids=x, attention_mask=torch.ones_like(x))
        finally:
            for h in handles:
                h.remove()
        return hs[0], calls

    def head(self, calls, layer):
        """x (... x T x H) -> e (... x D): layers >= layer, the final norm, pooling, Dense (no Normalize)."""
        def fn(x):
            for l in range(layer, len(self.layers)):
                rest, kw = calls[l]
                out = self.layers[l](x, *rest, **kw)
                x = out[0] if isinstance(out, (tuple, list)) else out
            x = self.final(x)
            e = x.mean(-2) if self.pooling == "mean" else x[..., -1, :]
            for d in self.dense:
                e = d.activation_function(d.linear(e))
            return e
        return fn

    def st_embedding(self, text):
        """sentence-transformers' own modules up to Normalize (its sentence_embedding, unnormalized)."""
        f = self.st.preprocess([text])
        with torch.no_grad():
            for m in self.head_modules:
                f = m(f)
        return f["sentence_embedding"][0]

    def path(self, ids, ref, layer, steps):
        h, calls = self.capture(ids, layer)
        hr, _ = self.capture(ref, layer)
        delta = h - hr
        alphas = torch.arange(1, steps + 1, dtype=F32) / steps
        return h, delta, hr[None] + alphas[:, None, None] * delta[None], calls

    def compute_P_forward(self, ids, ref, layer, steps, budget=2 << 30):
        h, delta, x, calls = self.path(ids, ref, layer, steps)
        t = len(ids)
        head = self.head(calls, layer)
        eye = torch.eye(t, dtype=F32)

        def one(v):
            return torch.func.jvp(head, (x,), (v,))[1]

        s = self.shape
        per_dir = steps * t * (3 * s["ffn"] + 10 * max(s["hidden"], s["q_width"], s["qkv_width"]) +
                               3 * s["heads"] * t) * 4
        chunk = max(1, min(t, budget // per_dir))
        cols = []
        t0 = time.perf_counter()
        with torch.no_grad():
            for i0 in range(0, t, chunk):
                i1 = min(i0 + chunk, t)
                v = eye[i0:i1, :, None] * delta[None]
                v = v[:, None].expand(i1 - i0, steps, t, x.shape[-1])
                cols.append(torch.func.vmap(one)(v).mean(1))
        self.pass_time += time.perf_counter() - t0
        with torch.no_grad():
            e = head(h[None])[0]
        return torch.cat(cols).T, e

    def compute_P_reverse(self, ids, ref, layer, steps):
        h, delta, x, calls = self.path(ids, ref, layer, steps)
        head = self.head(calls, layer)
        t0 = time.perf_counter()
        x = x.requires_grad_(True)
        with torch.enable_grad():
            e = head(x)
        d_out, chunk = e.shape[1], args.reverse_chunk
        P = torch.empty(d_out, len(ids))
        for d0 in range(0, d_out, chunk):
            d1 = min(d0 + chunk, d_out)
            cot = torch.zeros(d1 - d0, *e.shape)
            cot[torch.arange(d1 - d0), :, torch.arange(d0, d1)] = 1.0
            if chunk == 1:
                (g,) = torch.autograd.grad(e, x, grad_outputs=cot[0], retain_graph=d1 < d_out)
                g = g[None]
            else:
                (g,) = torch.autograd.grad(e, x, grad_outputs=cot, retain_graph=d1 < d_out, is_grads_batched=True)
            P[d0:d1] = (g.sum(1) / steps * delta[None]).sum(-1)
        self.pass_time += time.perf_counter() - t0
        with torch.no_grad():
            e1 = head(h[None])[0]
        return P, e1

    def explain(self, a, b, layer, steps, reverse):
        fn = self.compute_P_reverse if reverse else self.compute_P_forward
        self.pass_time = 0.0
        (ids_a, ref_a), (ids_b, ref_b) = self.features(a), self.features(b)
        P_a, e_a = fn(ids_a, ref_a, layer, steps)
        P_b, e_b = fn(ids_b, ref_b, layer, steps)
        A = (P_a.T @ P_b / (e_a.norm() * e_b.norm())).double().numpy()
        return A, self.pass_time


def model_shape(cfg, dense):
    if cfg.model_type == "t5":
        h, nq, nkv, d, f, gated = cfg.d_model, cfg.num_heads, cfg.num_heads, cfg.d_kv, cfg.d_ff, cfg.is_gated_act
        layers = cfg.num_layers
    else:
        h, nq, f, layers = cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.num_hidden_layers
        nkv = getattr(cfg, "num_key_value_heads", None) or nq
        d = getattr(cfg, "head_dim", None) or h // nq
        gated = True
    return {"hidden": h, "heads": nq, "kv_heads": nkv, "head_dim": d, "ffn": f, "gated": gated, "layers": layers,
            "q_width": nq * d, "qkv_width": (nq + 2 * nkv) * d, "dense": dense, "model_type": cfg.model_type}


def flops(s, layers, t, n, d_out, mean_pooling):
    """GFLOP of one text's pass through `layers` layers, N steps, T tokens (GEMMs and attention
    products, a multiply-add = 2 flops; norms, activations, rotary, softmax left out), as
    src/net/flops.rs counts: (b) the plain path with torch's widths (K/V at the KV heads' width);
    (s) simattr's arithmetic with its rules (K/V repeated to the query heads' width at load; a
    pre-norm first layer's QKV on the N·T step rows; the pooled output rewrite only for a block
    ending in a LayerNorm under mean pooling: ModernBERT); (a) primal + N·D cotangent sequences."""
    h, f, w = s["hidden"], s["ffn"], s["q_width"]
    ffn_in = f * (2 if s["gated"] else 1)
    gemm_torch = 2.0 * (h * s["qkv_width"] + w * h + h * ffn_in + f * h)
    gemm_simattr = 2.0 * (h * 3 * w + w * h + h * ffn_in + f * h)
    dense_row = sum(2.0 * i * o for i, o in s["dense"])
    L, T, N = float(layers), float(t), float(n)

    def plain(gemm, seqs):
        primal = L * (N * T * gemm + N * 4 * T * T * w) + N * dense_row
        deriv = L * (seqs * T * gemm + seqs * 8 * T * T * w) + seqs * dense_row
        return primal, deriv

    pb, tb = plain(gemm_torch, N * T)
    ps, ts = plain(gemm_simattr, N * T)
    if layers > 0:
        ts -= (N * T * T - N * T) * 2.0 * h * 3 * w  # pre-norm first layer: QKV on step rows
        if s["model_type"] == "modernbert" and mean_pooling:
            ps += 2.0 * N * T * f * h
            ts -= (N * T * T - N * T) * 2.0 * f * h - N * T * T * 6.0 * f
    pa, ta = plain(gemm_torch, N * d_out)
    return {"b": (pb + tb) / 1e9, "s": (ps + ts) / 1e9, "a": (pa + ta) / 1e9}


def machine():
    x, w = torch.randn(7200, 768), torch.randn(768, 3072) * 0.05
    best = float("inf")
    for _ in range(7):
        t0 = time.perf_counter()
        torch.mm(x, w)
        best = min(best, time.perf_counter() - t0)
    return {**provenance(args.simattr, args.threads),
            "torch_gemm_gflops_7200x768x3072": 2.0 * 7200 * 768 * 3072 / best / 1e9,
            "simattr_path": args.simattr, "date": time.strftime("%Y-%m-%d")}


EMBED_TEXTS = ["A man is playing a guitar on the street.", "Someone plays an instrument in the park.",
               "The cat sits quietly on the warm kitchen mat.", "A woman is playing the piano at home."]


def check_embed(family, model_dir, tm, tmp):
    """simattr embed against encode (normalized, f32), on four texts."""
    wall, rss, data, rc, err, cmd = run_simattr(["embed", "--model", model_dir, *EMBED_TEXTS], tmp)
    enc = tm.st.encode(EMBED_TEXTS, convert_to_numpy=True, show_progress_bar=False)
    res = {"cmd": " ".join(cmd), "rc": rc, "wall_s": wall, "rss_mb": rss, "finite": bool(np.isfinite(enc).all())}
    raw = torch.stack([tm.st_embedding(t) for t in EMBED_TEXTS])
    res["raw_norms"] = [float(v) for v in raw.norm(dim=-1)]
    res["cos_01"] = float(np.dot(enc[0], enc[1]))
    res["cos_02"] = float(np.dot(enc[0], enc[2]))
    if rc != 0:
        res["error"] = err.strip()
        log(f"  simattr embed FAILED ({rc}): {err.strip()}")
        return res
    sa = np.array(data["embeddings"], dtype=np.float64)
    res["max_abs_diff"] = float(np.abs(sa - enc.astype(np.float64)).max())
    log(f"  embed: max|simattr - encode| = {res['max_abs_diff']:.1e} (norms of e before Normalize "
        f"{', '.join(f'{v:.3g}' for v in res['raw_norms'])}; cos(t0,t1) {res['cos_01']:.3f}, "
        f"cos(t0,t2) {res['cos_02']:.3f}); simattr embed {wall:.2f} s, {rss:.0f} MB")
    if res["max_abs_diff"] > 1e-4:
        log(f"  WARNING: simattr embed differs from encode by {res['max_abs_diff']:.1e} > 1e-4")
    return res


def attribution(family, model_dir, tm, pairs, tmp):
    L = len(tm.layers) - 1
    N = args.steps
    s = tm.shape
    d_out = s["dense"][-1][1] if s["dense"] else s["hidden"]
    impls = {"s": "(s) simattr explain", "b": "(b) PyTorch jvp+vmap, f32"}
    if args.with_primal_f32:
        impls["d"] = "(d) simattr explain --primal f32"
    do_rev = family in REVERSE and args.reverse_runs > 0
    REV_STEPS = REVERSE.get(family, N)
    if do_rev:
        impls["a"] = "(a) PyTorch reverse (per dimension), f32" + (
            f", at {REV_STEPS} steps, time × {N}/{REV_STEPS}" if REV_STEPS != N else "")
    variant = {"s": [], "d": ["--primal", "f32"], "e": ["--mode", "reverse"]}

    def simattr_explain(key, a, b, steps):
        return run_simattr(["explain", "--model", model_dir, *variant[key], "--layer", str(L), "--steps", str(steps),
                            a, b], tmp)

    results = []
    log(f"  warm-up (5 steps)")
    for key in impls:
        if key in variant:
            w = simattr_explain(key, *pairs[0], 5)
            if w[3] != 0:
                log(f"  simattr explain FAILED ({w[3]}): {' '.join(w[5])}\n{w[4]}")
                return {"error": w[4].strip(), "cmd": " ".join(w[5])}
        elif key == "b":
            tm.explain(*pairs[0], L, 5, reverse=False)
        elif key == "a":
            tm.explain(*pairs[0], L, min(REV_STEPS, 2), reverse=True)
    for n_pair, (a, b) in enumerate(pairs, 1):
        times = {k: [] for k in impls}
        passes = {k: [] for k in impls}
        rss = {k: [] for k in impls}
        cpu = {k: [] for k in impls}
        loads = []
        A, simattr_json = {}, None
        for r in range(args.runs):
            loads.append(loadavg())
            for key in ("s", "d", "b", "a"):
                if key not in impls:
                    continue
                if key == "a" and (r >= args.reverse_runs or n_pair > args.reverse_pairs):
                    continue
                if key in variant:
                    wall, mb, data, rc, err, cmd = simattr_explain(key, a, b, N)
                    explain_cpu = RUSAGE["cpu"]  # before the embed process below replaces it
                    if rc != 0:
                        sys.exit(f"simattr failed ({rc}): {' '.join(cmd)}\n{err}")
                    noise = [l for l in err.splitlines() if l.strip() and not l.startswith("wrote ")]
                    if noise:
                        log("  simattr stderr: " + " | ".join(noise)[:300])
                    A[key] = np.array(data["attributions"])
                    simattr_json = data if key == "s" else simattr_json
                    t_fixed, _, _, rc2, err2, _ = run_simattr(["embed", "--model", model_dir, a, b], tmp)
                    times[key].append(wall)
                    cpu[key].append(explain_cpu)
                    rss[key].append(mb)
                    passes[key].append(max(wall - t_fixed, 1e-9))
                else:
                    rev = key == "a"
                    steps = REV_STEPS if rev else N
                    t0, c0 = time.perf_counter(), cpu_seconds()
                    A[key], p = tm.explain(a, b, L, steps, reverse=rev)
                    wall = time.perf_counter() - t0
                    cpu[key].append(cpu_seconds() - c0)
                    scale = N / steps  # (a) at fewer steps: only its pass scales with the steps
                    times[key].append(wall - p + p * scale)
                    passes[key].append(p * scale)
                    cpu[key][-1] *= times[key][-1] / wall  # scaled as the wall time
                log(f"  pair {n_pair} run {r + 1}/{args.runs} {impls[key]}: {times[key][-1]:.3f} s, "
                    f"cpu {cpu[key][-1] or 0:.1f} s, load {loads[-1]} "
                    f"(pass {passes[key][-1]:.3f} s{f', {rss[key][-1]:.0f} MB' if rss.get(key) else ''})")
        if n_pair == 1:
            A_s_pair1 = A["s"]
        if "a" in A and REV_STEPS != N:
            A["b_rev_steps"], _ = tm.explain(a, b, L, REV_STEPS, reverse=False)
        ref = A["b"]
        errs = {}
        for x, y in (("b", "s"), ("b", "d"), ("s", "d")):
            if x in A and y in A:
                errs[f"{x}-{y}"] = rel(A[x], A[y], ref)
        if "a" in A:
            errs["a-b" + ("" if REV_STEPS == N else f"@{REV_STEPS}")] = rel(
                A["a"], A["b" if REV_STEPS == N else "b_rev_steps"], A["b" if REV_STEPS == N else "b_rev_steps"])
            if REV_STEPS == N:
                errs["a-s"] = rel(A["a"], A["s"], ref)
        for name, e in errs.items():
            if e > 1e-4:
                log(f"  WARNING: max|ΔA|/max|A| {name} = {e:.1e} > 1e-4")
        ids_a, ref_a = tm.features(a)
        ids_b, ref_b = tm.features(b)
        ids_ok = (simattr_json["text_a"]["ids"] == ids_a and simattr_json["text_b"]["ids"] == ids_b)
        refs_ok = (simattr_json["text_a"]["reference_ids"] == ref_a and simattr_json["text_b"]["reference_ids"] == ref_b)
        if not ids_ok or not refs_ok:
            log(f"  WARNING: simattr's ids / reference ids differ from sentence-transformers': ids {ids_ok}, "
                f"references {refs_ok}: {simattr_json['text_a']['reference_ids']} vs {ref_a}")
        gf = {"b": 0.0, "s": 0.0, "a": 0.0}
        for t in (len(ids_a), len(ids_b)):
            for k, v in flops(s, len(tm.layers) - L, t, N, d_out, tm.pooling == "mean").items():
                gf[k] += v
        gf["d"] = gf["s"]
        med_pass = {k: statistics.median(v) for k, v in passes.items() if v}
        rates = {k: gf[k] / med_pass[k] for k in med_pass}
        rates["s_plain_equivalent"] = gf["b"] / med_pass["s"]
        results.append({"pair": n_pair, "a": a, "b": b, "layer": L, "steps": N, "shape": [len(ids_a), len(ids_b)],
                        "tokens_a": simattr_json["tokens_a"], "tokens_b": simattr_json["tokens_b"],
                        "mode": simattr_json.get("mode"), "ids_match": ids_ok, "reference_ids_match": refs_ok,
                        "reference_ids_a": ref_a, "reference_ids_b": ref_b,
                        "times": {k: stats(v) for k, v in times.items() if v},
                        "pass_times": {k: stats(v) for k, v in passes.items() if v},
                        "rss_mb": {k: stats(v) for k, v in rss.items() if v},
                        "cpu_s": {k: stats(v) for k, v in cpu.items() if v and None not in v},
                        "loadavg_1min": loads,
                        "gflop": gf, "gflop_per_s": rates, "max_rel_diff": errs,
                        "completeness_error": simattr_json.get("completeness_error"),
                        "identity_error": [simattr_json["text_a"].get("relative_identity_error"),
                                           simattr_json["text_b"].get("relative_identity_error")]})
    out = {"impls": impls, "pairs": results}
    if args.with_mode_reverse:
        wall, mb, data, rc, err, cmd = simattr_explain("e", *pairs[0], N)
        out["mode_reverse"] = {"cmd": " ".join(cmd), "rc": rc, "wall_s": wall, "rss_mb": mb,
                               "max_rel_diff_vs_s": rel(np.array(data["attributions"]), A_s_pair1, A_s_pair1)
                               if rc == 0 else None, "error": err.strip() if rc else None}
        log(f"  simattr --mode reverse, pair 1: {wall:.2f} s, {mb:.0f} MB")
    return out


def long_text(family, model_dir, tm, tmp):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    words = []
    i = 0
    while len(tok.encode(" ".join(words)).ids) < args.long_tokens:
        words += LONG_SENTENCES[i % len(LONG_SENTENCES)].split()
        i += 1
    while len(tok.encode(" ".join(words)).ids) > args.long_tokens:
        words.pop()
    text = " ".join(words)
    T = len(tok.encode(text).ids)
    L = len(tm.layers) - 1
    limit = tm.cfg.max_position_embeddings if hasattr(tm.cfg, "max_position_embeddings") and \
        tm.cfg.model_type != "t5" else None
    res = {"tokens": T, "short_tokens": len(tok.encode(SHORT_TEXT).ids), "layer": L, "steps": args.long_steps,
           "max_position_embeddings": limit, "words": len(words)}
    if limit is not None and T > limit:
        res["skipped"] = f"T = {T} > max_position_embeddings {limit}"
        return res
    wall, mb, data, rc, err, cmd = run_simattr(["explain", "--model", model_dir, "--layer", str(L), "--steps",
                                                str(args.long_steps), text, SHORT_TEXT], tmp)
    res.update({"cmd": " ".join(cmd[:-2]) + " LONG SHORT", "rc": rc, "wall_s": wall, "rss_mb": mb,
                "stderr": err.strip()[-600:]})
    if rc == 0:
        res["simattr_tokens"] = len(data["tokens_a"])
        res["mode"] = data.get("mode")
        res["truncated_from"] = data["text_a"].get("truncated_from")
    log(f"  long text {T} + {res['short_tokens']} tokens, layer {L}, {args.long_steps} step(s): "
        f"rc {rc}, {wall:.1f} s, {mb:.0f} MB" + (f"\n{err.strip()}" if rc else ""))
    return res


def load_torch(model_dir):
    """sdpa first; eager where sdpa cannot run under jvp + vmap (compare.py's rule)."""
    for impl in ("sdpa", "eager"):
        try:
            tm = Torch(model_dir, impl)
            with torch.no_grad():
                L = len(tm.layers) - 1
                tm.explain("probe text here", "another probe", L, 2, reverse=False)
            return tm
        except Exception as exc:  # noqa: BLE001
            log(f"  attn_implementation={impl} does not work with jvp + vmap: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:160]}")
    sys.exit("no attention implementation works with jvp + vmap")


def main():
    if args.report:
        res = None
        for path in args.report.split(","):
            with open(path, encoding="utf-8") as f:
                part = json.load(f)
            if res is None:
                res = part
            else:
                res["families"].update(part["families"])
        report(res)
        return
    if not os.path.isfile(args.simattr):
        sys.exit(f"{args.simattr} not found (pass --simattr)")
    if args.pairs:
        with open(args.pairs, encoding="utf-8") as f:
            pairs = [(d["a"], d["b"]) for d in map(json.loads, filter(str.strip, f))]
    else:
        pairs = PAIRS
    if args.pair_count:
        pairs = pairs[:args.pair_count]
    res = {"machine": machine(), "settings": dict(vars(args)), "families": {}}
    log(f"machine: {res['machine']}")
    with tempfile.TemporaryDirectory() as tmp:
        for family in FAMS:
            t_fam = time.perf_counter()
            log(f"== {family}")
            model_dir = folder(family)
            tm = load_torch(model_dir)
            log(f"  (b) attn_implementation={tm.attn}; shape {tm.shape}")
            fam = {"folder": model_dir, "name": SPECS[family]["name"], "shape": tm.shape, "attn": tm.attn,
                   "config": {k: v for k, v in tm.cfg.to_dict().items()
                              if k in ("vocab_size", "max_position_embeddings", "layer_types", "rope_parameters",
                                       "sliding_window", "local_attention", "global_attn_every_n_layers",
                                       "query_pre_attn_scalar", "use_bidirectional_attention",
                                       "relative_attention_num_buckets", "relative_attention_max_distance",
                                       "feed_forward_proj")}}
            # the head split at the last layer must be sentence-transformers' own embedding
            L = len(tm.layers) - 1
            ids, _ = tm.features(pairs[0][0])
            h, calls = tm.capture(ids, L)
            with torch.no_grad():
                e_split = tm.head(calls, L)(h[None])[0]
            e_st = tm.st_embedding(pairs[0][0])
            fam["split_vs_st"] = float((e_split - e_st).abs().max() / e_st.abs().max())
            log(f"  layers >= {L} driven alone vs sentence-transformers: {fam['split_vs_st']:.1e}")
            fam["embed"] = check_embed(family, model_dir, tm, tmp)
            if fam["embed"].get("rc", 1) == 0 and not args.skip_attribution:
                fam["explain"] = attribution(family, model_dir, tm, pairs, tmp)
            if args.long:
                fam["long"] = long_text(family, model_dir, tm, tmp)
            fam["seconds"] = time.perf_counter() - t_fam
            res["families"][family] = fam
            del tm
            if args.json:  # after every family, so that a later failure keeps the earlier ones
                with open(args.json, "w", encoding="utf-8") as f:
                    json.dump(res, f, indent=1, ensure_ascii=False, default=str)
    report(res)
    log(f"total {time.perf_counter() - T_START:.0f} s")


def report(res):
    m = res["machine"]
    print(f"Machine: {m['cpu']}, {m['cores']} cores; {m['threads']} threads for every implementation; {m['date']}  ")
    print(f"torch {m['torch']}, transformers {m['transformers']}, sentence-transformers {m['sentence_transformers']}; "
          f"{m['simattr']} ({m['simattr_path']}, repository at {m['commit']})  ")
    print(f"explain at the last layer, {args.steps} right-Riemann steps, cos; medians of {args.runs} alternating rounds; "
          f"(s) is the whole process, (a)/(b) exclude the model load; torch's f32 matmul at 7200×768×3072: "
          f"{m['torch_gemm_gflops_7200x768x3072']:.0f} GFLOP/s (best of 7)\n")
    for family, fam in res["families"].items():
        e = fam["embed"]
        print(f"### {fam['name']} ({fam['shape']['model_type']}; (b) attention: {fam['attn']})\n")
        print(f"`simattr embed` vs `encode`: " + (f"max |Δ| {e['max_abs_diff']:.1e}" if "max_abs_diff" in e
                                                 else f"FAILED: {e.get('error')}") +
              f"; layers ≥ L alone vs sentence-transformers: {fam['split_vs_st']:.1e}\n")
        ex = fam.get("explain")
        if ex and "pairs" in ex:
            print("| pair | T_a×T_b | implementation | median s | min–max s | vs (s) | CPU s | pass s | GFLOP | "
                  "GFLOP/s | peak RSS MB | max\\|ΔA\\|/max\\|A\\| |")
            print("|---|---|---|---|---|---|---|---|---|---|---|---|")
            for p in ex["pairs"]:
                sm = p["times"]["s"]["median"]
                for key, name in ex["impls"].items():
                    if key not in p["times"]:
                        continue
                    t = p["times"][key]
                    ratio = "1" if key == "s" else f"{t['median'] / sm:.2f}×"
                    rate = p["gflop_per_s"][key]
                    rate_s = f"{rate:.0f}" + (f" (plain-eq. {p['gflop_per_s']['s_plain_equivalent']:.0f})"
                                              if key == "s" else "")
                    errs = ", ".join(f"{k}: {v:.1e}" for k, v in p["max_rel_diff"].items()
                                     if (k.startswith("a-") if key == "a" else k.endswith("-" + key)))
                    rss = f"{p['rss_mb'][key]['median']:.0f}" if key in p["rss_mb"] else "—"
                    cpu_s = f"{p['cpu_s'][key]['median']:.1f}" if key in p.get("cpu_s", {}) else "—"
                    print(f"| {p['pair']} | {p['shape'][0]}×{p['shape'][1]} | {name} | {t['median']:.3f} | "
                          f"{t['min']:.3f}–{t['max']:.3f} | {ratio} | {cpu_s} | {p['pass_times'][key]['median']:.3f} | "
                          f"{p['gflop'][key]:.1f} | {rate_s} | {rss} | {errs or '—'} |")
            print()
            for p in ex["pairs"]:
                print(f"pair {p['pair']}: {p['a']!r} ({p['shape'][0]} tokens) / {p['b']!r} ({p['shape'][1]}); "
                      f"mode {p['mode']}; ids match {p['ids_match']}, reference ids match {p['reference_ids_match']}  ")
            print()
        elif ex:
            print(f"explain FAILED: {ex.get('error')}\n")
        mr = (ex or {}).get("mode_reverse")
        if mr:
            print(f"`--mode reverse`, pair 1: " + (f"{mr['wall_s']:.2f} s, peak RSS {mr['rss_mb']:.0f} MB, "
                                                     f"max|ΔA|/max|A| against (s) {mr['max_rel_diff_vs_s']:.1e}"
                                                     if mr["rc"] == 0 else f"FAILED: {mr['error']}") + "\n")
        lt = fam.get("long")
        if lt:
            print(f"long text: {lt.get('tokens')} + {lt.get('short_tokens')} tokens, layer {lt['layer']}, "
                  f"{lt['steps']} step(s): " + (f"{lt['wall_s']:.1f} s, peak RSS {lt['rss_mb']:.0f} MB, rc {lt['rc']}"
                                                 if "wall_s" in lt else lt.get("skipped", "")) + "\n")


if __name__ == "__main__":
    main()

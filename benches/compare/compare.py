#!/usr/bin/env python3
"""Side-by-side benchmark: simattr vs PyTorch for integrated-Jacobian attributions and embeddings.

  (a) PyTorch reverse mode, float32, one backward pass per output dimension (the xsbert way)
  (b) PyTorch forward mode, float32, torch.func.jvp + vmap over steps x token directions
  (c) `simattr explain` as a whole process (model load included): f32 tangents, f64 primal states
  (d) with --with-primal-f32: `simattr explain --primal f32`, everything in f32 as in (a) and (b)
  (e) with --with-reverse: `simattr explain --mode reverse`, simattr's reverse mode, the same
      work as (a) (one cotangent per output dimension) with simattr's structure
  (f) with --with-wgpu: `simattr explain --backend wgpu`, the WGSL shaders on the default
      adapter (--wgpu-device N for another; on a machine without a GPU, Mesa's lavapipe)
  (g) with --with-wgpu-f16: `simattr explain --backend wgpu --precision f16`

and `simattr embed` (whole process) vs sentence-transformers `encode` for a batch of 32
sentences. Timings are medians over --runs, the implementations alternating run by run.
BERT (all-MiniLM-L6-v2), MPNet (all-mpnet-base-v2) and RoBERTa-family models; the arithmetic
of each attribution pass is counted as src/net/flops.rs counts it, and printed as GFLOP/s.
Not part of CI; see README.md in this folder.
"""
import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.environ.get("SIMATTR_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "simattr")

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--model", default="all-MiniLM-L6-v2",
                help="sentence-transformers folder, or the name of a model in the simattr cache")
ap.add_argument("--simattr", default=os.path.join(REPO, "target", "release", "simattr"))
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--layers", help="comma-separated layers, e.g. 0,3,5 (each with --steps steps)")
ap.add_argument("--steps", type=int, help="steps for every layer of --layers (default 50)")
ap.add_argument("--settings", help="LAYER:STEPS,... e.g. 11:50,9:50,6:20 (instead of --layers/--steps); "
                "default 0:50 for BERT models, 11:50,9:50,6:20 for MPNet and RoBERTa models")
ap.add_argument("--pairs", help='JSONL file, one {"a": ..., "b": ...} per line')
ap.add_argument("--skip-reverse", action="store_true", help="skip (a), the slow one")
ap.add_argument("--with-primal-f32", action="store_true",
                help="also time (d), `simattr explain --primal f32` (f32 primal states, as (a) and (b) have)")
ap.add_argument("--with-reverse", action="store_true",
                help="also time (e), `simattr explain --mode reverse`, against (a)")
ap.add_argument("--with-wgpu", action="store_true",
                help="also time (f), `simattr explain --backend wgpu` (f32 storage)")
ap.add_argument("--with-wgpu-f16", action="store_true",
                help="also time (g), `simattr explain --backend wgpu --precision f16` (needs SHADER_F16)")
ap.add_argument("--wgpu-device", type=int, help="the adapter of (f) and (g), by its number in `simattr devices`")
ap.add_argument("--reverse-runs", type=int,
                help="timed runs of (a) (default --runs): the first R of the --runs alternations include it")
ap.add_argument("--reverse-chunk", type=int, default=64,
                help="cotangents per batched backward call in (a); 1 = one autograd.grad call per dimension")
ap.add_argument("--embed-batch", type=int, default=32)
ap.add_argument("--ceiling", type=float, default=210.0,
                help="f32 GEMM ceiling in GFLOP/s for the share column (docs/performance.md: ≈ 120–210 on the project machine)")
ap.add_argument("--json", help="also write the results here")
args = ap.parse_args()
if not os.path.isdir(args.model) and os.path.isdir(os.path.join(CACHE, "models", args.model)):
    args.model = os.path.join(CACHE, "models", args.model)
if args.reverse_runs is None:
    args.reverse_runs = args.runs
if args.reverse_runs <= 0:
    args.skip_reverse = True

# Set before torch is imported so that its OpenMP pool starts at the right size; the child
# processes inherit them (simattr itself gets --threads).
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)
os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                  HF_HUB_DISABLE_PROGRESS_BARS="1")
T_START = time.perf_counter()
import warnings  # noqa: E402
warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation noise from imports

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import log, provenance, rel, stats  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from transformers import AutoModel  # noqa: E402

torch.set_num_threads(args.threads)
transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()
F32 = torch.float32

# Per model family: the default pairs and LAYER:STEPS settings. BERT: the MiniLM table's pair
# (9 and 7 tokens). MPNet / RoBERTa: the rows, layers 11 and 9 at 50 steps and layer 6 at
# 20 steps, on pairs of 12 + 12 tokens each (all-mpnet-base-v2's tokenizer, <s> and </s> included).
FAMILY_DEFAULTS = {
    "bert": ([("A man is playing a guitar.", "Someone plays an instrument.")], "0:50"),
    "mpnet": ([("A man is playing a guitar on the stage.", "Someone plays an instrument in front of a crowd."),
               ("A woman is slicing tomatoes in a small kitchen.", "Someone is cutting vegetables for a salad at home.")],
              "11:50,9:50,6:20"),
}
FAMILY_DEFAULTS["roberta"] = FAMILY_DEFAULTS["mpnet"]
FAMILIES = {"bert": "bert", "mpnet": "mpnet", "roberta": "roberta", "xlm-roberta": "roberta"}

SENTENCES = [  # 32 varied sentences of 6-20 words for the embedding throughput test
    "A man is playing a guitar on the street corner.",
    "Someone plays an instrument for a small crowd.",
    "The cat sits quietly on the warm kitchen mat.",
    "A dog is lying on the rug next to the fireplace.",
    "Children are playing football in the park after school.",
    "Kids play outside in the bright afternoon sunshine.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "Investors worried about inflation sold their shares on Monday morning.",
    "She baked a chocolate cake for her grandmother's eightieth birthday party.",
    "The train to Berlin was delayed by almost two hours.",
    "Heavy rain caused flooding in several low-lying neighbourhoods overnight.",
    "Scientists discovered a new species of frog in the Amazon rainforest.",
    "He forgot his umbrella and got soaked on the way home.",
    "The committee will announce its decision early next week.",
    "A woman is slicing tomatoes with a sharp knife.",
    "The new smartphone has a larger screen and a faster processor.",
    "Please remember to turn off the lights when you leave the office.",
    "The museum opens at nine and closes at six on weekdays.",
    "Two hikers reached the summit just before the storm arrived.",
    "Our flight was cancelled, so we spent the night at the airport.",
    "The teacher explained the theorem with a simple drawing on the board.",
    "A group of musicians performed jazz standards in the hotel lobby.",
    "Regular exercise and a balanced diet improve long-term health.",
    "The software update fixed several bugs but introduced a new one.",
    "Farmers are worried that the dry summer will ruin the harvest.",
    "The little boy laughed as the puppy chased its own tail.",
    "Electric cars are becoming cheaper and more popular every year.",
    "The old bridge over the river was finally repaired last spring.",
    "She reads a novel on the bus every morning.",
    "The restaurant serves fresh seafood caught by local fishermen.",
    "A sudden power outage left the whole city in darkness for hours.",
    "The orchestra rehearsed the symphony three times before the concert.",
]


# The simattr implementations: explain's arguments beyond --layer/--steps, by key.
SIMATTR_VARIANTS = {"c": [], "d": ["--primal", "f32"], "e": ["--mode", "reverse"],
                    "f": ["--backend", "wgpu"], "g": ["--backend", "wgpu", "--precision", "f16"]}
for key in "fg":
    if args.wgpu_device is not None:
        SIMATTR_VARIANTS[key] += ["--device", str(args.wgpu_device)]


def embed_variant(key):
    """The `simattr embed` arguments matching implementation `key` (embed has no --mode)."""
    variant = SIMATTR_VARIANTS[key]
    return [] if key in "de" else variant


class Torch:
    """The model's transformer in float32, driven layer by layer as generate_golden.py does.

    Families (config.json's model_type): BERT (positions 0..T, token type 0); MPNet (positions
    from the ids, pad + cumsum(id != pad) * (id != pad), so real tokens count from pad + 1 and
    every <pad> of the reference gets position pad; no token types; a relative position bias
    computed once per length by the encoder and passed to every layer); RoBERTa / XLM-R
    (positions as MPNet, token type 0, layers as BERT). Pooling follows 1_Pooling/config.json."""

    def __init__(self, model_dir, st):
        self.tok_fn = getattr(st, "preprocess", None) or st.tokenize
        self.tok = st.tokenizer
        self.pooling = pooling_mode(model_dir)
        self.model = None
        self._bias = {}
        self.pass_time = 0.0  # seconds spent in the derivative passes of layers >= L (see explain)
        for impl in ("sdpa", "eager"):  # sdpa first; eager if sdpa cannot run under jvp + vmap
            try:
                self.model = AutoModel.from_pretrained(model_dir, attn_implementation=impl).to(F32).eval()
            except (ValueError, ImportError) as exc:  # e.g. MPNet: its attention has no sdpa variant
                log(f"attn_implementation={impl} not available: {str(exc).splitlines()[0][:120]}")
                continue
            # Inference: no parameter gradients, so (a) keeps only what the input gradient needs.
            self.model.requires_grad_(False)
            self.attn = impl
            cfg = self.model.config
            self.family = FAMILIES.get(cfg.model_type)
            if self.family is None:
                sys.exit(f"model_type {cfg.model_type!r}: only {', '.join(FAMILIES)} are driven layer by layer")
            self.layers = list(self.model.encoder.layer)
            self.hidden, self.inter, self.heads = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads
            self.pad = self.tok.pad_token_id
            emb_params = inspect.signature(self.model.embeddings.forward).parameters
            self.token_types = "token_type_ids" in emb_params
            try:
                with torch.no_grad():
                    self.compute_P_forward(self.ids("probe text"), 0, 2)
                break
            except Exception as exc:  # noqa: BLE001 - any failure means: try the next implementation
                log(f"attn_implementation={impl} does not work with jvp + vmap: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
        else:
            sys.exit("no attention implementation of this transformers version works with jvp + vmap")
        self.pass_time = 0.0

    def ids(self, text):
        return self.tok_fn([text])["input_ids"][0].tolist()

    def reference_ids(self, n):
        return [self.tok.cls_token_id] + [self.tok.pad_token_id] * (n - 2) + [self.tok.sep_token_id]

    def position_ids(self, ids):
        if self.family == "bert":
            return torch.arange(ids.shape[1])[None]
        real = (ids != self.pad).long()  # transformers' create_position_ids_from_input_ids
        return torch.cumsum(real, dim=1) * real + self.pad

    def position_bias(self, t):
        """MPNet: the [1, heads, T, T] relative position bias that MPNetEncoder.forward computes
        once (compute_position_bias) and passes to every layer; it depends on T only. None otherwise."""
        if self.family != "mpnet":
            return None
        if t not in self._bias:
            with torch.no_grad():
                self._bias[t] = self.model.encoder.compute_position_bias(torch.zeros(1, t, 1))
        return self._bias[t]

    def run_layers(self, h, start, end):
        # No attention mask: every token attends (single texts, no padding).
        bias = self.position_bias(h.shape[-2])
        for layer in self.layers[start:end]:
            out = layer(h) if bias is None else layer(h, position_bias=bias)
            h = out[0] if isinstance(out, (tuple, list)) else out
        return h

    def hidden_at(self, ids, layer):
        ids = torch.tensor([ids])
        kw = {"token_type_ids": torch.zeros_like(ids)} if self.token_types else {}
        with torch.no_grad():
            h = self.model.embeddings(input_ids=ids, position_ids=self.position_ids(ids), **kw)
            return self.run_layers(h, 0, layer)

    def pool(self, h):
        if self.pooling == "cls":
            return h[..., 0, :]
        if self.pooling == "max":
            return h.amax(-2)
        return h.mean(-2)

    def embedding(self, ids):
        return self.pool(self.hidden_at(ids, len(self.layers))[0])

    def path(self, ids, layer, steps):
        """Δ (T x H) and the right-Riemann points h(r) + (k/N) Δ, k = 1..N (N x T x H)."""
        h = self.hidden_at(ids, layer)[0]
        hr = self.hidden_at(self.reference_ids(len(ids)), layer)[0]
        delta = h - hr
        alphas = torch.arange(1, steps + 1, dtype=F32) / steps
        return delta, hr[None] + alphas[:, None, None] * delta[None]

    def head(self, layer):
        return lambda x: self.pool(self.run_layers(x, layer, len(self.layers)))

    def compute_P_reverse(self, ids, layer, steps):
        """(a) P (D x T): one backward pass of Σ_k E[k, d] per output dimension d, --reverse-chunk
        of them per autograd.grad call via is_grads_batched (vmap over the backward)."""
        delta, x = self.path(ids, layer, steps)
        t0 = time.perf_counter()
        x = x.requires_grad_(True)
        with torch.enable_grad():
            e = self.head(layer)(x)  # N x D
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
                (g,) = torch.autograd.grad(e, x, grad_outputs=cot, retain_graph=d1 < d_out,
                                           is_grads_batched=True)
            # E[k, d] depends on point k only, so summing the rows over k gives Σ_k ∂E[k,d]/∂x_k.
            P[d0:d1] = (g.sum(1) / steps * delta[None]).sum(-1)
        self.pass_time += time.perf_counter() - t0
        return P

    def compute_P_forward(self, ids, layer, steps, budget=2 << 30):
        """(b) P (D x T): one jvp per token direction i (tangent Δ_i on row i of every point),
        vmapped over directions so that the primal runs once and the N·T tangents go through
        each layer as one batch. Directions are chunked only when the batch would exceed
        `budget` bytes (rough count: FFN + a few hidden-size buffers + attention scores)."""
        delta, x = self.path(ids, layer, steps)
        t = len(ids)
        eye = torch.eye(t, dtype=F32)
        head = self.head(layer)

        def one(v):
            return torch.func.jvp(head, (x,), (v,))[1]  # N x D

        per_dir = steps * t * (self.inter + 6 * x.shape[-1] + 3 * self.heads * t) * 4
        chunk = max(1, min(t, budget // per_dir))
        cols = []
        t0 = time.perf_counter()
        with torch.no_grad():
            for i0 in range(0, t, chunk):
                i1 = min(i0 + chunk, t)
                v = eye[i0:i1, :, None] * delta[None]  # (dirs x T x H): Δ_i on row i
                v = v[:, None].expand(i1 - i0, steps, t, x.shape[-1])  # same for every step
                cols.append(torch.func.vmap(one)(v).mean(1))  # dirs x D
        self.pass_time += time.perf_counter() - t0
        return torch.cat(cols).T

    def explain(self, a, b, layer, steps, reverse):
        """A (T_a x T_b) for cos, from the texts (tokenization included), and the seconds spent
        in the passes through layers >= L with derivatives (the rest: tokenization, the layers
        below L for text and reference, the embeddings, P_aᵀ P_b)."""
        fn = self.compute_P_reverse if reverse else self.compute_P_forward
        self.pass_time = 0.0
        ids_a, ids_b = self.ids(a), self.ids(b)
        P_a, P_b = fn(ids_a, layer, steps), fn(ids_b, layer, steps)
        scale = self.embedding(ids_a).norm() * self.embedding(ids_b).norm()
        return (P_a.T @ P_b / scale).double().numpy(), self.pass_time


def pooling_mode(model_dir):
    try:
        with open(os.path.join(model_dir, "1_Pooling", "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
    except OSError:
        return "mean"
    for key, mode in (("pooling_mode_mean_tokens", "mean"), ("pooling_mode_cls_token", "cls"),
                      ("pooling_mode_max_tokens", "max")):
        if cfg.get(key):
            return mode
    sys.exit(f"{model_dir}: pooling {cfg} is not mean, cls or max")


def attribution_flops(hidden, ffn, layers, t, n):
    """src/net/flops.rs, attribution_flops, line for line: (primal, tangents, plain_tangents) of one
    text's pass through `layers` layers with `n` steps and all `t` token directions; GEMMs and
    attention products only, a multiply-add = 2 flops. `tangents` is simattr's structured count,
    `plain_tangents` what a generic forward-mode autodiff (torch.func) does."""
    h, f, t, n, lf = float(hidden), float(ffn), float(t), float(n), float(layers)
    gemm_per_row = 2.0 * h * (3.0 * h + h + 2.0 * f)
    primal_rows = tangent_seqs = n * t
    tangent_rows = tangent_seqs * t
    primal = lf * (primal_rows * gemm_per_row + n * 4.0 * t * t * h)
    if layers > 0:
        primal += 2.0 * primal_rows * h * f
    plain_tangents = lf * (tangent_rows * gemm_per_row + tangent_seqs * 8.0 * t * t * h)
    if layers == 0:
        return primal, 0.0, plain_tangents
    first_qkv_saved = tangent_rows * 2.0 * h * 3.0 * h - t * 2.0 * h * 3.0 * h
    first_attention_saved = tangent_seqs * (8.0 * t * t * h - (4.0 * t + 7.0 * (t - 1.0)) * h)
    last_ffn_out_saved = (tangent_rows - tangent_seqs) * 2.0 * f * h - tangent_rows * 6.0 * f
    return primal, plain_tangents - first_qkv_saved - first_attention_saved - last_ffn_out_saved, plain_tangents


def reverse_pass_flops(hidden, ffn, layers, t, n, d_out, mean_pooling):
    """src/net/flops.rs, reverse_attribution_flops(...).done(), line for line: what
    `simattr explain --mode reverse` does for one text (the taped primal, x̂W and ΔWqkvᵀ, and the
    N·D cotangents without the last layer's output GEMM under mean pooling and without the
    attributed layer's Q/K/V GEMM)."""
    h, f, t, n, d, lf = float(hidden), float(ffn), float(t), float(n), float(d_out), float(layers)
    gemm_per_row = 2.0 * h * (3.0 * h + h + 2.0 * f)
    primal_rows, cot_seqs = n * t, n * d
    cot_rows = cot_seqs * t
    primal = lf * (primal_rows * gemm_per_row + n * 4.0 * t * t * h)
    plain = lf * (cot_rows * gemm_per_row + cot_seqs * 8.0 * t * t * h)
    if layers == 0:
        return primal
    primal += (2.0 * primal_rows * h * f if mean_pooling else 0.0) + 2.0 * t * h * 3.0 * h
    last_saved = cot_rows * (2.0 * h * f - 3.0 * (h + f)) if mean_pooling else 0.0
    first_saved = cot_rows * (2.0 * 3.0 * h * h - 2.0 * 3.0 * h)
    return primal + plain - last_saved - first_saved


def pass_flops(hidden, ffn, layers, t, n, d_out):
    """Flops per implementation for one text. (b): the plain path of flops.rs (primal + plain
    tangents). (c): what simattr does (primal + structured tangents). (a): the primal forward with
    autograd, then N·D cotangent sequences of T rows backwards; an input-only backward costs what
    the forward JVP costs per row (one GEMM per linear; dV, dP, dQ, dK = 8·T²·d per head), so the
    cotangents are plain_tangents · D / T."""
    primal, tangents, plain_tangents = attribution_flops(hidden, ffn, layers, t, n)
    h, f = float(hidden), float(ffn)
    fwd = layers * (n * t * 2.0 * h * (4.0 * h + 2.0 * f) + n * 4.0 * t * t * h)
    return {"a": fwd + plain_tangents * d_out / t, "b": primal + plain_tangents, "c": primal + tangents}


def torch_gemm_rate(rows, n_in, n_out):
    """Best of 7 torch f32 matmuls (rows x n_in) @ (n_in x n_out), in GFLOP/s."""
    x, w = torch.randn(rows, n_in), torch.randn(n_in, n_out) * 0.05
    best = float("inf")
    for _ in range(7):
        t0 = time.perf_counter()
        torch.mm(x, w)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * rows * n_in * n_out / best / 1e9


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def simattr(*argv, tmp):
    """Runs simattr (whole process) and returns the JSON it wrote."""
    out = os.path.join(tmp, "out.json")
    cmd = [args.simattr, "--threads", str(args.threads), *argv[:1], "--model", args.model,
           "--json", out, *argv[1:]]
    res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        sys.exit(f"simattr failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr}")
    with open(out, encoding="utf-8") as f:
        return json.load(f)


def machine():
    return provenance(args.simattr, args.threads)


def model_family(model_dir):
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        model_type = json.load(f).get("model_type")
    if model_type not in FAMILIES:
        sys.exit(f"{model_dir}: model_type {model_type!r} is none of {', '.join(FAMILIES)}")
    return FAMILIES[model_type]


def parse_settings(family):
    """[(layer, steps), ...] from --settings, else --layers/--steps, else the family's default."""
    if args.settings:
        spec = args.settings
    elif args.layers or args.steps:
        spec = ",".join(f"{L}:{args.steps or 50}" for L in (args.layers or "0").split(","))
    else:
        spec = FAMILY_DEFAULTS[family][1]
    try:
        return [(int(L), int(n)) for L, n in (item.split(":") for item in spec.split(","))]
    except ValueError:
        sys.exit(f"bad settings {spec!r}: expected LAYER:STEPS,... e.g. 11:50,9:50,6:20")


def main():
    if not os.path.isfile(args.simattr):
        sys.exit(f"{args.simattr} not found: run `cargo build --release` first (or pass --simattr)")
    if not os.path.isfile(os.path.join(args.model, "model.safetensors")):
        sys.exit(f"no model in {args.model}: run scripts/fetch_model.sh [NAME] (or pass --model DIR)")
    family = model_family(args.model)
    if args.pairs:
        with open(args.pairs, encoding="utf-8") as f:
            pairs = [(d["a"], d["b"]) for d in map(json.loads, filter(str.strip, f))]
    else:
        pairs = FAMILY_DEFAULTS[family][0]
    settings = parse_settings(family)
    sentences = (SENTENCES * (args.embed_batch // len(SENTENCES) + 1))[:args.embed_batch]

    log(f"loading {args.model} ({family})")
    st = SentenceTransformer(args.model, device="cpu")
    tm = Torch(args.model, st)
    log(f"(b) uses attn_implementation={tm.attn}, pooling {tm.pooling}")
    num_layers = len(tm.layers)
    for L, n in settings:
        if not 0 <= L < num_layers or n < 1:
            sys.exit(f"setting {L}:{n}: the layer must be in 0..{num_layers - 1}, the steps >= 1")
    info = machine()
    gemm_shape = (7200, tm.hidden, tm.inter)
    info["torch_gemm_gflops"] = torch_gemm_rate(*gemm_shape)
    info["torch_gemm_shape"] = list(gemm_shape)
    log(f"torch f32 matmul {'×'.join(map(str, gemm_shape))}: {info['torch_gemm_gflops']:.0f} GFLOP/s (best of 7)")
    impls = {"a": "(a) PyTorch reverse, f32", "b": "(b) PyTorch jvp+vmap, f32", "c": "(c) simattr explain"}
    if args.skip_reverse:
        del impls["a"]
    if args.with_primal_f32:
        impls["d"] = "(d) simattr explain --primal f32"
    if args.with_reverse:
        impls["e"] = "(e) simattr explain --mode reverse"
    if args.with_wgpu:
        impls["f"] = "(f) simattr explain --backend wgpu"
    if args.with_wgpu_f16:
        impls["g"] = "(g) simattr explain --backend wgpu --precision f16"
    results = {"machine": info, "settings": dict(vars(args)), "family": family, "layer_steps": settings,
               "attn_implementation": tm.attn, "explain": [], "embed": None}

    with tempfile.TemporaryDirectory() as tmp:
        def simattr_run(key):
            variant = SIMATTR_VARIANTS[key]
            return lambda a, b, L, n: np.array(simattr("explain", *variant, "--layer", str(L), "--steps", str(n),
                                                       a, b, tmp=tmp)["attributions"])

        run = {
            "a": lambda a, b, L, n: tm.explain(a, b, L, n, reverse=True),
            "b": lambda a, b, L, n: tm.explain(a, b, L, n, reverse=False),
            **{key: simattr_run(key) for key in SIMATTR_VARIANTS},
        }
        # Warm-up (allocator, thread pools, page cache for simattr's model load) with few steps:
        # a full-size warm-up of (a) alone would cost minutes and warms nothing more.
        for key in impls:
            log(f"warm-up {impls[key]}")
            run[key](*pairs[0], settings[0][0], min(settings[0][1], 5))
        for n_pair, (a, b) in enumerate(pairs, 1):
            for L, steps in settings:
                times, passes, A = {k: [] for k in impls}, {k: [] for k in impls}, {}
                for r in range(args.runs):
                    for key in impls:  # alternate so that drift hits every implementation alike
                        if key == "a" and r >= args.reverse_runs:
                            continue
                        t, out = timed(lambda: run[key](a, b, L, steps))
                        times[key].append(t)
                        if key in SIMATTR_VARIANTS:
                            # simattr's pass ≈ explain − embed of the same two texts on the same
                            # backend: the embed process has the same start, model load (and
                            # adapter start), tokenization and plain forward.
                            A[key] = out
                            t_fixed, _ = timed(lambda: simattr("embed", *embed_variant(key), a, b, tmp=tmp))
                            passes[key].append(max(t - t_fixed, 1e-9))
                        else:
                            A[key], p = out
                            passes[key].append(p)
                        log(f"  pair {n_pair} L={L} N={steps} run {r + 1}/{args.runs} {impls[key]}: {t:.3f} s "
                            f"(pass {passes[key][-1]:.3f} s)")
                ref = A["a" if "a" in A else "b"]
                pairs_compared = (("a", "b"), ("a", "c"), ("b", "c"), ("a", "d"), ("b", "d"), ("c", "d"),
                                  ("a", "e"), ("c", "e"), ("b", "f"), ("c", "f"), ("b", "g"), ("c", "g"),
                                  ("f", "g"))
                errs = {f"{x}-{y}": rel(A[x], A[y], ref) for x, y in pairs_compared if x in A and y in A}
                for name, e in errs.items():
                    if e > (1e-2 if "g" in name else 1e-4) and any(k in name for k in "cdefg"):
                        log(f"WARNING: max|ΔA|/max|A| {name} = {e:.1e} > 1e-4 (f32 should agree to ~1e-6)")
                flops = {k: 0.0 for k in ("a", "b", "c")}
                for t_len in ref.shape:
                    for k, v in pass_flops(tm.hidden, tm.inter, num_layers - L, t_len, steps, tm.hidden).items():
                        flops[k] += v
                for key in "dfg":  # the same arithmetic as (c): in f32, on the GPU, in f16 storage
                    flops[key] = flops["c"]
                flops["e"] = sum(reverse_pass_flops(tm.hidden, tm.inter, num_layers - L, t_len, steps,
                                                    tm.hidden, tm.pooling == "mean") for t_len in ref.shape)
                rates = {k: flops[k] / statistics.median(passes[k]) / 1e9 for k in impls}
                if "c" in impls:
                    rates["c_plain_equivalent"] = flops["b"] / statistics.median(passes["c"]) / 1e9
                results["explain"].append({"pair": n_pair, "a": a, "b": b, "layer": L, "steps": steps,
                                           "shape": list(ref.shape),
                                           "times": {k: stats(v) for k, v in times.items()},
                                           "pass_times": {k: stats(v) for k, v in passes.items()},
                                           "gflop": {k: v / 1e9 for k, v in flops.items()},
                                           "gflop_per_s": rates, "max_rel_diff": errs})

        log("embedding throughput")
        st.encode(sentences, batch_size=args.embed_batch)  # warm-up
        simattr("embed", *sentences, tmp=tmp)
        sps = {"st": [], "simattr": [], "simattr_loaded": []}
        for r in range(args.runs):
            t, e_st = timed(lambda: st.encode(sentences, batch_size=args.embed_batch, convert_to_numpy=True))
            sps["st"].append(len(sentences) / t)
            t, e_sa = timed(lambda: np.array(simattr("embed", *sentences, tmp=tmp)["embeddings"]))
            sps["simattr"].append(len(sentences) / t)
            # encode's model is loaded beforehand; a one-sentence run measures simattr's start,
            # model load and output, so the difference is its embedding time proper.
            t_one, _ = timed(lambda: simattr("embed", sentences[0], tmp=tmp))
            sps["simattr_loaded"].append((len(sentences) - 1) / max(t - t_one, 1e-9))
            log(f"  run {r + 1}/{args.runs}: encode {sps['st'][-1]:.1f}/s, simattr {sps['simattr'][-1]:.1f}/s "
                f"(load excluded {sps['simattr_loaded'][-1]:.1f}/s)")
        results["embed"] = {"sentences": len(sentences), "sentences_per_s": {k: stats(v) for k, v in sps.items()},
                            "max_abs_diff": float(np.abs(e_st.astype(np.float64) - e_sa).max())}

    report(results, impls)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, ensure_ascii=False)
        log(f"wrote {args.json}")
    log(f"total {time.perf_counter() - T_START:.0f} s")


def report(res, impls):
    m = res["machine"]
    model = os.path.basename(os.path.normpath(args.model))
    print(f"Machine: {m['cpu']}, {m['cores']} cores; {m['threads']} threads for every implementation  ")
    print(f"torch {m['torch']}, transformers {m['transformers']}, sentence-transformers "
          f"{m['sentence_transformers']}; {m['simattr'] or 'simattr'} (commit {m['commit'] or '?'})  ")
    runs_a = f"; (a): {args.reverse_runs} run(s)" if "a" in impls and args.reverse_runs < args.runs else ""
    print(f"explain {model}, cos, medians of {args.runs} alternating runs{runs_a}; (a)/(b) exclude "
          f"the model load, (c) is the whole process; (b) attention: {res['attn_implementation']}  ")
    print(f"GFLOP/s = the pass's flops (src/net/flops.rs formulas) / its median pass time; share of a "
          f"{args.ceiling:.0f} GFLOP/s f32 GEMM ceiling (torch's own f32 matmul at "
          f"{'×'.join(map(str, m['torch_gemm_shape']))}: {m['torch_gemm_gflops']:.0f} GFLOP/s now)\n")
    print("| pair | L | steps | T_a×T_b | implementation | median s | min–max s | vs (c) | pass s | GFLOP | GFLOP/s "
          "| of ceiling | max\\|ΔA\\|/max\\|A\\| |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for ex in res["explain"]:
        c = ex["times"]["c"]["median"]
        for key, name in impls.items():
            s = ex["times"][key]
            ratio = "1" if key == "c" else f"({key})/(c) = {s['median'] / c:.1f}×"
            if key == "e" and "a" in ex["times"]:
                ratio += f"; (a)/(e) = {ex['times']['a']['median'] / s['median']:.2f}×, pass {ex['pass_times']['a']['median'] / ex['pass_times']['e']['median']:.2f}×"
            errs = ", ".join(f"{k}: {v:.1e}" for k, v in ex["max_rel_diff"].items() if k.endswith(key))
            rate = ex["gflop_per_s"][key]
            rate_s = f"{rate:.0f}" + (f" (plain-equiv. {ex['gflop_per_s']['c_plain_equivalent']:.0f})"
                                      if key == "c" else "")
            print(f"| {ex['pair']} | {ex['layer']} | {ex['steps']} | {ex['shape'][0]}×{ex['shape'][1]} | {name} | "
                  f"{s['median']:.3f} | {s['min']:.3f}–{s['max']:.3f} | {ratio} | "
                  f"{ex['pass_times'][key]['median']:.3f} | {ex['gflop'][key]:.1f} | {rate_s} | "
                  f"{100 * rate / args.ceiling:.0f}% | {errs or '—'} |")
    print("\npass s: (a) forward with autograd + the D backward passes, (b) the jvp+vmap calls, both texts; "
          "(c) the explain process minus a `simattr embed` process of the same two texts (start, model load, "
          "tokenization, plain forward). GFLOP: (a) primal + N·D cotangent sequences, (b) the plain path "
          "(primal + every tangent row through every GEMM, dense attention JVP), (c) what simattr does "
          "(primal + structured tangents); plain-equiv. = (b)'s GFLOP / (c)'s pass time.")
    e = res["embed"]
    st, sa = e["sentences_per_s"]["st"], e["sentences_per_s"]["simattr"]
    print(f"\nembedding {model}, {e['sentences']} sentences in one batch, median of {args.runs} alternating runs; "
          f"max |Δ embedding| {e['max_abs_diff']:.1e}\n")
    print("| implementation | sentences/s (median) | min–max | vs encode |")
    print("|---|---|---|---|")
    print(f"| sentence-transformers encode (model loaded) | {st['median']:.1f} | {st['min']:.1f}–{st['max']:.1f} | 1 |")
    print(f"| simattr embed (whole process) | {sa['median']:.1f} | {sa['min']:.1f}–{sa['max']:.1f} | "
          f"{sa['median'] / st['median']:.2f}× |")
    sl = e["sentences_per_s"]["simattr_loaded"]
    print(f"| simattr embed, model load excluded ({e['sentences'] - 1} more sentences than a one-sentence run) | "
          f"{sl['median']:.1f} | {sl['min']:.1f}–{sl['max']:.1f} | {sl['median'] / st['median']:.2f}× |")
    named = {ex["pair"]: f"{ex['a']!r} / {ex['b']!r}" for ex in res["explain"]}
    print("\npairs: " + "; ".join(f"{n}: {txt}" for n, txt in named.items()))


if __name__ == "__main__":
    main()

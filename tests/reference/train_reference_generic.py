#!/usr/bin/env python3
"""Golden gradients and a short AdamW trajectory for fine-tuning exact (shifted-reference) models of
the newer families: ModernBERT, NomicBERT, JinaBERT v2, T5, Qwen3, Gemma3 (bidirectional).

train_reference.py does this for the BERT-like families through generate_golden.py's Reference
(transformers' AutoModel); this script builds the encoder as generate_golden_generic.py does (its
Generic class: the sentence-transformers folder loaded in float64, eager attention, eval mode, with
its float64 patches of transformers' internals: patch_t5_layer_norm, patch_float64_internals,
set_float64_embed_scale; nomic_jina_reference.install() for the NomicBERT / JinaBERT folders, whose
remote code cannot run here, so these two are our own float64 references of nomic_jina_reference.py)
and takes the pairs, the trajectory configuration, the gradient / finite-difference / trajectory
code and the output writing from train_reference.py. The attention each layer gets is therefore
exactly generate_golden_generic.py's (Gemma3 bidirectional with its sliding windows, ModernBERT's
local/global windows, Qwen3 causal); the script prints it (and the pairs' token lengths) per fixture.

Definitions (train_reference.py's, with these family rules):
  x      text ids, tokenized as sentence-transformers does (special tokens, truncation; no prompt
         anywhere in training); length T
  r      the reference input of the same length, generate_golden_generic.py's rule: every token the
         tokenizer itself adds (special_tokens_mask) at its place, the pad token everywhere else (EOS
         when the tokenizer has no pad). For these fixtures: BERT-like tokenizers (ModernBERT,
         NomicBERT, JinaBERT) [CLS] [PAD]* [SEP]; T5 <pad>* </s>; Gemma3 <bos> <pad>* <eos>; Qwen3
         <|endoftext|>* (its pad token is its closing token <|endoftext|>, id 556; config.json has no
         pad_token_id). Attention mask all ones.
  F(ids) the Transformer module's output token states ("token_embeddings", T x H) for that sequence
         alone (batch 1, no padding), float64: T5 after encoder.final_layer_norm, Qwen3 / Gemma3
         after the final `norm`, ModernBERT after `final_norm`.
  u(x)   pool(F(x) - F(r)) with the folder's Pooling mode: mean over the T tokens, or lasttoken (row
         T-1; tiny-qwen3). u(r) = 0. By default NO Dense module and NO Normalize: the trained exact
         model is encoder + shifted reference + Pooling only (tiny-t5, tiny-t5-relu and tiny-gemma3
         list Dense modules after Pooling, which are dropped).
         --with-dense: u(x) = D_k(...D_1(pool(F(x) - F(r)))), the folder's Dense modules in modules.json
         order after Pooling (still no Normalize); each must be linear: no bias, Identity activation
         (asserted; tiny-t5 32->24, tiny-gemma3 32->48->32), so u(r) = D(0) = 0 still. Their weights
         are trained too: gradients, finite differences, trajectory, weight decay (the Trainer rule
         on the Dense module: `linear.weight` decays). Golden name of a Dense tensor: the ORIGINAL
         folder's module path, a slash, the tensor name in its model.safetensors, e.g.
         `2_Dense/linear.weight`, `3_Dense/linear.weight`; listed in tensor_names after the
         encoder's; the json gets "dense": [the module paths kept] (after "pooling").
  score  cos: cos(u(a), u(b)); dot: u(a) . u(b)
  loss   mean over the batch of (score - label)^2 (CosineSimilarityLoss = MSE; dot likewise)
  grads  of the loss w.r.t. every checkpoint tensor that is a parameter the encoder uses (names as in
         the fixture's model.safetensors, which has no family prefix; JinaBERT's pooler.* is left
         out), at the initial weights, all 10 pairs as one batch. T5: the token table is
         `shared.weight` (encoder.embed_tokens is tied to it; its gradient is the one of the shared
         parameter); the relative attention bias table is block 0's. Gemma3's RMSNorm weights w are
         applied as (1 + w): gradients are w.r.t. w as stored. Qwen3 / Gemma3 k_proj / v_proj
         (grouped-query attention): gradients of the real, unrepeated parameters.
  trajectory (--trajectory, objective cos): train_reference.py's (pairs in file order, no shuffle,
         batch 4, 2 epochs, S = 6 updates, lr 1e-3 with transformers' linear schedule, warm-up 2,
         clip_grad_norm_ 1.0, AdamW betas (0.9, 0.999), eps 1e-8, float64), except the weight-decay
         groups: transformers' Trainer rule (Trainer.get_decay_parameter_names, which
         sentence-transformers' trainer uses): no decay for a parameter of an nn.LayerNorm module or
         whose lowercased name matches `bias`, `layernorm`, `rmsnorm`, `(?:^|\\.)norm(?:$|\\.)` or
         `_norm(?:$|\\.)`; decay 0.01 for the rest. For these fixtures: every Linear weight and every
         embedding table (token, token type) decays; every norm weight / bias (LayerNorm, T5LayerNorm,
         RMSNorm, QK-norms), every bias and T5's relative_attention_bias.weight do not. The script
         asserts that the Trainer rule gives exactly this classification and prints the decayed set.

Writes OUT_DIR/NAME.json and OUT_DIR/NAME.safetensors in train_reference.py's format (float32):
grad.<objective>.<checkpoint name> and, with --trajectory, delta.<checkpoint name> (with --with-dense also
grad.<objective>.<k>_Dense/linear.weight and delta.<k>_Dense/linear.weight); "architecture"
is generate_golden_generic.py's (config.model_type: modernbert, nomic_bert, jina_bert, t5, qwen3,
gemma3_text), "pooling" the Pooling mode (mean, lasttoken).

Checks (printed, asserted): no pair text is truncated; the reference of every pair text follows the
rule above; the Trainer's weight-decay rule gives the classification above; u(r) = 0 exactly; central
finite differences (float64) agree with autograd (train_reference.finite_difference_check, on the
tensors whose gradient is not zero up to rounding; the others, whose gradient is zero in exact
arithmetic, are printed and their central difference must be at rounding level: JinaBERT's key biases
(softmax ignores a shift common to a query's scores) and, in the post-LN NomicBERT / JinaBERT, the
last LayerNorm's bias (a constant row added to F(x) and F(r) cancels in u); their golden gradients
are rounding noise, 1e-18 to 1e-14, against a largest gradient of 0.3 to 2e3); the same loss
and gradients, and the whole trajectory, come out of sentence-transformers' own modules run as the
exact model (Transformer + ShiftedReference of shifted_reference.py, whose reference is this rule
+ Pooling; float64, same patches; padded batches, Qwen3's tokenizer pads on the left). This
cross-check runs for every family, NomicBERT / JinaBERT included (nomic_jina_reference.install()
makes sentence-transformers' Transformer build their references).

Usage (from the repository root; README.md lists every committed file's command):
  python tests/reference/train_reference_generic.py --model-dir tests/fixtures/tiny-t5 --name tiny-t5 \\
      --out-dir tests/fixtures/golden/train --objectives cos,dot --trajectory
  python tests/reference/train_reference_generic.py --model-dir tests/fixtures/tiny-t5 --name tiny-t5-dense \
      --out-dir tests/fixtures/golden/train --objectives cos,dot --trajectory --with-dense
"""
import argparse
import json
import math
import os
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_reference import (FD_STEP, PAIRS, TRAJECTORY, Exact, finite_difference_check, gradients,  # noqa: E402
                             run_trajectory, st_loss, trained_params, write_golden)
from generate_golden_generic import (REFERENCE_ARCHS, ROTARY_ARCHS, Generic, patch_float64_internals,  # noqa: E402
                                     patch_t5_layer_norm, set_float64_embed_scale)
import nomic_jina_reference  # noqa: E402
from shifted_reference import ShiftedReference  # noqa: E402

F64 = torch.float64
GENERATOR = "tests/reference/train_reference_generic.py"


class GenericExact(Exact):
    """u(x) = pool(F(x) - F(r)) through the folder's Transformer module (generate_golden_generic's
    float64 model), one sequence at a time, then the Dense modules given (--with-dense; none by
    default); loss and u are train_reference.Exact's."""

    def __init__(self, G, dense=()):
        self.dense = [m for _, m in dense]  # (path, sentence-transformers Dense module of G.st)
        self.R = self  # Exact.u asks self.R for reference_ids and pool_one
        self.transformer = G.st[0]
        self.model = self.transformer.auto_model
        # the reference rule: shifted_reference.ShiftedReference's (not a module of G.st; it only
        # reads the Transformer's tokenizer); its pad rule is G.pad_id's
        self.framing = ShiftedReference(self.transformer)
        assert self.framing.pad_id == G.pad_id, (self.framing.pad_id, G.pad_id)
        self.pooling = G.pooling
        assert self.pooling in ("mean", "lasttoken"), f"mean or lasttoken pooling here, not {self.pooling}"
        self.with_token_types = "token_type_ids" in G.st.preprocess(["a"])

    def reference_ids(self, n):
        return self.framing.reference_ids(n)

    def pool_one(self, d):
        v = d.mean(0) if self.pooling == "mean" else d[-1]
        for m in self.dense:  # through the module's own forward (linear, Identity)
            v = m({"sentence_embedding": v.unsqueeze(0)})["sentence_embedding"][0]
        return v

    def F(self, ids):
        x = torch.tensor([ids], dtype=torch.long)
        feats = {"input_ids": x, "attention_mask": torch.ones_like(x)}
        if self.with_token_types:
            feats["token_type_ids"] = torch.zeros_like(x)
        return self.transformer(feats)["token_embeddings"][0]


def st_exact_model(model_dir, dense_paths=()):
    """The fixture as an exact sentence-transformers model: Transformer + ShiftedReference (the
    family's framing: an opening or closing special token may be absent, T5, Qwen3) + Pooling (+ the
    Dense modules at dense_paths, loaded from the folder, with --with-dense; no Normalize), float64,
    eval, Gemma3's float64 embedding scale."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer
    t = Transformer.load(model_dir, model_kwargs={"attn_implementation": "eager"})
    mods = [t, ShiftedReference(t), Pooling.load(os.path.join(model_dir, "1_Pooling"))]
    mods += [Dense.load(os.path.join(model_dir, p)) for p in dense_paths]
    st = SentenceTransformer(modules=mods, device="cpu").to(F64).eval()
    set_float64_embed_scale(st)
    return st


def dense_modules(model_dir, G):
    """(module path in modules.json, G.st's Dense module) for every Dense module of the folder, in
    order; each asserted linear (no bias, Identity activation, no residual)."""
    with open(os.path.join(model_dir, "modules.json"), encoding="utf-8") as f:
        entries = sorted(json.load(f), key=lambda e: e["idx"])
    paths = [e["path"] for e in entries if e["type"].rsplit(".", 1)[-1] == "Dense"]
    mods = [m for m in G.st if type(m).__name__ == "Dense"]
    assert len(paths) == len(mods) == len(G.dense), (paths, G.dense)
    for p, m in zip(paths, mods):
        assert m.linear.bias is None and isinstance(m.activation_function, torch.nn.Identity) and not m.use_residual, (
            f"{p}: only linear Dense modules (no bias, Identity activation) keep u(r) = 0", m)
        assert [n for n, _ in m.named_parameters()] == ["linear.weight"], (p, list(m.state_dict()))
        with safe_open(os.path.join(model_dir, p, "model.safetensors"), "pt") as f:
            assert list(f.keys()) == ["linear.weight"], (p, list(f.keys()))
            assert torch.equal(f.get_tensor("linear.weight").to(F64), m.linear.weight.detach()), p
    return list(zip(paths, mods))


def dense_named(dense):
    """(golden name, parameter) of the Dense modules' tensors: `<module path>/<tensor name>`."""
    return [(f"{path}/{n}", p) for path, m in dense for n, p in m.named_parameters()]


ZERO_GRAD = 1e-10  # a tensor whose max |grad| is below this times the largest one is zero up to rounding


def central_difference(exact, p, j, batch, objective):
    """(loss(w + h) - loss(w - h)) / 2h at scalar j of parameter p (train_reference's step)."""
    flat = p.data.view(-1)
    w0 = flat[j].item()
    h = FD_STEP * max(1.0, abs(w0))
    with torch.no_grad():
        flat[j] = w0 + h
        lp = exact.loss(batch, objective).item()
        flat[j] = w0 - h
        lm = exact.loss(batch, objective).item()
        flat[j] = w0
    return (lp - lm) / (2 * h)


def decay_names(model):
    """transformers' Trainer rule (sentence-transformers' trainer uses it), on the encoder's names."""
    return set(transformers.Trainer.get_decay_parameter_names(None, model))


def expected_decay(model, name):
    """What the Trainer rule should give for these fixtures: Linear weights and embedding tables
    decay; norms, biases and T5's relative_attention_bias table do not."""
    owner = dict(model.named_modules())[name.rsplit(".", 1)[0] if "." in name else ""]
    leaf = name.rsplit(".", 1)[-1]
    kind = type(owner).__name__
    if leaf == "bias" or "norm" in kind.lower():
        return False
    assert leaf == "weight", name
    if isinstance(owner, torch.nn.Embedding):
        return "relative_attention_bias" not in name
    assert isinstance(owner, torch.nn.Linear), (name, kind)
    return True


def print_attention(G, longest_text):
    """The attention pattern each layer gets on the longest pair text (generate_golden_generic.py's
    checks of the masks), with the configured windows."""
    cfg = G.model.config
    feats, ids = G.features(longest_text, None)[:2]
    if G.arch in ROTARY_ARCHS:
        keys = {"qwen3": ("sliding_window", "use_sliding_window"),
                "gemma3_text": ("sliding_window", "use_bidirectional_attention"),
                "modernbert": ("local_attention", "global_attn_every_n_layers")}[G.arch]
        conf = {k: getattr(cfg, k, None) for k in keys}
        with open(os.path.join(G.model_dir, "config.json"), encoding="utf-8") as f:
            raw = {k: v for k, v in json.load(f).items() if k in keys}
        print(f"attention config: layer_types {list(cfg.layer_types)}, transformers' config {conf}, config.json {raw}")
        for a in G.attention_layers(feats):
            window = a["window"] if a["window"] is not None else "none (all T)"
            print(f"  layer {a['layer']} {a['layer_type']}: causal {a['causal']}, window (max |i-j| seen on "
                  f"T={len(ids)}) {window}, heads {a['num_heads']}/{a['num_kv_heads']} x {a['head_dim']}, "
                  f"θ {a['rope_theta']}")
    elif G.arch in REFERENCE_ARCHS:
        facts = nomic_jina_reference.attention_facts(G.model, torch.tensor([ids]))
        for a in facts["attention_layers"]:
            print(f"  layer {a['layer']}: full bidirectional, no window, heads {a['num_heads']} x {a['head_dim']}, "
                  + (f"rotary θ {a['rope_theta']}" if "rope_theta" in a else f"ALiBi slopes {a['alibi_slopes']}"))
    elif G.arch == "t5":
        att = G.layers[0].layer[0].SelfAttention
        print(f"attention: full bidirectional, no window; relative bias {att.relative_attention_num_buckets} buckets, "
              f"max distance {att.relative_attention_max_distance} (block 0's table, shared by all blocks)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--objectives", default="cos", help="comma-separated: cos,dot")
    ap.add_argument("--trajectory", action="store_true")
    ap.add_argument("--with-dense", action="store_true",
                    help="keep the folder's (linear) Dense modules after Pooling and train them too")
    args = ap.parse_args()
    objectives = [o for o in args.objectives.split(",") if o]
    assert objectives and all(o in ("cos", "dot") for o in objectives), objectives
    t0 = time.time()
    torch.manual_seed(0)
    warnings.simplefilter("ignore")
    transformers.logging.set_verbosity_error()
    patch_t5_layer_norm()
    patch_float64_internals()
    nomic_jina_reference.install()  # NomicBERT / JinaBERT folders only

    G = Generic(args.model_dir)
    dense = dense_modules(args.model_dir, G) if args.with_dense else []
    assert dense or not args.with_dense, f"--with-dense: {args.model_dir} lists no Dense module"
    dense_paths = [p for p, _ in dense]
    exact = GenericExact(G, dense)
    framing = exact.framing
    if dense:
        dense_str = f", Dense modules {dense_paths} {G.dense} KEPT and trained"
    else:
        dense_str = f", Dense modules {G.dense} NOT used" if G.dense else ""
    print(f"model {args.name}: {G.arch}, {G.num_layers} layers, {G.pooling} pooling{dense_str}, max_seq_length "
          f"{G.max_seq_length}; {framing.extra_repr()}; token types {exact.with_token_types}; "
          f"embedding scale {G.embed_scale}")

    with safe_open(os.path.join(args.model_dir, "model.safetensors"), "pt") as f:
        checkpoint_names = list(f.keys())
    model = exact.model
    all_names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    missing = [n for n in checkpoint_names if n not in all_names]
    assert not missing, f"checkpoint tensors that are not parameters of the {G.arch} module: {missing}"
    named = trained_params(model, checkpoint_names)  # asserts every module parameter is in the checkpoint
    encoder_names = [n for n, _ in named]
    named += dense_named(dense)  # --with-dense: after the encoder's
    names = [n for n, _ in named]
    tied = sorted(all_names - {n for n, _ in model.named_parameters()})
    print(f"{len(names)} trained tensors ({sum(p.numel() for _, p in named)} scalars); not trained: "
          f"{[n for n in checkpoint_names if n not in names]}; tied module names (no tensor of their own): {tied}")

    # ---- weight decay groups: transformers' Trainer rule, checked against the expected classification ----
    decayed = decay_names(model)
    for n in encoder_names:
        assert (n in decayed) == expected_decay(model, n), (n, n in decayed)
    for path, m in dense:  # the rule on each Dense module, its names prefixed with the module path
        local = decay_names(m)
        for n, _ in m.named_parameters():
            assert (n in local) == expected_decay(m, n), (path, n, n in local)
        decayed |= {f"{path}/{n}" for n in local}
    print(f"weight decay (Trainer rule) for {sum(n in decayed for n in names)} tensors: "
          f"{[n for n in names if n in decayed]}")
    print(f"no weight decay: {[n for n in names if n not in decayed]}")

    # ---- the pairs, tokenized; none may be truncated; references follow the rule ----
    pairs, batch = [], []
    for a, b, y in PAIRS:
        ids_pair = []
        for text in (a, b):
            _, ids, _, ref, _ = G.features(text, None)
            full = G.tok(text)["input_ids"]
            assert full == ids, f"{text!r} is truncated at max_seq_length {G.max_seq_length}"
            assert ref == framing.reference_ids(len(ids)), (text, ids, ref)
            ids_pair.append(ids)
        pairs.append({"a": a, "b": b, "score": y, "ids_a": ids_pair[0], "ids_b": ids_pair[1]})
        batch.append((ids_pair[0], ids_pair[1], y))
    lengths_str = " ".join(f"{len(p['ids_a'])}/{len(p['ids_b'])}" for p in pairs)
    print(f"token lengths (a/b): {lengths_str}")
    longest = max((t for p in PAIRS for t in p[:2]), key=lambda t: len(G.features(t, None)[1]))
    print_attention(G, longest)

    # ---- u(r) = 0 ----
    st = st_exact_model(args.model_dir, dense_paths)
    assert (st[1].open_id, st[1].pad_id, st[1].close_id) == (framing.open_id, framing.pad_id, framing.close_id)
    print(f"sentence-transformers exact model: {[type(m).__name__ for m in st]}, padding side "
          f"{st.tokenizer.padding_side}")
    with torch.no_grad():
        lengths = sorted({len(i) for p in pairs for i in (p["ids_a"], p["ids_b"])})
        ur = max(exact.u(framing.reference_ids(n)).abs().max().item() for n in lengths)
        print(f"check u(r) = 0: max |u(r)| = {ur!r} over reference lengths {lengths}")
        assert ur == 0.0
        ur_st = 0.0
        for n in (lengths[0], lengths[-1]):
            ids = torch.tensor([framing.reference_ids(n)])
            feats = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            if exact.with_token_types:
                feats["token_type_ids"] = torch.zeros_like(ids)
            ur_st = max(ur_st, st(feats)["sentence_embedding"].abs().max().item())
        print(f"check u(r) = 0 through ShiftedReference (sentence-transformers): max |u(r)| = {ur_st!r}")
        assert ur_st < 1e-12

    out = {"generator": GENERATOR, "model": args.name, "architecture": G.arch, "pooling": G.pooling}
    if dense:
        out["dense"] = dense_paths
    out.update({"pairs": pairs, "gradients": {}})
    tensors = {}
    gen = torch.Generator().manual_seed(20240531)
    st_named = trained_params(st[0].auto_model, checkpoint_names)
    st_named += dense_named(list(zip(dense_paths, list(st)[3:])))
    assert [n for n, _ in st_named] == names
    for obj in objectives:
        loss, grads = gradients(exact, named, batch, obj)
        gnorm = math.sqrt(sum((g ** 2).sum().item() for g in grads.values()))
        zero = [n for n in names if not grads[n].any()]
        print(f"{obj}: loss {loss!r}, gradient norm {gnorm:.6e}; all-zero gradients: {zero}")
        for n, _ in dense_named(dense):
            print(f"    {obj} {n}: max |grad| {grads[n].abs().max().item():.6e}, norm {grads[n].norm().item():.6e}")
        # Tensors whose gradient is zero in exact arithmetic (rounding noise only, e.g. key biases:
        # softmax ignores a shift common to a query's scores; a post-LN model's last LayerNorm bias:
        # it cancels in F(x) - F(r)) are left out of the relative check; their central differences
        # must be at rounding level too.
        gmax = max(g.abs().max().item() for g in grads.values())
        live = [(n, p) for n, p in named if grads[n].abs().max().item() > ZERO_GRAD * gmax]
        for n, p in named:
            if grads[n].abs().max().item() > ZERO_GRAD * gmax:
                continue
            fd = central_difference(exact, p, 0, batch, obj)
            print(f"    {obj} {n}: gradient zero up to rounding (max |grad| {grads[n].abs().max().item():.1e}, "
                  f"max |grad| of all {gmax:.1e}); central difference at [0] {fd:+.1e}")
            assert abs(fd) < 1e-9 * gmax, (n, fd)
        worst = finite_difference_check(exact, live, batch, obj, grads, gen)
        print(f"check {obj}: finite differences vs autograd, max relative error {worst:.2e}")
        assert worst < 1e-5, worst
        for n, p in dense_named(dense):  # --with-dense: each Dense weight at its largest |grad| too
            j = int(grads[n].abs().flatten().argmax())
            fd, ad = central_difference(exact, p, j, batch, obj), grads[n].flatten()[j].item()
            rel = abs(fd - ad) / abs(ad)
            print(f"check {obj}: {n}[{j}]: autograd {ad:+.10e} fd {fd:+.10e} rel {rel:.2e}")
            assert rel < 1e-5, (n, j, ad, fd)
        # Same loss and gradients through sentence-transformers (padded batches, ShiftedReference).
        l_st = st_loss(st, PAIRS, obj)
        g_st = torch.autograd.grad(l_st, [p for _, p in st_named])
        dl = abs(l_st.item() - loss)
        dg = max((g - grads[n]).abs().max().item() for (n, _), g in zip(st_named, g_st)) / max(
            g.abs().max().item() for g in grads.values())
        print(f"check {obj}: sentence-transformers exact model: |loss diff| {dl:.2e}, "
              f"max |grad diff| / max |grad| {dg:.2e}")
        assert dl < 1e-12 and dg < 1e-10, (dl, dg)
        out["gradients"][obj] = {"loss": loss}
        for n in names:
            tensors[f"grad.{obj}.{n}"] = grads[n].to(torch.float32).contiguous()

    if args.trajectory:
        cfg = dict(TRAJECTORY)
        bs = cfg["batch_size"]
        batches = [batch[i:i + bs] for i in range(0, len(batch), bs)]
        decays = decayed.__contains__
        losses, lrs, norms, deltas = run_trajectory(named, lambda b: exact.loss(b, cfg["objective"]), batches, cfg,
                                                    decays=decays)
        steps = len(losses)
        assert steps == cfg["epochs"] * math.ceil(len(batch) / bs)
        for k in range(steps):
            print(f"  step {k}: loss {losses[k]:.12f} lr {lrs[k]:.3e} grad norm {norms[k]:.6e}")
        dmax = max(d.abs().max().item() for d in deltas.values())
        print(f"trajectory: {steps} steps, max |delta| {dmax:.3e}")
        # The same trajectory through sentence-transformers' exact model (padded batches).
        text_batches = [PAIRS[i:i + bs] for i in range(0, len(PAIRS), bs)]
        l2, r2, n2, d2 = run_trajectory(st_named, lambda b: st_loss(st, b, cfg["objective"]), text_batches, cfg,
                                        decays=decays)
        e_loss = max(abs(x - y) for x, y in zip(losses, l2))
        e_norm = max(abs(x - y) / y for x, y in zip(norms, n2))
        e_delta = max((deltas[n] - d2[n]).abs().max().item() for n in names) / dmax
        print(f"check trajectory vs sentence-transformers exact model: max |loss diff| {e_loss:.2e}, "
              f"max rel grad-norm diff {e_norm:.2e}, max |delta diff| / max |delta| {e_delta:.2e}")
        assert lrs == r2 and e_loss < 1e-12 and e_norm < 1e-10 and e_delta < 1e-6, (e_loss, e_norm, e_delta)
        cfg.update({"steps": steps, "losses": losses, "lrs": lrs, "grad_norms": norms})
        out["trajectory"] = cfg
        for n in names:
            tensors[f"delta.{n}"] = deltas[n].to(torch.float32).contiguous()

    out["tensor_names"] = names
    write_golden(args.out_dir, args.name, out, tensors)
    print(f"done in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

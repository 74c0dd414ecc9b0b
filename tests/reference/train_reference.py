#!/usr/bin/env python3
"""Golden gradients and a short AdamW trajectory for fine-tuning exact (shifted-reference) models.

Independent of the Rust code: transformers' own model classes (AutoModel, eager attention, float64,
eval mode = no dropout), torch autograd and torch.optim.AdamW; tokenization and reference ids as
generate_golden.py (imported from there).

Definitions (what simattr's trainer implements):
  x      text ids, tokenized as sentence-transformers does (special tokens, truncation); length T
  r      its reference [open] [pad]*(T-2) [close] (the tokenizer's own ids), attention mask all ones
  F(ids) the transformer's output token states (T x H) for that sequence alone (batch 1, no padding)
  u(x)   pool(F(x) - F(r)); pool = mean over the T tokens (row 0 for cls pooling); u(r) = 0.
         Normalize (listed in the fixtures' modules.json) is not applied.
  score  cos: cos(u(a), u(b)); dot: u(a) . u(b)
  loss   mean over the batch of (score - label)^2 (CosineSimilarityLoss = MSE; dot likewise)
  grads  of the loss w.r.t. every parameter of the encoder (the pooler is not used: excluded),
         at the initial weights, all 10 pairs as one batch
  trajectory (--trajectory, objective cos): the pairs in file order, no shuffle, batch 4, 2 epochs,
         S = 2 * ceil(10 / 4) = 6 updates; lr_k = lr * f(k), transformers' linear schedule with
         warmup 2 (f(0) = 0); clip_grad_norm_(all params, 1.0) before each update; AdamW(betas
         (0.9, 0.999), eps 1e-8), weight decay 0.01 for names without "bias" and "LayerNorm", 0 for
         the rest (so MPNet's relative_attention_bias.weight gets none); float64 throughout.

Writes OUT_DIR/NAME.json and OUT_DIR/NAME.safetensors (float32): grad.<objective>.<checkpoint name>
and, with --trajectory, delta.<checkpoint name> = weights after the S updates - initial weights
(computed in float64).

Checks (printed, asserted): no pair text is truncated; central finite differences (float64) on
random scalar parameters agree with autograd; u(r) = 0 exactly; the same loss and gradients come
out of sentence-transformers' CosineSimilarityLoss on the exact model of shifted_reference.py
(padded batches); for --trajectory, the whole trajectory again through that model.

Usage (from the repository root; README.md lists every committed file's command):
  python tests/reference/train_reference.py --model-dir tests/fixtures/tiny-bert --name tiny-bert \
      --out-dir tests/fixtures/golden/train --objectives cos,dot --trajectory
"""
import argparse
import json
import math
import os
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate_golden import Reference  # noqa: E402
import shifted_reference  # noqa: E402

F64 = torch.float64

# Ten pairs (text a, text b, label). Labels are multiples of 1/16, exact in float32 and float64
# (sentence-transformers' CosineSimilarityLoss casts labels to float32). Token lengths (a/b):
#   tiny-bert, tiny-mpnet  9/7 13/14 3/3 10/16 10/9 21/9 10/13 11/11 7/13 20/10
#   tiny-roberta          10/10 11/14 3/4 12/15 13/11 20/10 15/18 15/14 9/13 24/13
#   tiny-xlm-roberta       9/7 15/15 3/3 10/13 10/9 23/9 10/14 12/12 7/13 22/10
# (equal-length pairs in every tokenizer; none truncated: max_seq_length 24 / 64 / 32 / 32).
PAIRS = [
    ("A man is playing a guitar.", "Someone plays an instrument.", 0.8125),
    ("The cat sits on the mat.", "A dog is lying on the rug.", 0.375),
    ("hi", "hello", 0.875),
    ("The children are playing in the park.", "Kids play outside in the sun.", 0.75),
    ("A woman is reading a book.", "A man is eating an apple.", 0.125),
    ("The dogs were jumping happily in the garden.", "A cat runs in the park.", 0.3125),
    ("The sun goes down over the sea.", "The birds fly home to their trees.", 0.1875),
    ("Two boys ride bikes.", "Two girls ride horses.", 0.4375),
    ("It is raining.", "The weather is wet today.", 0.625),
    ("The old man walks his dog by the river every morning.", "An old man is walking a dog.", 0.9375),
]

TRAJECTORY = {"objective": "cos", "batch_size": 4, "epochs": 2, "lr": 1e-3, "warmup_steps": 2,
              "weight_decay": 0.01, "betas": [0.9, 0.999], "eps": 1e-8, "max_grad_norm": 1.0}

FD_SAMPLES = 8
FD_STEP = 1e-5


def decays(name):
    return "bias" not in name and "LayerNorm" not in name


def linear_warmup(k, warmup, total):
    """transformers' get_linear_schedule_with_warmup factor, written out."""
    if k < warmup:
        return k / max(1, warmup)
    return max(0.0, (total - k) / max(1, total - warmup))


class Exact:
    """u(x) = pool(F(x) - F(r)) on transformers' model, one sequence at a time."""

    def __init__(self, R):
        self.R = R
        self.model = R.model  # float64, eager, eval (no dropout)
        assert R.pooling in ("mean", "cls"), f"exact models: mean or cls pooling only, not {R.pooling}"

    def F(self, ids):
        x = torch.tensor([ids], dtype=torch.long)
        kw = {"token_type_ids": torch.zeros_like(x)} if self.R.has_token_types else {}
        return self.model(input_ids=x, attention_mask=torch.ones_like(x), **kw).last_hidden_state[0]

    def u(self, ids, ref_cache=None):
        n = len(ids)
        if ref_cache is None:
            ref_cache = {}
        if n not in ref_cache:
            ref_cache[n] = self.F(self.R.reference_ids(n))
        return self.R.pool_one(self.F(ids) - ref_cache[n])

    def loss(self, batch, objective):
        """batch: list of (ids_a, ids_b, label)."""
        refs = {}
        scores = []
        for ids_a, ids_b, _ in batch:
            ua, ub = self.u(ids_a, refs), self.u(ids_b, refs)
            if objective == "cos":
                scores.append((ua @ ub) / (ua.norm() * ub.norm()))
            else:
                scores.append(ua @ ub)
        labels = torch.tensor([y for _, _, y in batch], dtype=F64)
        return ((torch.stack(scores) - labels) ** 2).mean()


def trained_params(model, checkpoint_names):
    """(name, parameter) for every checkpoint tensor that is a parameter of the encoder, in the
    checkpoint file's order; the pooler is left out."""
    params = dict(model.named_parameters())
    out = []
    for name in checkpoint_names:
        if name.startswith("pooler."):
            continue
        assert name in params, f"checkpoint tensor {name} is not a model parameter"
        out.append((name, params[name]))
    left = set(params) - {n for n, _ in out}
    assert all(n.startswith("pooler.") for n in left), left
    return out


def gradients(exact, named, batch, objective):
    for _, p in named:
        p.grad = None
    loss = exact.loss(batch, objective)
    grads = torch.autograd.grad(loss, [p for _, p in named])
    return loss.item(), {n: g.detach().clone() for (n, _), g in zip(named, grads)}


def finite_difference_check(exact, named, batch, objective, grads, gen):
    """Central differences in float64 at FD_SAMPLES random scalars with a nonzero gradient."""
    worst = 0.0
    rows = []
    for _ in range(FD_SAMPLES):
        i = int(torch.randint(len(named), (1,), generator=gen))
        name, p = named[i]
        g = grads[name].flatten()
        nz = (g.abs() > 1e-9 * max(g.abs().max().item(), 1e-300)).nonzero().flatten()
        if nz.numel() == 0:
            continue
        j = int(nz[torch.randint(nz.numel(), (1,), generator=gen)])
        flat = p.data.view(-1)
        w0 = flat[j].item()
        h = FD_STEP * max(1.0, abs(w0))
        with torch.no_grad():
            flat[j] = w0 + h
            lp = exact.loss(batch, objective).item()
            flat[j] = w0 - h
            lm = exact.loss(batch, objective).item()
            flat[j] = w0
        fd = (lp - lm) / (2 * h)
        ad = g[j].item()
        rel = abs(fd - ad) / max(abs(ad), 1e-12)
        worst = max(worst, rel)
        rows.append(f"    {objective} {name}[{j}]: autograd {ad:+.10e} fd {fd:+.10e} rel {rel:.2e}")
    print("\n".join(rows))
    return worst


def st_exact_model(model_dir):
    """The fixture as an exact sentence-transformers model (shifted_reference.py), float64, eval."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    t = Transformer.load(model_dir, model_kwargs={"attn_implementation": "eager"})
    mods = [t, shifted_reference.ShiftedReference(t), Pooling.load(os.path.join(model_dir, "1_Pooling"))]
    return SentenceTransformer(modules=mods, device="cpu").to(F64).eval()


def st_loss(st, batch_texts, objective):
    """Loss of a batch through sentence-transformers: padded batches of texts a and of texts b.
    cos: CosineSimilarityLoss (MSE of torch.cosine_similarity); dot: the same with the dot product."""
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
    prep = getattr(st, "preprocess", None) or st.tokenize
    feats = [prep([a for a, _, _ in batch_texts]), prep([b for _, b, _ in batch_texts])]
    labels = torch.tensor([y for _, _, y in batch_texts], dtype=F64)
    if objective == "cos":
        return CosineSimilarityLoss(st)(feats, labels)
    ea, eb = (st(f)["sentence_embedding"] for f in feats)
    return (((ea * eb).sum(-1) - labels) ** 2).mean()


def run_trajectory(named, loss_of_batch, batches, cfg, decays=decays):
    """AdamW + linear warmup schedule + clipping, exactly as the module doc says. Returns the
    per-step losses, lrs, pre-clipping grad norms and the float64 deltas. decays(name): whether a
    parameter gets weight decay (default: the rule of the module doc; train_reference_generic.py
    passes transformers' Trainer rule)."""
    params = [p for _, p in named]
    init = {n: p.detach().clone() for n, p in named}
    groups = [
        {"params": [p for n, p in named if decays(n)], "weight_decay": cfg["weight_decay"]},
        {"params": [p for n, p in named if not decays(n)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"])
    total = len(batches) * cfg["epochs"]
    sched = transformers.get_linear_schedule_with_warmup(opt, cfg["warmup_steps"], total)
    losses, lrs, norms = [], [], []
    k = 0
    for _ in range(cfg["epochs"]):
        for batch in batches:
            opt.zero_grad(set_to_none=True)
            loss = loss_of_batch(batch)
            loss.backward()
            assert all(p.grad is not None for p in params)
            norm = torch.nn.utils.clip_grad_norm_(params, cfg["max_grad_norm"])
            lr = opt.param_groups[0]["lr"]
            assert opt.param_groups[1]["lr"] == lr
            mine = cfg["lr"] * linear_warmup(k, cfg["warmup_steps"], total)
            assert abs(lr - mine) <= 1e-18, (k, lr, mine)
            opt.step()
            sched.step()
            losses.append(loss.item())
            lrs.append(lr)
            norms.append(norm.item())
            k += 1
    deltas = {n: (p.detach() - init[n]) for n, p in named}
    return losses, lrs, norms, deltas


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--objectives", default="cos", help="comma-separated: cos,dot")
    ap.add_argument("--trajectory", action="store_true")
    args = ap.parse_args()
    objectives = [o for o in args.objectives.split(",") if o]
    assert objectives and all(o in ("cos", "dot") for o in objectives), objectives
    torch.manual_seed(0)
    warnings.simplefilter("ignore")
    transformers.logging.set_verbosity_error()

    R = Reference(args.model_dir)
    exact = Exact(R)
    print(f"model {args.name}: {R.arch}, {R.num_layers} layers, {R.pooling} pooling, max_seq_length "
          f"{R.max_seq_length}; reference ids [{R.cls_id}, {R.pad_id}..., {R.sep_id}]")

    with safe_open(os.path.join(args.model_dir, "model.safetensors"), "pt") as f:
        checkpoint_names = list(f.keys())
    named = trained_params(R.model, checkpoint_names)
    names = [n for n, _ in named]
    print(f"{len(names)} trained tensors ({sum(p.numel() for _, p in named)} scalars); not trained: "
          f"{[n for n in checkpoint_names if n not in names]}")

    # ---- the pairs, tokenized; none may be truncated ----
    pairs, batch = [], []
    for a, b, y in PAIRS:
        ids_a, _ = R.tokenize(a)
        ids_b, _ = R.tokenize(b)
        for text, ids in ((a, ids_a), (b, ids_b)):
            full = R.tok(text)["input_ids"]
            assert full == ids, f"{text!r} is truncated at max_seq_length {R.max_seq_length}"
        pairs.append({"a": a, "b": b, "score": y, "ids_a": ids_a, "ids_b": ids_b})
        batch.append((ids_a, ids_b, y))
    print("token lengths: " + " ".join(f"{len(p['ids_a'])}/{len(p['ids_b'])}" for p in pairs))

    # ---- u(r) = 0 ----
    with torch.no_grad():
        lengths = sorted({len(i) for p in pairs for i in (p["ids_a"], p["ids_b"])})
        ur = max(exact.u(R.reference_ids(n)).abs().max().item() for n in lengths)
        print(f"check u(r) = 0: max |u(r)| = {ur!r} over reference lengths {lengths}")
        assert ur == 0.0
        st = st_exact_model(args.model_dir)
        ur_st = 0.0
        for n in (lengths[0], lengths[-1]):
            ids = torch.tensor([R.reference_ids(n)])
            feats = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            if R.has_token_types:
                feats["token_type_ids"] = torch.zeros_like(ids)
            ur_st = max(ur_st, st(feats)["sentence_embedding"].abs().max().item())
        print(f"check u(r) = 0 through ShiftedReference (sentence-transformers): max |u(r)| = {ur_st!r}")
        assert ur_st < 1e-12

    out = {"generator": "tests/reference/train_reference.py", "model": args.name,
           "architecture": R.arch, "pooling": R.pooling, "pairs": pairs, "gradients": {}}
    tensors = {}
    gen = torch.Generator().manual_seed(20240531)
    st_named = trained_params(st[0].auto_model, checkpoint_names)
    for obj in objectives:
        loss, grads = gradients(exact, named, batch, obj)
        gnorm = math.sqrt(sum((g ** 2).sum().item() for g in grads.values()))
        print(f"{obj}: loss {loss!r}, gradient norm {gnorm:.6e}")
        worst = finite_difference_check(exact, named, batch, obj, grads, gen)
        print(f"check {obj}: finite differences vs autograd, max relative error {worst:.2e}")
        assert worst < 1e-5, worst
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
        losses, lrs, norms, deltas = run_trajectory(named, lambda b: exact.loss(b, cfg["objective"]), batches, cfg)
        steps = len(losses)
        assert steps == cfg["epochs"] * math.ceil(len(batch) / bs)
        for k in range(steps):
            print(f"  step {k}: loss {losses[k]:.12f} lr {lrs[k]:.3e} grad norm {norms[k]:.6e}")
        dmax = max(d.abs().max().item() for d in deltas.values())
        print(f"trajectory: {steps} steps, max |delta| {dmax:.3e}")
        # The same trajectory through sentence-transformers' exact model (padded batches).
        text_batches = [PAIRS[i:i + bs] for i in range(0, len(PAIRS), bs)]
        l2, r2, n2, d2 = run_trajectory(st_named, lambda b: st_loss(st, b, cfg["objective"]), text_batches, cfg)
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
    return 0


def write_golden(out_dir, name, out, tensors):
    """OUT_DIR/NAME.json (compact) and OUT_DIR/NAME.safetensors (float32 tensors; metadata: the one
    key "generator", out["generator"], so that the file is byte-stable)."""
    os.makedirs(out_dir, exist_ok=True)
    jpath = os.path.join(out_dir, name + ".json")
    spath = os.path.join(out_dir, name + ".safetensors")
    with open(jpath, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        f.write("\n")
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in tensors.values())
    save_file(tensors, spath, metadata={"generator": out["generator"]})  # one key: byte-stable
    print(f"wrote {jpath} ({os.path.getsize(jpath)} bytes), {spath} ({os.path.getsize(spath)} bytes, "
          f"{len(tensors)} tensors)")
    return jpath, spath


if __name__ == "__main__":
    sys.exit(main())

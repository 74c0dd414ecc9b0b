#!/usr/bin/env python3
"""Exact (shifted-reference) sentence-transformers models in PyTorch, for simattr's tests.

An exact folder's modules.json lists the Transformer (idx 0), then simattr's marker module

    {"idx": 1, "name": "shifted_reference", "path": "", "type": "simattr.ShiftedReference"}

then Pooling, then any linear Dense modules (no bias, Identity activation: a trained folder keeps
them, "2_Dense", "3_Dense", ..., each with its config.json and model.safetensors), then Normalize if
the model normalizes. Module paths are relative to the folder: "../tiny-mpnet" and
"../tiny-mpnet/1_Pooling" in tests/fixtures/tiny-mpnet-exact, "" and "1_Pooling" in a folder written
by simattr's trainer. Since the Dense modules are linear without bias, e(r) = Dense(pool(0)) = 0 too.

ShiftedReference subtracts, per text of T real tokens, the output token states of that text's
reference input r, computed by running the same transformer on r alone (batch of 1, no padding,
attention mask all ones), from the text's token_embeddings at its T real (masked-in) positions,
before Pooling. So u(x) = pool(F(x) - F(r)) and u(r) = 0. Gradients flow through both F(x) and F(r).

The reference (generate_golden_generic.py's rule, simattr's too): every special token the tokenizer
itself adds stays at its place, the pad token (EOS when the tokenizer has no pad) is everywhere else.
The framing is read off the tokenizer's special_tokens_mask of a one-word text, as simattr reads it
off tokenizer.json: at most one special token before the text (open) and one after it (close), each
possibly absent. BERT-like tokenizers: [CLS] [PAD]* [SEP] (the framing is then asserted to be the
tokenizer's cls / sep ids); T5 <pad>* </s>; Gemma3 <bos> <pad>* <eos>; Qwen3 <|endoftext|>* (its
closing token is its pad token, 556 in tiny-qwen3).

The marker module has no folder or config of its own (path ""): everything it needs is the
Transformer module's tokenizer and network.

sentence-transformers cannot import the type "simattr.ShiftedReference" itself; load_exact_model
builds the SentenceTransformer from the listed modules by hand.

CLI: python tests/reference/shifted_reference.py FOLDER --texts-json IN.json --out OUT.json
  IN.json: a list of texts, or an object with a "texts" list (e.g. golden/tiny-mpnet-exact.json);
  OUT.json: {"embeddings": [[float64...], ...]} from one padded batch of all texts (float64, eval;
  with generate_golden_generic.py's patch_float64_internals, which ModernBERT / Qwen3 folders need).
  --compare GOLDEN.json additionally compares with GOLDEN's "embeddings" (max abs difference).
"""
import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer  # noqa: E402

MARKER_TYPE = "simattr.ShiftedReference"


def reference_framing(tokenizer):
    """(open_id, pad_id, close_id) of the reference input: the special tokens the tokenizer adds before
    and after a text (None where it adds none) and the pad token (EOS without a pad)."""
    enc = tokenizer("a", return_special_tokens_mask=True)
    ids, special = enc["input_ids"], enc["special_tokens_mask"]
    lead = next(i for i, s in enumerate(special) if not s)
    trail = next(i for i, s in enumerate(reversed(special)) if not s)
    assert lead <= 1 and trail <= 1 and sum(special) == lead + trail, (
        "expected at most one special token at each end of a text", ids, special)
    open_id = ids[0] if lead else None
    close_id = ids[-1] if trail else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    assert pad_id is not None, "the tokenizer has neither a pad nor an EOS token"
    if tokenizer.cls_token_id is not None and tokenizer.sep_token_id is not None:
        # BERT-like: the framing is [CLS] ... [SEP], as ShiftedReference always had it
        assert (open_id, close_id) == (tokenizer.cls_token_id, tokenizer.sep_token_id), (
            open_id, close_id, tokenizer.cls_token_id, tokenizer.sep_token_id)
    return open_id, pad_id, close_id


class ShiftedReference(torch.nn.Module):
    """token_embeddings[i, real tokens] -= F(reference of the same length) (see module doc).

    Holds the Transformer module without registering it as a submodule, so that its parameters
    are owned (and saved, trained, moved) once, by the Transformer module itself."""

    def __init__(self, transformer):
        super().__init__()
        self._transformer = [transformer]  # a list: not registered as a child module
        self.open_id, self.pad_id, self.close_id = reference_framing(transformer.tokenizer)
        self.fixed = (self.open_id is not None) + (self.close_id is not None)

    @property
    def transformer(self):
        return self._transformer[0]

    def reference_ids(self, n):
        """The reference of length n: [open] [pad]*(n - #special) [close], the absent ones left out."""
        assert n >= max(self.fixed, 1), n
        return ([self.open_id] if self.open_id is not None else []) + [self.pad_id] * (n - self.fixed) + (
            [self.close_id] if self.close_id is not None else [])

    def frames(self, ids):
        """Whether a text's ids (its real tokens) carry the tokenizer's opening / closing tokens."""
        return (self.open_id is None or ids[0] == self.open_id) and (self.close_id is None or ids[-1] == self.close_id)

    def reference_states(self, n, device, with_token_types):
        """F(r) for the reference of length n, alone: n x H."""
        model = getattr(self.transformer, "auto_model", None) or self.transformer.model
        ids = torch.tensor([self.reference_ids(n)], dtype=torch.long, device=device)
        kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if with_token_types:
            kwargs["token_type_ids"] = torch.zeros_like(ids)
        return model(**kwargs, return_dict=True).last_hidden_state[0]

    def forward(self, features):
        tok = features["token_embeddings"]  # B x Tmax x H
        mask = features["attention_mask"]  # B x Tmax
        ids = features.get("input_ids")
        with_tt = "token_type_ids" in features
        refs = {}
        rows = []
        for i in range(tok.shape[0]):
            real = mask[i].nonzero().flatten()
            start, n = int(real[0]), int(real.numel())
            assert int(real[-1]) == start + n - 1, "attention mask of a text is not contiguous"
            if ids is not None:
                assert self.frames(ids[i, start:start + n].tolist()), (
                    "text not framed by the tokenizer's open/close ids", ids[i].tolist())
            if n not in refs:
                refs[n] = self.reference_states(n, tok.device, with_tt).to(tok.dtype)
            rows.append(torch.cat([tok[i, :start], tok[i, start:start + n] - refs[n], tok[i, start + n:]], 0))
        features["token_embeddings"] = torch.stack(rows, 0)
        return features

    def extra_repr(self):
        parts = ([str(self.open_id)] if self.open_id is not None else []) + [f"{self.pad_id}..."] + (
            [str(self.close_id)] if self.close_id is not None else [])
        return "reference [" + ", ".join(parts) + "]"


def load_exact_model(folder, device="cpu"):
    """SentenceTransformer [Transformer, ShiftedReference, Pooling (, Dense...) (, Normalize)] from an
    exact folder; each Dense module must be linear (no bias, Identity activation), so e(r) = 0."""
    with open(os.path.join(folder, "modules.json"), encoding="utf-8") as f:
        entries = sorted(json.load(f), key=lambda e: e["idx"])
    kinds = [e["type"].rsplit(".", 1)[-1] for e in entries]
    tail = kinds[3:-1] if kinds[-1:] == ["Normalize"] and len(kinds) > 3 else kinds[3:]
    assert kinds[:3] == ["Transformer", "ShiftedReference", "Pooling"] and all(k == "Dense" for k in tail), kinds
    assert entries[1]["type"] == MARKER_TYPE, entries[1]
    path = [os.path.normpath(os.path.join(folder, e["path"])) for e in entries]
    transformer = Transformer.load(path[0], model_kwargs={"attn_implementation": "eager"})
    modules = [transformer, ShiftedReference(transformer), Pooling.load(path[2])]
    for p in path[3:3 + len(tail)]:
        dense = Dense.load(p)
        assert dense.linear.bias is None and isinstance(dense.activation_function, torch.nn.Identity) and not (
            dense.use_residual), f"{p}: an exact model's Dense modules are linear (no bias, Identity): {dense}"
        modules.append(dense)
    if kinds[3 + len(tail):] == ["Normalize"]:
        modules.append(Normalize())
    return SentenceTransformer(modules=modules, device=device)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--texts-json", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--compare", default=None, help="a JSON with 'embeddings' to compare with (prints max abs diff)")
    args = ap.parse_args()
    with open(args.texts_json, encoding="utf-8") as f:
        data = json.load(f)
    texts = data["texts"] if isinstance(data, dict) else data
    assert isinstance(texts, list) and all(isinstance(t, str) for t in texts), texts

    # float64 throughout for ModernBERT / Qwen3 / Gemma3 (transformers' eager softmax in float32 turns
    # the float64 padding mask into -inf: NaN rows in a padded batch); no effect on the BERT-like ones
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from generate_golden_generic import patch_float64_internals
    patch_float64_internals()
    st = load_exact_model(args.folder).to(torch.float64).eval()
    with torch.no_grad():
        emb = st.encode(texts, batch_size=len(texts), convert_to_numpy=True)  # one padded batch
    assert str(emb.dtype) == "float64", emb.dtype
    out = {"embeddings": [[float(v) for v in row] for row in emb]}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out}: {len(texts)} embeddings of dim {emb.shape[1]}")
    if args.compare:
        with open(args.compare, encoding="utf-8") as f:
            gold = torch.tensor(json.load(f)["embeddings"], dtype=torch.float64)
        diff = (torch.tensor(emb) - gold).abs().max().item()
        print(f"max |embeddings - {args.compare}| = {diff:.3e} (max |golden| {gold.abs().max().item():.3e})")
        return 0 if diff < 1e-10 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Write a tiny random BERT as a sentence-transformers folder (tests/fixtures/tiny-bert/).

The folder has the same layout as the real all-MiniLM-L6-v2 folder:

    config.json                 BertConfig (3 layers, hidden 32, 4 heads, ffn 64)
    model.safetensors           f32, tensor names as BertModel.save_pretrained writes them (no prefix)
    tokenizer.json              BERT WordPiece tokenizer built with the `tokenizers` library
    vocab.txt                   the same vocabulary, one token a line (for the slow tokenizer)
    tokenizer_config.json       so that transformers' AutoTokenizer loads it
    special_tokens_map.json
    modules.json                Transformer, Pooling (1_Pooling), Normalize (2_Normalize)
    1_Pooling/config.json       mean pooling
    sentence_bert_config.json   max_seq_length 24

As in the real model folder there is no 2_Normalize directory (Normalize has no files, and git does
not keep empty directories); sentence-transformers loads Normalize without one.

Everything is deterministic (fixed seed); run it again and the files come out byte-identical.

Usage: python make_tiny_model.py [--out tests/fixtures/tiny-bert] [--seed 1234]
"""
import argparse
import json
import os
import string

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.normpath(os.path.join(HERE, "..", "fixtures", "tiny-bert"))

# ---------------------------------------------------------------------------------------------
# Vocabulary: [PAD]=0, [unused1..99]=1..99, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103, then
# punctuation, single letters and their ## forms, common words, a few ## suffixes.
# No digits: a number becomes [UNK]. Every lowercase ASCII word can be spelled with letters, so
# words not in the list split into subwords (e.g. "guitar" -> "g ##u ##it ##ar"-like pieces).
# ---------------------------------------------------------------------------------------------
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
LETTERS = list(string.ascii_lowercase)
WORDS = """
the a an and or but if of to in on at by for with from up down out over under about into
is are was were be been being have has had do does did will would can could should may might
i you he she it we they me him her us them my your his its our their this that these those
what which who when where why how all some any no not very more most many much few
man woman men women child children boy girl dog cat horse bird fish people person someone
play plays playing played guitar music song piano instrument game ball team
eat eats eating food apple bread water drink cook kitchen
run runs running walk walks walking jump ride car bike road street city house home
go goes going went come came see saw look looks make made take took give get got
big small good bad new old young long short fast slow happy sad red blue green black white
day night time year today morning sun rain snow tree park field beach sea sky
read book write letter school student teacher work word sentence
is there here now then just also only still again yes hi hello
""".split()
SUFFIXES = ["##s", "##es", "##ing", "##ed", "##er", "##ly", "##est", "##ness", "##ful", "##less",
            "##it", "##ar", "##on", "##an", "##en", "##in"]


def build_vocab():
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert vocab.index("[UNK]") == 100 and vocab.index("[MASK]") == 103
    seen = set(vocab)

    def add(tok):
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)

    for t in PUNCT + LETTERS + ["##" + c for c in LETTERS] + WORDS + SUFFIXES:
        add(t)
    return vocab


def build_tokenizer(vocab):
    wp = WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                   continuing_subword_prefix="##", max_input_chars_per_word=100)
    tok = Tokenizer(wp)
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 101), ("[SEP]", 102)],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    # No padding / truncation stored in the file: sentence-transformers (through transformers)
    # sets both per call.
    tok.no_padding()
    tok.no_truncation()
    return tok


def config_dict(vocab_size):
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 64,
        "type_vocab_size": 2,
        "initializer_range": 0.2,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "use_cache": True,
    }


def random_state_dict(cfg, seed):
    """All BertModel tensors (with pooler), f32, drawn from a fixed-seed generator in a fixed order."""
    g = torch.Generator().manual_seed(seed)
    H, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    P, TT = cfg["max_position_embeddings"], cfg["type_vocab_size"]

    def normal(*shape, std=0.2):
        return torch.randn(*shape, generator=g, dtype=torch.float64).mul(std).float()

    def uniform(*shape, lo=-0.1, hi=0.1):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * (hi - lo) + lo).float()

    def gamma(n):
        return uniform(n, lo=0.9, hi=1.1)

    sd = {}
    sd["embeddings.word_embeddings.weight"] = normal(V, H)
    sd["embeddings.position_embeddings.weight"] = normal(P, H)
    sd["embeddings.token_type_embeddings.weight"] = normal(TT, H)
    sd["embeddings.LayerNorm.weight"] = gamma(H)
    sd["embeddings.LayerNorm.bias"] = uniform(H)
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        for n in ("query", "key", "value"):
            sd[p + f"attention.self.{n}.weight"] = normal(H, H)
            sd[p + f"attention.self.{n}.bias"] = uniform(H)
        sd[p + "attention.output.dense.weight"] = normal(H, H)
        sd[p + "attention.output.dense.bias"] = uniform(H)
        sd[p + "attention.output.LayerNorm.weight"] = gamma(H)
        sd[p + "attention.output.LayerNorm.bias"] = uniform(H)
        sd[p + "intermediate.dense.weight"] = normal(F, H)
        sd[p + "intermediate.dense.bias"] = uniform(F)
        sd[p + "output.dense.weight"] = normal(H, F)
        sd[p + "output.dense.bias"] = uniform(H)
        sd[p + "output.LayerNorm.weight"] = gamma(H)
        sd[p + "output.LayerNorm.bias"] = uniform(H)
    sd["pooler.dense.weight"] = normal(H, H)
    sd["pooler.dense.bias"] = uniform(H)
    return sd


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    out = args.out
    os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)

    vocab = build_vocab()
    cfg = config_dict(len(vocab))
    write_json(os.path.join(out, "config.json"), cfg)

    sd = random_state_dict(cfg, args.seed)
    # Check the names and shapes against transformers' own BertModel before writing.
    from transformers import BertConfig, BertModel
    ref = BertModel(BertConfig(**cfg)).state_dict()
    ref = {k: v for k, v in ref.items() if k != "embeddings.position_ids"}
    assert set(ref) == set(sd), (sorted(set(ref) ^ set(sd)))
    for k in ref:
        assert tuple(ref[k].shape) == tuple(sd[k].shape), k
    save_file({k: sd[k].contiguous() for k in sorted(sd)}, os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})

    tok = build_tokenizer(vocab)
    tok.save(os.path.join(out, "tokenizer.json"), pretty=True)
    with open(os.path.join(out, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in vocab))
    specials = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                "cls_token": "[CLS]", "mask_token": "[MASK]"}
    write_json(os.path.join(out, "special_tokens_map.json"), specials)
    write_json(os.path.join(out, "tokenizer_config.json"), {
        "tokenizer_class": "BertTokenizer", "do_lower_case": True, "do_basic_tokenize": True,
        "tokenize_chinese_chars": True, "strip_accents": None, "never_split": None,
        "model_max_length": cfg["max_position_embeddings"], **specials})

    write_json(os.path.join(out, "modules.json"), [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    write_json(os.path.join(out, "1_Pooling", "config.json"), {
        "word_embedding_dimension": cfg["hidden_size"],
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    write_json(os.path.join(out, "sentence_bert_config.json"), {"max_seq_length": 24, "do_lower_case": False})

    print(f"wrote {out}: vocab {len(vocab)}, {sum(v.numel() for v in sd.values())} parameters")
    for root, _, files in sorted(os.walk(out)):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            print(f"  {os.path.relpath(p, out):28s} {os.path.getsize(p):8d} bytes")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write tiny random sentence-transformers model folders (tests/fixtures/tiny-*/).

Presets (``--preset``, default tiny-bert; ``--preset all`` writes every one):

    tiny-bert          BertModel, WordPiece, mean pooling, max_seq_length 24          (seed 1234)
    tiny-bert-cls      tiny-bert's weights and tokenizer, CLS pooling (like the bge family)
    tiny-mpnet         MPNetModel (relative position bias), WordPiece with <s> <pad> </s> <unk>,
                       RobertaProcessing, mean pooling, max_seq_length 64             (seed 2345)
    tiny-mpnet-max     tiny-mpnet's weights and tokenizer, max pooling
    tiny-roberta       RobertaModel, byte-level BPE, mean pooling, max_seq_length 32  (seed 3456)
    tiny-xlm-roberta   XLMRobertaModel, SentencePiece-style Unigram (Metaspace), mean pooling,
                       max_seq_length 32                                              (seed 4567)
    tiny-mpnet-exact   an exact (shifted-reference) model over tiny-mpnet's folder: modules.json
                       only, with simattr's marker module; writes golden/tiny-mpnet-exact.json

Every network has 3 layers, hidden 32, 4 heads, ffn 64. A folder has the same layout as the real
model folders (all-MiniLM-L6-v2, all-mpnet-base-v2, all-distilroberta-v1, multilingual-e5):

    config.json                 the transformers config (model_type bert | mpnet | roberta | xlm-roberta)
    model.safetensors           f32, tensor names as <Arch>Model.save_pretrained writes them (no prefix)
    tokenizer.json              built with the `tokenizers` library, the same pipeline that
                                transformers' tokenizer class rebuilds from it (checked on write)
    vocab.txt | vocab.json + merges.txt   the vocabulary for the slow/legacy loaders (not XLM-R)
    tokenizer_config.json       so that transformers' AutoTokenizer loads it
    special_tokens_map.json
    modules.json                Transformer, Pooling (1_Pooling), Normalize (2_Normalize)
    1_Pooling/config.json       mean, cls or max pooling
    sentence_bert_config.json   max_seq_length

As in the real model folders there is no 2_Normalize directory (Normalize has no files, and git does
not keep empty directories); sentence-transformers loads Normalize without one.

Everything is deterministic (fixed seeds, explicit vocabularies, a BPE merge list learned by a
deterministic pure-Python loop, an explicit Unigram piece list with fixed scores); run it again and
the files come out byte-identical.

Usage: python make_tiny_model.py [--preset NAME|all] [--out DIR] [--seed N]
       python make_tiny_model.py --arch mpnet --pooling max --out /tmp/x   (a custom combination)
"""
import argparse
import json
import os
import string
from collections import Counter

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, Unigram, WordPiece

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures"))

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


# ---------------------------------------------------------------------------------------------
# MPNet (all-mpnet-base-v2's layout): WordPiece over tiny-bert's words, but with the fairseq
# specials <s>=0 <pad>=1 </s>=2 <unk>=3 first and <mask> last, and a RobertaProcessing
# post-processor (<s> $A </s>), exactly the pipeline transformers' MPNetTokenizer builds.
# (The real vocabulary keeps BERT's [PAD]/[unused]/[UNK]... after the four specials and uses
# [UNK]=104 as its unknown token; the tiny one leaves those out and uses <unk>=3.)
# ---------------------------------------------------------------------------------------------
FAIRSEQ_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def build_mpnet_vocab():
    vocab = list(FAIRSEQ_SPECIALS)
    seen = set(vocab)
    for t in PUNCT + LETTERS + ["##" + c for c in LETTERS] + WORDS + SUFFIXES:
        if t not in seen:
            seen.add(t)
            vocab.append(t)
    vocab.append("<mask>")
    return vocab


def build_mpnet_tokenizer(vocab):
    tok = Tokenizer(WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="<unk>",
                              continuing_subword_prefix="##", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0),
                                                      trim_offsets=True, add_prefix_space=False)
    tok.decoder = decoders.WordPiece(prefix="##")
    add_fairseq_specials(tok, vocab)
    return tok


def add_fairseq_specials(tok, vocab):
    from tokenizers import AddedToken
    specials = [AddedToken(t, special=True, normalized=False) for t in FAIRSEQ_SPECIALS]
    specials.append(AddedToken("<mask>", special=True, normalized=False, lstrip=True))
    tok.add_special_tokens(specials)
    for t in FAIRSEQ_SPECIALS + ["<mask>"]:
        assert tok.token_to_id(t) == vocab.index(t), t
    tok.no_padding()
    tok.no_truncation()


def mpnet_config(vocab_size, max_seq_length):
    return {
        "architectures": ["MPNetModel"],
        "model_type": "mpnet",
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": max_seq_length + 2,
        "initializer_range": 0.2,
        "layer_norm_eps": 1e-05,
        "relative_attention_num_buckets": 32,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    }


def mpnet_state_dict(cfg, seed):
    """All MPNetModel tensors (with pooler), f32, from a fixed-seed generator in a fixed order.
    Same distributions as tiny-bert, plus the relative attention bias table (32 buckets x heads)
    drawn from N(0, 1) so that it visibly matters (the real model's has std ~2.1)."""
    g = torch.Generator().manual_seed(seed)
    H, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    P = cfg["max_position_embeddings"]

    def normal(*shape, std=0.2):
        return torch.randn(*shape, generator=g, dtype=torch.float64).mul(std).float()

    def uniform(*shape, lo=-0.1, hi=0.1):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * (hi - lo) + lo).float()

    def gamma(n):
        return uniform(n, lo=0.9, hi=1.1)

    sd = {}
    sd["embeddings.word_embeddings.weight"] = normal(V, H)
    sd["embeddings.position_embeddings.weight"] = normal(P, H)
    sd["embeddings.LayerNorm.weight"] = gamma(H)
    sd["embeddings.LayerNorm.bias"] = uniform(H)
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        for n in ("q", "k", "v", "o"):
            sd[p + f"attention.attn.{n}.weight"] = normal(H, H)
            sd[p + f"attention.attn.{n}.bias"] = uniform(H)
        sd[p + "attention.LayerNorm.weight"] = gamma(H)
        sd[p + "attention.LayerNorm.bias"] = uniform(H)
        sd[p + "intermediate.dense.weight"] = normal(F, H)
        sd[p + "intermediate.dense.bias"] = uniform(F)
        sd[p + "output.dense.weight"] = normal(H, F)
        sd[p + "output.dense.bias"] = uniform(H)
        sd[p + "output.LayerNorm.weight"] = gamma(H)
        sd[p + "output.LayerNorm.bias"] = uniform(H)
    sd["encoder.relative_attention_bias.weight"] = normal(cfg["relative_attention_num_buckets"],
                                                          cfg["num_attention_heads"], std=1.0)
    sd["pooler.dense.weight"] = normal(H, H)
    sd["pooler.dense.bias"] = uniform(H)
    return sd


# ---------------------------------------------------------------------------------------------
# RoBERTa (all-distilroberta-v1's layout): byte-level BPE. Vocabulary: <s> <pad> </s> <unk>, the 256
# byte-level symbols (GPT-2's bytes_to_unicode, in byte order), the tokens of the learned merges in
# merge order, <mask> last. The merges are learned from BPE_CORPUS by a plain Python loop (most
# frequent adjacent pair, ties broken by the smaller pair in string order), so they are the same on
# every run and every tokenizers version. Pipeline as transformers' RobertaTokenizer builds it:
# ByteLevel(add_prefix_space=False) pre-tokenizer, BPE without unk, RobertaProcessing, ByteLevel decoder.
# ---------------------------------------------------------------------------------------------
BPE_MERGES = 240
BPE_CORPUS = " ".join(WORDS) + " " + " ".join(w.capitalize() for w in WORDS) + """
A man is playing a guitar. Someone plays an instrument. The cat sits on the mat.
A dog is lying on the rug. Children are playing in the park. Kids play outside in the sunshine.
The dogs were jumping happily in the garden. A cat runs in the park.
The children played in the park at seven o'clock! The quick brown fox jumps over the lazy dog.
"""


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode character map (byte order)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, (chr(c) for c in cs)))
    return [table[b] for b in range(256)]


def learn_bpe_merges(corpus, n_merges):
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    counts = Counter(piece for piece, _ in pre.pre_tokenize_str(corpus))
    words = {tuple(w): c for w, c in sorted(counts.items())}
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        (a, b), _ = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        merges.append((a, b))
        new_words = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + c
        words = new_words
    return merges


def build_roberta_vocab():
    vocab = list(FAIRSEQ_SPECIALS)
    seen = set(vocab)
    for t in bytes_to_unicode():
        assert t not in seen
        seen.add(t)
        vocab.append(t)
    merges = learn_bpe_merges(BPE_CORPUS, BPE_MERGES)
    for a, b in merges:
        if a + b not in seen:
            seen.add(a + b)
            vocab.append(a + b)
    vocab.append("<mask>")
    return vocab, merges


def build_roberta_tokenizer(vocab, merges):
    tok = Tokenizer(BPE({t: i for i, t in enumerate(vocab)}, merges, dropout=None,
                        continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0),
                                                      trim_offsets=True, add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    add_fairseq_specials(tok, vocab)
    return tok


def roberta_config(vocab_size, max_seq_length, model_type):
    return {
        "architectures": ["XLMRobertaModel" if model_type == "xlm-roberta" else "RobertaModel"],
        "model_type": model_type,
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": max_seq_length + 2,
        "type_vocab_size": 1,
        "initializer_range": 0.2,
        "layer_norm_eps": 1e-05,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "position_embedding_type": "absolute",
        "use_cache": True,
    }


# ---------------------------------------------------------------------------------------------
# XLM-RoBERTa: a SentencePiece-style Unigram tokenizer.json, pipeline as transformers'
# XLMRobertaTokenizer builds it: no normalizer (the real one has a Precompiled charsmap, which the
# tiny one leaves out), WhitespaceSplit + Metaspace("▁", prepend_scheme always), Unigram with
# unk_id 3, TemplateProcessing <s> $A </s>, Metaspace decoder. The piece list is explicit, with
# fixed scores (log-probability-like: whole words beat their pieces, single characters are the
# fallback), and covers ASCII, accented Latin, Greek and Cyrillic, so that multilingual text
# tokenizes into real pieces; a character outside the list (e.g. a CJK character or an emoji)
# becomes <unk>.
# ---------------------------------------------------------------------------------------------
SP = "\u2581"  # ▁
XLMR_CHARS = (PUNCT + list("0123456789") + LETTERS + list(string.ascii_uppercase)
              + list("äöüßéèêàâçñíóúÄÖÜÉ")
              + list("αβγδεζηθικλμνξοπρσςτυφχψωάέήίόύώΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ")
              + list("абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ"))
XLMR_CAPITALIZED = """the a an someone children kids there this it he she they we i what
man woman dog cat""".split()
XLMR_MULTI_WORDS = """
Der Die Das der die das den dem ein eine einen Mann Frau spielt spielen Gitarre Kinder Kind im
Park Katze sitzt auf Matte Hund Jemand Instrument über schön Straße Mädchen und ist nicht grün
Größe draußen Sonne
Мужчина играет на гитаре Кошка кошка сидит коврике Дети дети играют в парке Кто инструменте и не
собака солнце улице
Ο ο άντρας παίζει κιθάρα η γάτα και το τα παιδιά στο πάρκο
café él niño está
""".split()
XLMR_SUFFIXES = """s es ing ed er ly est ness ful less en ung ch sch ie ei st te
ет ют ой ая ие ть ов ом ах ка
ος ας ες ει""".split()


def build_xlmr_pieces():
    pieces = [(t, 0.0) for t in FAIRSEQ_SPECIALS]
    seen = set(t for t, _ in pieces)

    def add(t, score):
        if t not in seen:
            seen.add(t)
            pieces.append((t, score))

    add(SP, -2.0)
    for i, w in enumerate(WORDS):
        add(SP + w, -4.0 - 0.001 * i)
    for i, w in enumerate(XLMR_CAPITALIZED):
        add(SP + w.capitalize(), -4.5 - 0.001 * i)
    for i, w in enumerate(XLMR_MULTI_WORDS):
        add(SP + w, -4.5 - 0.001 * i)
    for i, s in enumerate(SUFFIXES):
        add(s[2:], -6.0 - 0.001 * i)
    for i, s in enumerate(XLMR_SUFFIXES):
        add(s, -6.0 - 0.001 * i)
    for i, c in enumerate(XLMR_CHARS):
        add(c, -8.0 - 0.001 * i)
    pieces.append(("<mask>", 0.0))
    return pieces


def build_xlmr_tokenizer(pieces):
    vocab = [t for t, _ in pieces]
    tok = Tokenizer(Unigram(pieces, unk_id=3, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement=SP, prepend_scheme="always", split=True),
    ])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tok.decoder = decoders.Metaspace(replacement=SP, prepend_scheme="always", split=True)
    add_fairseq_specials(tok, vocab)
    return tok


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


POOLING_KEYS = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens",
                "max": "pooling_mode_max_tokens"}


def write_sentence_transformers_files(out, hidden, pooling, max_seq_length):
    write_json(os.path.join(out, "modules.json"), [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    write_json(os.path.join(out, "1_Pooling", "config.json"), {
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    write_json(os.path.join(out, "sentence_bert_config.json"), {"max_seq_length": max_seq_length, "do_lower_case": False})


def save_weights(out, sd, model_cls, config_cls, cfg):
    """Check the names and shapes against transformers' own model class, then write f32 safetensors."""
    ref = model_cls(config_cls(**cfg)).state_dict()
    ref = {k: v for k, v in ref.items() if not k.endswith(("position_ids", "token_type_ids"))}
    assert set(ref) == set(sd), (sorted(set(ref) ^ set(sd)))
    for k in ref:
        assert tuple(ref[k].shape) == tuple(sd[k].shape), k
    save_file({k: sd[k].contiguous() for k in sorted(sd)}, os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})


def write_bert(out, seed, pooling, max_seq_length):
    vocab = build_vocab()
    cfg = config_dict(len(vocab))
    write_json(os.path.join(out, "config.json"), cfg)

    sd = random_state_dict(cfg, seed)
    from transformers import BertConfig, BertModel
    save_weights(out, sd, BertModel, BertConfig, cfg)

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
    write_sentence_transformers_files(out, cfg["hidden_size"], pooling, max_seq_length)
    return cfg, sd


FAIRSEQ_SPECIALS_MAP = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                        "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"}


def write_mpnet(out, seed, pooling, max_seq_length):
    vocab = build_mpnet_vocab()
    cfg = mpnet_config(len(vocab), max_seq_length)
    write_json(os.path.join(out, "config.json"), cfg)
    sd = mpnet_state_dict(cfg, seed)
    from transformers import MPNetConfig, MPNetModel
    save_weights(out, sd, MPNetModel, MPNetConfig, cfg)

    tok = build_mpnet_tokenizer(vocab)
    tok.save(os.path.join(out, "tokenizer.json"), pretty=True)
    with open(os.path.join(out, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in vocab))
    write_json(os.path.join(out, "special_tokens_map.json"), FAIRSEQ_SPECIALS_MAP)
    write_json(os.path.join(out, "tokenizer_config.json"), {
        "tokenizer_class": "MPNetTokenizer", "do_lower_case": True, "tokenize_chinese_chars": True,
        "strip_accents": None, "model_max_length": max_seq_length, **FAIRSEQ_SPECIALS_MAP})
    write_sentence_transformers_files(out, cfg["hidden_size"], pooling, max_seq_length)
    return cfg, sd


def write_roberta(out, seed, pooling, max_seq_length):
    vocab, merges = build_roberta_vocab()
    cfg = roberta_config(len(vocab), max_seq_length, "roberta")
    write_json(os.path.join(out, "config.json"), cfg)
    sd = random_state_dict(cfg, seed)  # RobertaModel's tensor names are BertModel's
    from transformers import RobertaConfig, RobertaModel
    save_weights(out, sd, RobertaModel, RobertaConfig, cfg)

    tok = build_roberta_tokenizer(vocab, merges)
    tok.save(os.path.join(out, "tokenizer.json"), pretty=True)
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    write_json(os.path.join(out, "special_tokens_map.json"), FAIRSEQ_SPECIALS_MAP)
    write_json(os.path.join(out, "tokenizer_config.json"), {
        "tokenizer_class": "RobertaTokenizer", "add_prefix_space": False, "trim_offsets": True,
        "errors": "replace", "model_max_length": max_seq_length, **FAIRSEQ_SPECIALS_MAP})
    write_sentence_transformers_files(out, cfg["hidden_size"], pooling, max_seq_length)
    return cfg, sd


def write_xlm_roberta(out, seed, pooling, max_seq_length):
    pieces = build_xlmr_pieces()
    cfg = roberta_config(len(pieces), max_seq_length, "xlm-roberta")
    write_json(os.path.join(out, "config.json"), cfg)
    sd = random_state_dict(cfg, seed)  # XLMRobertaModel's tensor names are BertModel's
    from transformers import XLMRobertaConfig, XLMRobertaModel
    save_weights(out, sd, XLMRobertaModel, XLMRobertaConfig, cfg)

    tok = build_xlmr_tokenizer(pieces)
    tok.save(os.path.join(out, "tokenizer.json"), pretty=True)
    write_json(os.path.join(out, "special_tokens_map.json"), FAIRSEQ_SPECIALS_MAP)
    write_json(os.path.join(out, "tokenizer_config.json"), {
        "tokenizer_class": "XLMRobertaTokenizer", "add_prefix_space": True,
        "model_max_length": max_seq_length, **FAIRSEQ_SPECIALS_MAP})
    write_sentence_transformers_files(out, cfg["hidden_size"], pooling, max_seq_length)
    return cfg, sd


WRITERS = {"bert": write_bert, "mpnet": write_mpnet, "roberta": write_roberta, "xlm-roberta": write_xlm_roberta}

# name -> (arch, pooling, seed, max_seq_length)
PRESETS = {
    "tiny-bert": ("bert", "mean", 1234, 24),
    "tiny-bert-cls": ("bert", "cls", 1234, 24),
    "tiny-mpnet": ("mpnet", "mean", 2345, 64),
    "tiny-mpnet-max": ("mpnet", "max", 2345, 64),
    "tiny-roberta": ("roberta", "mean", 3456, 32),
    "tiny-xlm-roberta": ("xlm-roberta", "mean", 4567, 32),
}

# Texts the loaders are checked on after writing (transformers' AutoTokenizer, sentence-transformers'
# tokenizer and the bare tokenizers library reading tokenizer.json must agree).
CHECK_TEXTS = [
    "hi", "A man is playing a guitar.", "Someone plays an instrument.",
    "The children played in the park at 7 o'clock!", "Café prices rose 7% in 2023 ☃",
    "  double  spaces\tand\nnewlines  ", "UPPER lower MiXeD", "naïve façade über straße",
    "Der Mann spielt Gitarre.", "Мужчина играет на гитаре.", "Ο άντρας παίζει κιθάρα.", "猫が好き",
    "The quick brown fox jumps over the lazy dog near the riverbank while the children are watching "
    "from the old bridge, and a man is playing a guitar in the park as the sun goes down over the sea.",
]


def check_folder(out, max_seq_length):
    """The folder loads with transformers (AutoModel, AutoTokenizer) and sentence-transformers, and
    all three tokenizer paths give the same ids."""
    import warnings
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer
    AutoModel.from_pretrained(out)
    hf = AutoTokenizer.from_pretrained(out)
    raw = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    raw.no_padding()
    raw.enable_truncation(max_length=max_seq_length)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = SentenceTransformer(out, device="cpu")
    assert st.max_seq_length == max_seq_length, st.max_seq_length
    for text in CHECK_TEXTS:
        a = raw.encode(text).ids
        b = hf(text, truncation=True, max_length=max_seq_length)["input_ids"]
        fn = getattr(st, "preprocess", None) or st.tokenize
        c = fn([text])["input_ids"][0].tolist()
        assert a == b == c, (out, text, a, b, c)
    emb = st.encode(CHECK_TEXTS[:3])
    assert emb.shape == (3, 32), emb.shape
    return hf


EXACT_TEXTS = ["A man is playing a guitar.", "Someone plays an instrument.", "hi",
               "The children played in the park at 7 o'clock!"]


def write_exact(out, base):
    """An exact (shifted-reference) model over the weights of `base`: a modules.json whose
    Transformer and Pooling modules point into ../<base>, with simattr's marker module between
    them. Beside it, golden/<name>.json: its embeddings computed as xsbert's
    ShiftingReferenceTransformer does (the token states of the reference input of the same
    length, <s> <pad>... </s>, subtracted before mean pooling), with sentence-transformers."""
    import torch
    from sentence_transformers import SentenceTransformer
    os.makedirs(out, exist_ok=True)
    rel = os.path.join("..", base)
    write_json(os.path.join(out, "modules.json"), [
        {"idx": 0, "name": "0", "path": rel, "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "shifted_reference", "path": "", "type": "simattr.ShiftedReference"},
        {"idx": 2, "name": "1", "path": os.path.join(rel, "1_Pooling"), "type": "sentence_transformers.models.Pooling"},
    ])
    st = SentenceTransformer(os.path.join(FIXTURES, base), device="cpu").double()
    tok = st.tokenizer
    embeddings = []
    for text in EXACT_TEXTS:
        ids = st.tokenize([text])["input_ids"][0].tolist()
        ref = [tok.bos_token_id] + [tok.pad_token_id] * (len(ids) - 2) + [tok.eos_token_id]
        with torch.no_grad():
            states = st[0].auto_model(input_ids=torch.tensor([ids, ref])).last_hidden_state
        embeddings.append((states[0] - states[1]).mean(0).tolist())
    golden = {"generator": "tests/reference/make_tiny_model.py write_exact", "model": os.path.basename(out),
              "base": base, "texts": EXACT_TEXTS, "embeddings": embeddings}
    write_json(os.path.join(FIXTURES, "golden", os.path.basename(out) + ".json"), golden)
    print(f"wrote {out} (exact model over {base}) and its golden embeddings")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=None, choices=sorted(PRESETS) + ["tiny-mpnet-exact", "all"],
                    help="which fixture to write (default tiny-bert); 'all' writes every preset")
    ap.add_argument("--arch", choices=sorted(WRITERS), help="custom: architecture (needs --out)")
    ap.add_argument("--pooling", choices=sorted(POOLING_KEYS), help="custom: pooling mode")
    ap.add_argument("--max-seq-length", type=int, help="custom: max_seq_length")
    ap.add_argument("--out", default=None, help="output folder (default tests/fixtures/<preset>)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--no-check", action="store_true", help="skip the loader checks after writing")
    args = ap.parse_args()

    if args.preset == "tiny-mpnet-exact" or args.preset == "all":
        write_exact(os.path.join(FIXTURES, "tiny-mpnet-exact"), "tiny-mpnet")
        if args.preset != "all":
            return
    if args.preset == "all":
        assert args.out is None and args.seed is None and args.arch is None, "--preset all takes no other option"
        jobs = [(name, os.path.join(FIXTURES, name), *PRESETS[name]) for name in PRESETS]
    else:
        name = args.preset or ("tiny-bert" if args.arch is None else None)
        arch, pooling, seed, msl = PRESETS[name] if name else (args.arch, "mean", 1234, 24)
        arch = args.arch or arch
        pooling = args.pooling or pooling
        seed = seed if args.seed is None else args.seed
        msl = args.max_seq_length or msl
        out = args.out or (os.path.join(FIXTURES, name) if name else None)
        assert out, "--arch without --preset needs --out"
        jobs = [(name or "custom", out, arch, pooling, seed, msl)]

    for name, out, arch, pooling, seed, msl in jobs:
        os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)
        cfg, sd = WRITERS[arch](out, seed, pooling, msl)
        print(f"wrote {out} ({name}: {arch}, {pooling} pooling, seed {seed}, max_seq_length {msl}): "
              f"vocab {cfg['vocab_size']}, {sum(v.numel() for v in sd.values())} parameters")
        total = 0
        for root, _, files in sorted(os.walk(out)):
            for fn in sorted(files):
                p = os.path.join(root, fn)
                total += os.path.getsize(p)
                print(f"  {os.path.relpath(p, out):28s} {os.path.getsize(p):8d} bytes")
        print(f"  {'total':28s} {total:8d} bytes")
        if not args.no_check:
            hf = check_folder(out, msl)
            ids = hf("A man is playing a guitar.")["input_ids"]
            print(f"  loads with transformers and sentence-transformers; 'A man is playing a guitar.' -> "
                  f"{ids} {hf.convert_ids_to_tokens(ids)}")


if __name__ == "__main__":
    main()

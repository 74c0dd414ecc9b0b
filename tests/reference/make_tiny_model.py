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
    tiny-t5            T5EncoderModel (gated-gelu, relative buckets 8 / max distance 20), Unigram
                       with <pad>=0 </s>=1 <unk>=2 and $A </s>, mean pooling, Dense 32->24 without
                       bias (Identity), Normalize, max_seq_length 32                   (seed 5678)
    tiny-t5-relu       as tiny-t5 with feed_forward_proj relu, Dense 32->16 with bias (Tanh) (seed 6789)
    tiny-bert-lasttoken     tiny-bert's weights and tokenizer, lasttoken pooling, Dense 32->20 (bias,
                            Tanh), Dense 20->16 (bias, Identity), Normalize       (Dense seed 7890)
    tiny-bert-weightedmean  tiny-bert's weights and tokenizer, weightedmean pooling (include_prompt
                            true), prompts query "query: " / document "passage: "
    tiny-bert-sqrtlen       tiny-bert's weights and tokenizer, mean_sqrt_len_tokens pooling with
                            include_prompt false, prompts query "query: " / document ""
    tiny-qwen3         Qwen3Model (causal, GQA 4/2 heads, QK-norm, RoPE θ 1e6), byte-level BPE that
                       appends <|endoftext|>, lasttoken pooling, Qwen3-Embedding's prompts,
                       max_seq_length 64                                              (seed 8901)
    tiny-gemma3        Gemma3TextModel with bidirectional attention (layers 0, 1 sliding window 4,
                       layer 2 full; 4 query heads, 1 KV head, head_dim 16), Gemma-style BPE with
                       byte fallback and <bos> $A <eos>, mean pooling, Dense 32->48 and 48->32 (no
                       bias, Identity), EmbeddingGemma's prompts, max_seq_length 64    (seed 9012)
    tiny-modernbert    ModernBertModel (layer 0 global, 1 and 2 local with local_attention 4, GeGLU),
                       tiny-bert's WordPiece tokenizer, mean pooling, max_seq_length 32 (seed 123)
                       (the three rotary folders also hold config.legacy.json: the same config in the
                       older key names)
    tiny-nomic-bert    NomicBERT (nomic-embed-text-v1.5's remote-code layout: GPT-2-style config keys,
                       rotary θ 1000, SwiGLU, post-LN, no biases), tiny-bert's tokenizer, mean pooling,
                       prompts search_query: / search_document:, max_seq_length 64   (seed 4321)
    tiny-jina-bert     JinaBERT v2 (jina-embeddings-v2-base-en's remote-code layout: symmetric ALiBi,
                       GeGLU with its own residual LayerNorm), tiny-bert's tokenizer, mean pooling,
                       max_seq_length 32                                              (seed 5432)
                       (both written directly and checked against nomic_jina_reference.py's own
                       references, since transformers has no class that reads them)

Every network has 3 layers, hidden 32, 4 heads, ffn 64 (Gemma3 and ModernBERT: ffn 48). A folder has the same layout as the real
model folders (all-MiniLM-L6-v2, all-mpnet-base-v2, all-distilroberta-v1, multilingual-e5; the
variants add Dense modules (k_Dense/config.json + model.safetensors as Dense.save writes them),
the pooling config's include_prompt and config_sentence_transformers.json with prompts):

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
import math
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


def learn_bpe_merges(corpus, n_merges, pre=None):
    """Merges learned from `corpus`, pre-tokenized by `pre` (default: GPT-2's ByteLevel with its regex,
    as RobertaTokenizer; tiny-qwen3 passes Qwen2Tokenizer's Split + ByteLevel)."""
    if pre is None:
        pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    counts = Counter(piece for piece, _ in pre.pre_tokenize_str(corpus))
    return learn_merges_from_counts(counts, n_merges)


def learn_merges_from_counts(counts, n_merges):
    """Most frequent adjacent pair first, ties broken by the smaller pair in string order; `counts`
    maps each pre-token (a string, one symbol per character) to its frequency."""
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

    write_wordpiece_tokenizer(out, vocab, cfg["max_position_embeddings"])
    write_sentence_transformers_files(out, cfg["hidden_size"], pooling, max_seq_length)
    return cfg, sd


def write_wordpiece_tokenizer(out, vocab, model_max_length):
    """tiny-bert's tokenizer files (tokenizer.json, vocab.txt, special_tokens_map.json,
    tokenizer_config.json with BertTokenizer); also tiny-modernbert's."""
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
        "model_max_length": model_max_length, **specials})


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


# ---------------------------------------------------------------------------------------------
# T5 encoder (the sentence-t5 / GTR / INSTRUCTOR layout): T5EncoderModel, a SentencePiece-style
# Unigram tokenizer.json with T5's specials <pad>=0 </s>=1 <unk>=2 and a post-processor that only
# appends </s> ($A </s>), then Pooling, Dense and Normalize modules.
#
# Tokenizer pipeline exactly as transformers' T5Tokenizer rebuilds it from tokenizer.json: no
# normalizer (the real one has a Precompiled charsmap, left out as in tiny-xlm-roberta),
# WhitespaceSplit + Metaspace("▁", prepend_scheme always, split), Unigram with unk_id 2 and no byte
# fallback, TemplateProcessing $A </s>, Metaspace decoder; tokenizer_config.json sets extra_ids 0
# (no <extra_id_N> sentinels). Pieces: tiny-bert's English words as ▁word, a few capitalized
# words, the suffixes, and single characters (ASCII, digits, a few accented letters) as the
# fallback; case is kept (T5 is cased). config vocab_size is the piece count rounded up to a
# multiple of 16 (real T5: 32128 rows for 32100 tokens): the rows past the tokenizer are random
# and never looked up.
#
# Weights (T5's default init and std-0.02 inits give near-uniform attention and tiny signals, so
# they are re-drawn with these scales, all from one seeded generator, in file order):
#   shared.weight (token table)                      N(0, 1)
#   SelfAttention.q, .k                              N(0, 0.15²)   (T5 does not scale QKᵀ by 1/√d)
#   SelfAttention.v, .o                              N(0, 0.2²)
#   block 0 relative_attention_bias.weight [8, 4]    N(0, 1)
#   DenseReluDense.wi / .wi_0 / .wi_1                N(0, 0.2²)
#   DenseReluDense.wo                                N(0, 0.15²)
#   every layer_norm.weight and final_layer_norm     1 + 0.1 · N(0, 1)
#   Dense modules: weight N(0, 0.3²), bias U(-0.1, 0.1)   (drawn after the encoder, same generator)
# The safetensors file is what T5EncoderModel.save_pretrained writes: the token table only as
# shared.weight (encoder.embed_tokens.weight is tied to it and not stored), no biases anywhere.
# ---------------------------------------------------------------------------------------------
T5_SPECIALS = ["<pad>", "</s>", "<unk>"]
T5_CHARS = PUNCT + list("0123456789") + LETTERS + list(string.ascii_uppercase) + list("äöüßéèàçñ")
T5_STD = {"embed": 1.0, "qk": 0.15, "vo": 0.2, "rel_bias": 1.0, "wi": 0.2, "wo": 0.15, "norm": 0.1,
          "dense": 0.3, "dense_bias": 0.1}


def build_t5_pieces():
    pieces = [(t, 0.0) for t in T5_SPECIALS]
    seen = set(T5_SPECIALS)

    def add(t, score):
        if t not in seen:
            seen.add(t)
            pieces.append((t, score))

    add(SP, -2.0)
    for i, w in enumerate(WORDS):
        add(SP + w, -4.0 - 0.001 * i)
    for i, w in enumerate(XLMR_CAPITALIZED):
        add(SP + w.capitalize(), -4.5 - 0.001 * i)
    for i, s in enumerate(SUFFIXES):
        add(s[2:], -6.0 - 0.001 * i)
    for i, c in enumerate(T5_CHARS):
        add(c, -8.0 - 0.001 * i)
    return pieces


def build_t5_tokenizer(pieces):
    from tokenizers import AddedToken
    tok = Tokenizer(Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement=SP, prepend_scheme="always", split=True),
    ])
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    tok.decoder = decoders.Metaspace(replacement=SP, prepend_scheme="always", split=True)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in T5_SPECIALS])
    for i, t in enumerate(T5_SPECIALS):
        assert tok.token_to_id(t) == i, t
    tok.no_padding()
    tok.no_truncation()
    return tok


def t5_config(vocab_size, feed_forward_proj):
    gated = feed_forward_proj.startswith("gated-")
    return {
        "architectures": ["T5EncoderModel"],
        "model_type": "t5",
        "vocab_size": vocab_size,
        "d_model": 32,
        "d_kv": 8,
        "d_ff": 64,
        "num_layers": 3,
        "num_heads": 4,
        "relative_attention_num_buckets": 8,
        "relative_attention_max_distance": 20,
        "feed_forward_proj": feed_forward_proj,
        # informational, as flan-t5's config.json has them: T5Config derives both from feed_forward_proj
        "dense_act_fn": "gelu_new" if feed_forward_proj == "gated-gelu" else feed_forward_proj.split("-")[-1],
        "is_gated_act": gated,
        "layer_norm_epsilon": 1e-06,
        "dropout_rate": 0.1,
        "initializer_factor": 1.0,
        "is_encoder_decoder": True,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }


def t5_state_dict(cfg, g):
    """T5EncoderModel's tensors (f32) from the generator g, in file order (see the scales above)."""
    H, F, V = cfg["d_model"], cfg["d_ff"], cfg["vocab_size"]
    inner = cfg["num_heads"] * cfg["d_kv"]
    gated = cfg["feed_forward_proj"].startswith("gated-")

    def normal(*shape, std):
        return torch.randn(*shape, generator=g, dtype=torch.float64).mul(std).float()

    def norm_weight(n):
        return (1.0 + T5_STD["norm"] * torch.randn(n, generator=g, dtype=torch.float64)).float()

    sd = {"shared.weight": normal(V, H, std=T5_STD["embed"])}
    for l in range(cfg["num_layers"]):
        p = f"encoder.block.{l}.layer."
        sd[p + "0.layer_norm.weight"] = norm_weight(H)
        sd[p + "0.SelfAttention.q.weight"] = normal(inner, H, std=T5_STD["qk"])
        sd[p + "0.SelfAttention.k.weight"] = normal(inner, H, std=T5_STD["qk"])
        sd[p + "0.SelfAttention.v.weight"] = normal(inner, H, std=T5_STD["vo"])
        sd[p + "0.SelfAttention.o.weight"] = normal(H, inner, std=T5_STD["vo"])
        if l == 0:
            sd[p + "0.SelfAttention.relative_attention_bias.weight"] = normal(
                cfg["relative_attention_num_buckets"], cfg["num_heads"], std=T5_STD["rel_bias"])
        sd[p + "1.layer_norm.weight"] = norm_weight(H)
        for n in (("wi_0", "wi_1") if gated else ("wi",)):
            sd[p + f"1.DenseReluDense.{n}.weight"] = normal(F, H, std=T5_STD["wi"])
        sd[p + "1.DenseReluDense.wo.weight"] = normal(H, F, std=T5_STD["wo"])
    sd["encoder.final_layer_norm.weight"] = norm_weight(H)
    return sd


def dense_weights(g, specs, in_features, std, bias_range):
    """Weights of a chain of Dense modules [(out, bias, activation)]: weight N(0, std²) (out x in),
    bias U(-bias_range, bias_range), drawn from g in module order (weight, then bias)."""
    out = []
    for n_out, bias, act in specs:
        w = torch.randn(n_out, in_features, generator=g, dtype=torch.float64).mul(std).float()
        b = ((torch.rand(n_out, generator=g, dtype=torch.float64) * 2 - 1) * bias_range).float() if bias else None
        out.append((in_features, n_out, w, b, act))
        in_features = n_out
    return out


DENSE_ACTIVATIONS = {"Identity": "torch.nn.modules.linear.Identity", "Tanh": "torch.nn.modules.activation.Tanh"}


def write_modules(out, hidden, pooling, max_seq_length, include_prompt=True, dense=(), prompts=None):
    """modules.json (Transformer, Pooling, Dense..., Normalize), 1_Pooling/config.json in the legacy
    pooling_mode_* form that real folders use (plus include_prompt), the Dense modules written by
    sentence-transformers' own Dense.save (config.json + model.safetensors with linear.weight and
    linear.bias), sentence_bert_config.json and, when prompts are given,
    config_sentence_transformers.json. No Normalize directory (as in the real folders)."""
    import shutil
    from sentence_transformers.sentence_transformer.modules import Dense
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    for in_f, out_f, w, b, act in dense:
        idx = len(modules)
        path = f"{idx}_Dense"
        modules.append({"idx": idx, "name": str(idx), "path": path, "type": "sentence_transformers.models.Dense"})
        shutil.rmtree(os.path.join(out, path), ignore_errors=True)
        os.makedirs(os.path.join(out, path))
        act_module = getattr(torch.nn, act)()
        d = Dense(in_f, out_f, bias=b is not None, activation_function=act_module, init_weight=w.clone(),
                  init_bias=None if b is None else b.clone())
        assert d.get_config_dict()["activation_function"] == DENSE_ACTIVATIONS[act]
        d.save(os.path.join(out, path))
    idx = len(modules)
    modules.append({"idx": idx, "name": str(idx), "path": f"{idx}_Normalize",
                    "type": "sentence_transformers.models.Normalize"})
    write_json(os.path.join(out, "modules.json"), modules)
    os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)
    write_json(os.path.join(out, "1_Pooling", "config.json"), {
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": pooling == "mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens": pooling == "weightedmean",
        "pooling_mode_lasttoken": pooling == "lasttoken",
        "include_prompt": include_prompt,
    })
    write_json(os.path.join(out, "sentence_bert_config.json"), {"max_seq_length": max_seq_length, "do_lower_case": False})
    if prompts is not None:
        write_json(os.path.join(out, "config_sentence_transformers.json"), {
            "prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"})


def write_t5(out, seed, feed_forward_proj, pooling, dense_specs, max_seq_length):
    import tempfile
    import shutil
    from transformers import T5Config, T5EncoderModel
    pieces = build_t5_pieces()
    vocab_size = (len(pieces) + 15) // 16 * 16
    cfg = t5_config(vocab_size, feed_forward_proj)
    write_json(os.path.join(out, "config.json"), cfg)
    g = torch.Generator().manual_seed(seed)
    sd = t5_state_dict(cfg, g)
    dense = dense_weights(g, dense_specs, cfg["d_model"], T5_STD["dense"], T5_STD["dense_bias"])

    # Through transformers' own class: the names must be exactly its parameters (the tied
    # encoder.embed_tokens.weight aside), and save_pretrained decides what the file holds.
    config = T5Config(**cfg)
    assert config.dense_act_fn == cfg["dense_act_fn"] and config.is_gated_act == cfg["is_gated_act"]
    model = T5EncoderModel(config)
    own = {k for k in model.state_dict() if k != "encoder.embed_tokens.weight"}
    assert own == set(sd), sorted(own ^ set(sd))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert missing == ["encoder.embed_tokens.weight"] and not unexpected, (missing, unexpected)
    assert model.encoder.embed_tokens.weight.data_ptr() == model.shared.weight.data_ptr()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.copyfile(os.path.join(tmp, "model.safetensors"), os.path.join(out, "model.safetensors"))
    from safetensors.torch import load_file
    written = load_file(os.path.join(out, "model.safetensors"))
    assert set(written) == set(sd), sorted(set(written) ^ set(sd))
    assert all(torch.equal(written[k], sd[k]) for k in sd)

    tok = build_t5_tokenizer(pieces)
    tok.save(os.path.join(out, "tokenizer.json"), pretty=True)
    specials = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    write_json(os.path.join(out, "special_tokens_map.json"), specials)
    write_json(os.path.join(out, "tokenizer_config.json"), {
        "tokenizer_class": "T5Tokenizer", "extra_ids": 0, "additional_special_tokens": [],
        "model_max_length": max_seq_length, **specials})
    write_modules(out, cfg["d_model"], pooling, max_seq_length, dense=dense)
    return cfg, {**sd, **{f"{i + 2}_Dense.linear.{n}": t for i, d in enumerate(dense)
                          for n, t in (("weight", d[2]), ("bias", d[3])) if t is not None}}


# ---------------------------------------------------------------------------------------------
# Rotary-position families: Qwen3 (Qwen3-Embedding's layout: causal decoder, GQA, QK-norm, lasttoken
# pooling, a byte-level BPE tokenizer that appends <|endoftext|>), Gemma3 with bidirectional
# attention (EmbeddingGemma's layout: Gemma3TextModel, sliding and full layers, (1 + w) RMSNorm
# before and after each sublayer, embeddings scaled by sqrt(hidden), mean pooling, two Dense
# modules) and ModernBERT (global and local attention layers, GeGLU, LayerNorm without bias).
#
# Each folder is written through transformers' own model class: the state dict drawn here is loaded
# into <Class>(config) (strict: the names must be exactly its parameters) and <Class>.save_pretrained
# writes config.json (transformers 5.23's format: rope_parameters, layer_types) and model.safetensors.
# Beside config.json, config.legacy.json holds the same configuration in the older key names real
# Hub folders use (rope_theta / rope_local_base_freq / global_rope_theta, local_rope_theta,
# sliding_window_pattern, global_attn_every_n_layers, no rope_parameters / layer_types);
# make_tiny_model.py checks that transformers reads both to the same configuration and outputs.
#
# Weights: transformers' inits (std 0.02, norm weights 1 or 0) give near-uniform attention; the
# scales below (all from one seeded generator, in the order listed) give attention rows far from
# uniform and O(1) activations (check_lively asserts both).
#   tiny-qwen3 (seed 8901): embed_tokens N(0, 1); per layer input_layernorm 1 + 0.1 N; q_proj,
#     k_proj, v_proj, o_proj N(0, 0.2²); q_norm, k_norm 1.5 + 0.3 N (QK-norm sets the temperature:
#     q and k are RMS-normalized per head); post_attention_layernorm 1 + 0.1 N; gate_proj, up_proj
#     N(0, 0.2²), down_proj N(0, 0.15²); then norm 1 + 0.1 N.
#   tiny-gemma3 (seed 9012): embed_tokens N(0, 0.2²) (times sqrt(32) in the model); per layer
#     input_layernorm w ~ 0.1 N (the norm multiplies by 1 + w); q_proj, k_proj, v_proj, o_proj
#     N(0, 0.2²); q_norm, k_norm w ~ 0.8 + 0.2 N; post_attention_layernorm,
#     pre_feedforward_layernorm, post_feedforward_layernorm w ~ 0.1 N; gate_proj, up_proj N(0, 0.2²),
#     down_proj N(0, 0.15²); then norm w ~ 0.1 N; then the Dense modules N(0, 0.2²).
#   tiny-modernbert (seed 123): tok_embeddings N(0, 1), embeddings.norm 1 + 0.1 N; per layer
#     attn_norm (layers 1, 2; layer 0 has none) 1 + 0.1 N, Wqkv N(0, 0.25²), attn.Wo N(0, 0.2²),
#     mlp_norm 1 + 0.1 N, Wi N(0, 0.2²), mlp.Wo N(0, 0.15²); then final_norm 1 + 0.1 N.
# ---------------------------------------------------------------------------------------------
QWEN3_PROMPTS = {"query": "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:",
                 "document": ""}
GEMMA3_PROMPTS = {"query": "task: search result | query: ", "document": "title: none | text: "}
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2Tokenizer's pre-tokenizer regex (transformers/models/qwen2/tokenization_qwen2.py, checked on write)
QWEN_PRETOKENIZE_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                          r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN_MERGES = 300
# The prompts are in the corpora (four times) so that they tokenize into a few pieces each.
QWEN_CORPUS = BPE_CORPUS + ("\n" + QWEN3_PROMPTS["query"] + " ") * 4
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
GEMMA_CHARS = [SP] + PUNCT + list("0123456789") + LETTERS + list(string.ascii_uppercase) + list("äöüßéèàçñ")
GEMMA_MERGES = 250
GEMMA_CORPUS = BPE_CORPUS + (" " + GEMMA3_PROMPTS["query"] + GEMMA3_PROMPTS["document"]) * 4

QWEN3_STD = {"embed": 1.0, "norm": 0.1, "proj": 0.2, "qk_norm_mean": 1.5, "qk_norm": 0.3, "up": 0.2, "down": 0.15}
GEMMA3_STD = {"embed": 0.2, "norm": 0.1, "proj": 0.2, "qk_norm_mean": 0.8, "qk_norm": 0.2, "up": 0.2, "down": 0.15,
              "dense": 0.2}
MODERNBERT_STD = {"embed": 1.0, "norm": 0.1, "qkv": 0.25, "o": 0.2, "wi": 0.2, "wo": 0.15}


def qwen_pre_tokenizer():
    from tokenizers import Regex
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def build_qwen_vocab():
    """The 256 byte-level symbols (byte order), the tokens of the learned merges in merge order, then
    <|endoftext|> <|im_start|> <|im_end|> (Qwen's vocabulary also ends with its specials)."""
    vocab = list(bytes_to_unicode())
    seen = set(vocab)
    merges = learn_bpe_merges(QWEN_CORPUS, QWEN_MERGES, pre=qwen_pre_tokenizer())
    for a, b in merges:
        if a + b not in seen:
            seen.add(a + b)
            vocab.append(a + b)
    vocab += QWEN_SPECIALS
    return vocab, merges


def build_qwen_tokenizer(vocab, merges):
    """The pipeline transformers' Qwen2Tokenizer builds (NFC, Split(regex) + ByteLevel without its
    own regex, BPE without unk, ByteLevel decoder), with Qwen3-Embedding's post-processor: append
    <|endoftext|> to every text."""
    from tokenizers import AddedToken
    tok = Tokenizer(BPE({t: i for i, t in enumerate(vocab)}, merges, dropout=None, unk_token=None,
                        continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = qwen_pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    eot = vocab.index("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A:0 <|endoftext|>:0", pair="$A:0 <|endoftext|>:0 $B:1 <|endoftext|>:1",
        special_tokens=[("<|endoftext|>", eot)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIALS])
    for t in QWEN_SPECIALS:
        assert tok.token_to_id(t) == vocab.index(t), t
    tok.no_padding()
    tok.no_truncation()
    return tok


def learn_sentencepiece_bpe_merges(corpus, n_merges):
    """Merges for the Gemma-style BPE: spaces become ▁ (GemmaTokenizer's normalizer, no dummy prefix),
    words start at a ▁, merges are learned within words (so none spans a word boundary)."""
    import re
    text = SP.join(corpus.split())
    counts = Counter(re.findall(f"{SP}?[^{SP}]+|{SP}", text))
    return learn_merges_from_counts(counts, n_merges)


def build_gemma_vocab():
    """<pad>=0 <eos>=1 <bos>=2 <unk>=3 <mask>=4, the byte-fallback tokens <0x00>..<0xFF>, single
    characters (▁, ASCII, digits, a few accented letters), then the tokens of the learned merges."""
    vocab = list(GEMMA_SPECIALS) + [f"<0x{b:02X}>" for b in range(256)]
    seen = set(vocab)
    for c in GEMMA_CHARS:
        if c not in seen:
            seen.add(c)
            vocab.append(c)
    merges = learn_sentencepiece_bpe_merges(GEMMA_CORPUS, GEMMA_MERGES)
    for a, b in merges:
        assert a in seen and b in seen, (a, b)
        if a + b not in seen:
            seen.add(a + b)
            vocab.append(a + b)
    return vocab, merges


def build_gemma_tokenizer(vocab, merges):
    """The pipeline transformers' GemmaTokenizer builds (normalizer Replace(" ", "▁"), pre-tokenizer
    Split(" ", merged_with_previous), BPE with byte fallback and unk <unk>, decoder Replace + ByteFallback
    + Fuse) and the post-processor it builds for add_bos_token / add_eos_token true: <bos> $A <eos>."""
    from tokenizers import AddedToken
    tok = Tokenizer(BPE({t: i for i, t in enumerate(vocab)}, merges, dropout=None, unk_token="<unk>",
                        fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", SP)
    tok.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
    tok.decoder = decoders.Sequence([decoders.Replace(SP, " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(
        single="<bos>:0 $A:0 <eos>:0", pair="<bos>:0 $A:0 <eos>:0 <bos>:1 $B:1 <eos>:1",
        special_tokens=[("<bos>", vocab.index("<bos>")), ("<eos>", vocab.index("<eos>"))])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in GEMMA_SPECIALS])
    for t in GEMMA_SPECIALS:
        assert tok.token_to_id(t) == vocab.index(t), t
    tok.no_padding()
    tok.no_truncation()
    return tok


def save_through_model(out, sd, model_cls, config):
    """Load sd into model_cls(config) (every parameter, nothing else) and let save_pretrained write
    config.json and model.safetensors; check that the file holds exactly sd."""
    import tempfile
    import shutil
    from safetensors.torch import load_file
    model = model_cls(config)
    own = set(model.state_dict())
    assert own == set(sd), sorted(own ^ set(sd))
    for k, v in model.state_dict().items():
        assert tuple(v.shape) == tuple(sd[k].shape), (k, tuple(v.shape), tuple(sd[k].shape))
    model.load_state_dict(sd, strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        for fn in ("config.json", "model.safetensors"):
            shutil.copyfile(os.path.join(tmp, fn), os.path.join(out, fn))
    written = load_file(os.path.join(out, "model.safetensors"))
    assert set(written) == set(sd), sorted(set(written) ^ set(sd))
    assert all(torch.equal(written[k], sd[k]) for k in sd)
    with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def legacy_config(cfg):
    """config.json (transformers 5.23's format) in the older key names: rope_parameters and
    layer_types out; rope_theta (+ rope_local_base_freq: Gemma3, sliding_window_pattern), or
    global_rope_theta / local_rope_theta / global_attn_every_n_layers (ModernBERT); torch_dtype for
    dtype; no transformers_version."""
    old = {k: v for k, v in cfg.items() if k not in ("rope_parameters", "layer_types", "dtype", "transformers_version")}
    old["torch_dtype"] = cfg["dtype"]
    rope, types = cfg["rope_parameters"], cfg["layer_types"]
    n = cfg["num_hidden_layers"]
    if cfg["model_type"] == "qwen3":
        assert rope["rope_type"] == "default" and types == ["full_attention"] * n
        old["rope_theta"] = rope["rope_theta"]
        old["rope_scaling"] = None
    elif cfg["model_type"] == "gemma3_text":
        assert all(r["rope_type"] == "default" for r in rope.values())
        old["rope_theta"] = rope["full_attention"]["rope_theta"]
        old["rope_local_base_freq"] = rope["sliding_attention"]["rope_theta"]
        old["rope_scaling"] = None
        # layer i is sliding iff (i + 1) % pattern != 0
        pattern = next(p for p in range(1, n + 2) if types == [
            "sliding_attention" if (i + 1) % p else "full_attention" for i in range(n)])
        old.pop("_sliding_window_pattern", None)
        old["sliding_window_pattern"] = pattern
    elif cfg["model_type"] == "modernbert":
        assert all(r["rope_type"] == "default" for r in rope.values())
        old["global_rope_theta"] = rope["full_attention"]["rope_theta"]
        old["local_rope_theta"] = rope["sliding_attention"]["rope_theta"]
        every = cfg["global_attn_every_n_layers"]
        assert types == ["sliding_attention" if i % every else "full_attention" for i in range(n)]
    else:
        raise ValueError(cfg["model_type"])
    return dict(sorted(old.items()))


def write_legacy_config(out, cfg):
    """config.legacy.json, and a check that transformers reads it to the same configuration."""
    import tempfile
    from transformers import AutoConfig
    old = legacy_config(cfg)
    write_json(os.path.join(out, "config.legacy.json"), old)
    with tempfile.TemporaryDirectory() as tmp:
        write_json(os.path.join(tmp, "config.json"), old)
        a = AutoConfig.from_pretrained(tmp).to_dict()
    b = AutoConfig.from_pretrained(out).to_dict()
    for d in (a, b):
        # the (Gemma3) pattern the legacy file states is what layer_types (compared) is derived from
        for k in ("transformers_version", "_name_or_path", "_sliding_window_pattern", "sliding_window_pattern"):
            d.pop(k, None)
    assert a == b, sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def normal_(g, *shape, std, mean=0.0):
    return torch.randn(*shape, generator=g, dtype=torch.float64).mul(std).add(mean).float()


def qwen3_state_dict(cfg, g):
    H, F, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    d, nq, nkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    s = QWEN3_STD
    sd = {"embed_tokens.weight": normal_(g, V, H, std=s["embed"])}
    for l in range(L):
        p = f"layers.{l}."
        sd[p + "input_layernorm.weight"] = normal_(g, H, std=s["norm"], mean=1.0)
        sd[p + "self_attn.q_proj.weight"] = normal_(g, nq * d, H, std=s["proj"])
        sd[p + "self_attn.k_proj.weight"] = normal_(g, nkv * d, H, std=s["proj"])
        sd[p + "self_attn.v_proj.weight"] = normal_(g, nkv * d, H, std=s["proj"])
        sd[p + "self_attn.o_proj.weight"] = normal_(g, H, nq * d, std=s["proj"])
        sd[p + "self_attn.q_norm.weight"] = normal_(g, d, std=s["qk_norm"], mean=s["qk_norm_mean"])
        sd[p + "self_attn.k_norm.weight"] = normal_(g, d, std=s["qk_norm"], mean=s["qk_norm_mean"])
        sd[p + "post_attention_layernorm.weight"] = normal_(g, H, std=s["norm"], mean=1.0)
        sd[p + "mlp.gate_proj.weight"] = normal_(g, F, H, std=s["up"])
        sd[p + "mlp.up_proj.weight"] = normal_(g, F, H, std=s["up"])
        sd[p + "mlp.down_proj.weight"] = normal_(g, H, F, std=s["down"])
    sd["norm.weight"] = normal_(g, H, std=s["norm"], mean=1.0)
    return sd


def gemma3_state_dict(cfg, g):
    H, F, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    d, nq, nkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    s = GEMMA3_STD
    sd = {"embed_tokens.weight": normal_(g, V, H, std=s["embed"])}
    for l in range(L):
        p = f"layers.{l}."
        sd[p + "input_layernorm.weight"] = normal_(g, H, std=s["norm"])
        sd[p + "self_attn.q_proj.weight"] = normal_(g, nq * d, H, std=s["proj"])
        sd[p + "self_attn.k_proj.weight"] = normal_(g, nkv * d, H, std=s["proj"])
        sd[p + "self_attn.v_proj.weight"] = normal_(g, nkv * d, H, std=s["proj"])
        sd[p + "self_attn.o_proj.weight"] = normal_(g, H, nq * d, std=s["proj"])
        sd[p + "self_attn.q_norm.weight"] = normal_(g, d, std=s["qk_norm"], mean=s["qk_norm_mean"])
        sd[p + "self_attn.k_norm.weight"] = normal_(g, d, std=s["qk_norm"], mean=s["qk_norm_mean"])
        sd[p + "post_attention_layernorm.weight"] = normal_(g, H, std=s["norm"])
        sd[p + "pre_feedforward_layernorm.weight"] = normal_(g, H, std=s["norm"])
        sd[p + "mlp.gate_proj.weight"] = normal_(g, F, H, std=s["up"])
        sd[p + "mlp.up_proj.weight"] = normal_(g, F, H, std=s["up"])
        sd[p + "mlp.down_proj.weight"] = normal_(g, H, F, std=s["down"])
        sd[p + "post_feedforward_layernorm.weight"] = normal_(g, H, std=s["norm"])
    sd["norm.weight"] = normal_(g, H, std=s["norm"])
    return sd


def modernbert_state_dict(cfg, g):
    H, F, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    s = MODERNBERT_STD
    sd = {"embeddings.tok_embeddings.weight": normal_(g, V, H, std=s["embed"]),
          "embeddings.norm.weight": normal_(g, H, std=s["norm"], mean=1.0)}
    for l in range(L):
        p = f"layers.{l}."
        if l > 0:  # layer 0 has no attn_norm (nn.Identity): the embedding norm comes right before it
            sd[p + "attn_norm.weight"] = normal_(g, H, std=s["norm"], mean=1.0)
        sd[p + "attn.Wqkv.weight"] = normal_(g, 3 * H, H, std=s["qkv"])
        sd[p + "attn.Wo.weight"] = normal_(g, H, H, std=s["o"])
        sd[p + "mlp_norm.weight"] = normal_(g, H, std=s["norm"], mean=1.0)
        sd[p + "mlp.Wi.weight"] = normal_(g, 2 * F, H, std=s["wi"])
        sd[p + "mlp.Wo.weight"] = normal_(g, H, F, std=s["wo"])
    sd["final_norm.weight"] = normal_(g, H, std=s["norm"], mean=1.0)
    return sd


def write_qwen3(out, seed, pooling, max_seq_length, include_prompt=True, prompts=None):
    from transformers import Qwen3Config, Qwen3Model
    from transformers.models.qwen2 import tokenization_qwen2
    assert tokenization_qwen2.PRETOKENIZE_REGEX == QWEN_PRETOKENIZE_REGEX
    vocab, merges = build_qwen_vocab()
    eot = vocab.index("<|endoftext|>")
    config = Qwen3Config(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, hidden_act="silu", max_position_embeddings=128, rms_norm_eps=1e-6,
        rope_theta=1e6, tie_word_embeddings=True, attention_bias=False, use_sliding_window=False,
        max_window_layers=3, bos_token_id=eot, eos_token_id=eot, initializer_range=0.02)
    cfg = config.to_dict()
    g = torch.Generator().manual_seed(seed)
    sd = qwen3_state_dict(cfg, g)
    cfg = save_through_model(out, sd, Qwen3Model, config)
    write_legacy_config(out, cfg)

    tok = build_qwen_tokenizer(vocab, merges)
    tok.save(os.path.join(out, "tokenizer.json"), pretty=True)
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab[:-len(QWEN_SPECIALS)])}, f, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    specials = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    write_json(os.path.join(out, "special_tokens_map.json"), specials)
    write_json(os.path.join(out, "tokenizer_config.json"), {
        "tokenizer_class": "Qwen2Tokenizer", "add_prefix_space": False, "errors": "replace", "bos_token": None,
        "unk_token": None, "padding_side": "left", "split_special_tokens": False,
        "clean_up_tokenization_spaces": False, "model_max_length": max_seq_length, **specials})
    write_modules(out, cfg["hidden_size"], pooling, max_seq_length, include_prompt=include_prompt, prompts=prompts)
    return cfg, sd


def write_gemma3(out, seed, pooling, max_seq_length, dense_specs, prompts=None):
    from transformers import Gemma3TextConfig, Gemma3TextModel
    vocab, merges = build_gemma_vocab()
    config = Gemma3TextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=1, head_dim=16, hidden_activation="gelu_pytorch_tanh", max_position_embeddings=128,
        rms_norm_eps=1e-6, pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=True,
        rope_theta=1e6, rope_local_base_freq=1e4, query_pre_attn_scalar=24, sliding_window=4,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"], use_bidirectional_attention=True,
        attention_bias=False, initializer_range=0.02)
    cfg = config.to_dict()
    g = torch.Generator().manual_seed(seed)
    sd = gemma3_state_dict(cfg, g)
    dense = dense_weights(g, dense_specs, cfg["hidden_size"], GEMMA3_STD["dense"], 0.0)
    cfg = save_through_model(out, sd, Gemma3TextModel, config)
    write_legacy_config(out, cfg)

    tok = build_gemma_tokenizer(vocab, merges)
    tok.save(os.path.join(out, "tokenizer.json"), pretty=True)
    specials = {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>",
                "mask_token": "<mask>"}
    write_json(os.path.join(out, "special_tokens_map.json"), specials)
    write_json(os.path.join(out, "tokenizer_config.json"), {
        "tokenizer_class": "GemmaTokenizer", "add_bos_token": True, "add_eos_token": True, "padding_side": "right",
        "spaces_between_special_tokens": False, "clean_up_tokenization_spaces": False,
        "model_max_length": max_seq_length, **specials})
    write_modules(out, cfg["hidden_size"], pooling, max_seq_length, dense=dense, prompts=prompts)
    return cfg, {**sd, **{f"{i + 2}_Dense.linear.weight": d[2] for i, d in enumerate(dense)}}


def write_modernbert(out, seed, pooling, max_seq_length):
    from transformers import ModernBertConfig, ModernBertModel
    vocab = build_vocab()
    config = ModernBertConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
        hidden_activation="gelu", max_position_embeddings=64, norm_eps=1e-5, norm_bias=False, attention_bias=False,
        mlp_bias=False, pad_token_id=0, bos_token_id=101, eos_token_id=102, cls_token_id=101, sep_token_id=102,
        global_attn_every_n_layers=3, local_attention=4, global_rope_theta=160000.0, local_rope_theta=10000.0,
        classifier_pooling="mean", initializer_range=0.02)
    cfg = config.to_dict()
    g = torch.Generator().manual_seed(seed)
    sd = modernbert_state_dict(cfg, g)
    cfg = save_through_model(out, sd, ModernBertModel, config)
    write_legacy_config(out, cfg)
    write_wordpiece_tokenizer(out, vocab, cfg["max_position_embeddings"])
    write_modules(out, cfg["hidden_size"], pooling, max_seq_length)
    return cfg, sd


# ---------------------------------------------------------------------------------------------
# Remote-code families: NomicBERT (nomic-embed-text-v1 / v1.5) and JinaBERT v2
# (jina-embeddings-v2-base-en). transformers has no class that reads these folders as the Hub
# ships them (transformers 5.23's native `nomic_bert` reads hidden_size etc., not the GPT-2-style
# n_embd etc. of the real config.json, and has no JinaBERT v2), so the folders are written directly:
# config.json with the real files' key set (tiny values; auto_map pointing at the Hub code as in
# the real files), model.safetensors with the real checkpoints' tensor names, checked by loading it
# strictly into the own references of nomic_jina_reference.py (which the goldens use too).
# Tokenizer: tiny-bert's WordPiece files (both real models use a BertTokenizer, 30522 tokens in a
# table of 30528 rows: the tiny table has 448 = 7·64 rows for 409 tokens, rows 409..447 never looked
# up). Weights (one seeded generator per folder, in the order listed; the other fixtures' scales):
#   N(0, 0.2²) for every embedding table and linear weight except the query and key projections,
#   N(0, 0.35²) (REMOTE_QK_STD; with 0.2 the attention rows are near uniform), LayerNorm γ ~ U(0.9, 1.1),
#   β and every linear bias ~ U(-0.1, 0.1).
#   tiny-nomic-bert (seed 4321): word_embeddings, token_type_embeddings, emb_ln γ β; per layer
#     attn.Wqkv (q rows, k rows, v rows), attn.out_proj, mlp.fc11, mlp.fc12, mlp.fc2, norm1 γ β,
#     norm2 γ β (no biases: qkv_proj_bias, mlp_fc1_bias, mlp_fc2_bias false; no pooler).
#   tiny-jina-bert (seed 5432): word_embeddings, token_type_embeddings, LayerNorm γ β; per layer
#     query W b, key W b, value W b, attention.output.dense W b, attention.output.LayerNorm γ β,
#     mlp.gated_layers W (no bias), mlp.wo W b, mlp.layernorm γ β; then pooler.dense W b.
# ---------------------------------------------------------------------------------------------
NOMIC_PROMPTS = {"query": "search_query: ", "document": "search_document: "}
REMOTE_VOCAB_ROWS = 448  # tiny-bert's 409 tokens rounded up to a multiple of 64 (as 30522 -> 30528)
REMOTE_QK_STD = 0.35  # query and key projections (0.2 gives near-uniform attention: entropy 0.86 of ln T)


def nomic_config(max_positions):
    """nomic-embed-text-v1.5's config.json keys (GPT2Config-based NomicBertConfig), tiny values."""
    return {
        "activation_function": "swiglu",
        "architectures": ["NomicBertModel"],
        "attn_pdrop": 0.0,
        "auto_map": {
            "AutoConfig": "nomic-ai/nomic-bert-2048--configuration_hf_nomic_bert.NomicBertConfig",
            "AutoModel": "nomic-ai/nomic-bert-2048--modeling_hf_nomic_bert.NomicBertModel",
            "AutoModelForMaskedLM": "nomic-ai/nomic-bert-2048--modeling_hf_nomic_bert.NomicBertForPreTraining",
        },
        "bos_token_id": None,
        "causal": False,
        "dense_seq_output": True,
        "embd_pdrop": 0.0,
        "eos_token_id": None,
        "fused_bias_fc": True,
        "fused_dropout_add_ln": True,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-12,
        "max_trained_positions": max_positions,
        "mlp_fc1_bias": False,
        "mlp_fc2_bias": False,
        "model_type": "nomic_bert",
        "n_embd": 32,
        "n_head": 4,
        "n_inner": 48,
        "n_layer": 3,
        "n_positions": max_positions,
        "pad_vocab_size_multiple": 64,
        "parallel_block": False,
        "parallel_block_tied_norm": False,
        "prenorm": False,
        "qkv_proj_bias": False,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.0,
        "rotary_emb_base": 1000,
        "rotary_emb_fraction": 1.0,
        "rotary_emb_interleaved": False,
        "rotary_emb_scale_base": None,
        "rotary_scaling_factor": None,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.0,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "torch_dtype": "float32",
        "transformers_version": "4.37.2",
        "type_vocab_size": 2,
        "use_cache": True,
        "use_flash_attn": True,
        "use_rms_norm": False,
        "use_xentropy": True,
        "vocab_size": REMOTE_VOCAB_ROWS,
    }


def jina_config(max_positions):
    """jina-embeddings-v2-base-en's config.json keys (JinaBertConfig, a BertConfig), tiny values."""
    return {
        "architectures": ["JinaBertForMaskedLM"],
        "attention_probs_dropout_prob": 0.0,
        "auto_map": {
            "AutoConfig": "jinaai/jina-bert-implementation--configuration_bert.JinaBertConfig",
            "AutoModel": "jinaai/jina-bert-implementation--modeling_bert.JinaBertModel",
            "AutoModelForMaskedLM": "jinaai/jina-bert-implementation--modeling_bert.JinaBertForMaskedLM",
            "AutoModelForSequenceClassification":
                "jinaai/jina-bert-implementation--modeling_bert.JinaBertForSequenceClassification",
        },
        "classifier_dropout": None,
        "emb_pooler": "mean",
        "feed_forward_type": "geglu",
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 48,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": max_positions,
        "model_max_length": max_positions,
        "model_type": "bert",
        "num_attention_heads": 4,
        "num_hidden_layers": 3,
        "pad_token_id": 0,
        "position_embedding_type": "alibi",
        "torch_dtype": "float32",
        "transformers_version": "4.26.0",
        "type_vocab_size": 2,
        "use_cache": True,
        "vocab_size": REMOTE_VOCAB_ROWS,
    }


class _Draw:
    """tiny-bert's scales from one seeded generator: N(0, 0.2²) weights, γ ~ U(0.9, 1.1), β and
    biases ~ U(-0.1, 0.1) (drawn in float64, stored as float32)."""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def normal(self, *shape, std=0.2):
        return torch.randn(*shape, generator=self.g, dtype=torch.float64).mul(std).float()

    def uniform(self, *shape, lo=-0.1, hi=0.1):
        return (torch.rand(*shape, generator=self.g, dtype=torch.float64) * (hi - lo) + lo).float()

    def gamma(self, n):
        return self.uniform(n, lo=0.9, hi=1.1)


def nomic_state_dict(cfg, seed):
    r = _Draw(seed)
    H, F, V, L = cfg["n_embd"], cfg["n_inner"], cfg["vocab_size"], cfg["n_layer"]
    sd = {"embeddings.word_embeddings.weight": r.normal(V, H),
          "embeddings.token_type_embeddings.weight": r.normal(cfg["type_vocab_size"], H),
          "emb_ln.weight": r.gamma(H), "emb_ln.bias": r.uniform(H)}
    for l in range(L):
        p = f"encoder.layers.{l}."
        # rows 0..H-1 q, H..2H-1 k, 2H..3H-1 v (drawn in that order)
        sd[p + "attn.Wqkv.weight"] = torch.cat([r.normal(H, H, std=REMOTE_QK_STD), r.normal(H, H, std=REMOTE_QK_STD),
                                                r.normal(H, H)])
        sd[p + "attn.out_proj.weight"] = r.normal(H, H)
        sd[p + "mlp.fc11.weight"] = r.normal(F, H)
        sd[p + "mlp.fc12.weight"] = r.normal(F, H)
        sd[p + "mlp.fc2.weight"] = r.normal(H, F)
        sd[p + "norm1.weight"] = r.gamma(H)
        sd[p + "norm1.bias"] = r.uniform(H)
        sd[p + "norm2.weight"] = r.gamma(H)
        sd[p + "norm2.bias"] = r.uniform(H)
    return sd


def jina_state_dict(cfg, seed):
    r = _Draw(seed)
    H, F, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    sd = {"embeddings.word_embeddings.weight": r.normal(V, H),
          "embeddings.token_type_embeddings.weight": r.normal(cfg["type_vocab_size"], H),
          "embeddings.LayerNorm.weight": r.gamma(H), "embeddings.LayerNorm.bias": r.uniform(H)}
    for l in range(L):
        p = f"encoder.layer.{l}."
        for n in ("query", "key", "value"):
            sd[p + f"attention.self.{n}.weight"] = r.normal(H, H, std=REMOTE_QK_STD if n != "value" else 0.2)
            sd[p + f"attention.self.{n}.bias"] = r.uniform(H)
        sd[p + "attention.output.dense.weight"] = r.normal(H, H)
        sd[p + "attention.output.dense.bias"] = r.uniform(H)
        sd[p + "attention.output.LayerNorm.weight"] = r.gamma(H)
        sd[p + "attention.output.LayerNorm.bias"] = r.uniform(H)
        sd[p + "mlp.gated_layers.weight"] = r.normal(2 * F, H)
        sd[p + "mlp.wo.weight"] = r.normal(H, F)
        sd[p + "mlp.wo.bias"] = r.uniform(H)
        sd[p + "mlp.layernorm.weight"] = r.gamma(H)
        sd[p + "mlp.layernorm.bias"] = r.uniform(H)
    sd["pooler.dense.weight"] = r.normal(H, H)
    sd["pooler.dense.bias"] = r.uniform(H)
    return sd


def write_remote(out, kind, seed, pooling, max_seq_length, prompts=None):
    """tiny-nomic-bert / tiny-jina-bert: config.json, model.safetensors (names checked by a strict
    load into the own reference), tiny-bert's tokenizer files, modules (mean pooling, Normalize;
    NomicBERT: prompts)."""
    import nomic_jina_reference as ref
    from safetensors.torch import load_file
    vocab = build_vocab()
    assert len(vocab) <= REMOTE_VOCAB_ROWS
    positions = 64
    cfg = nomic_config(positions) if kind == "nomic_bert" else jina_config(positions)
    sd = nomic_state_dict(cfg, seed) if kind == "nomic_bert" else jina_state_dict(cfg, seed)
    assert ref.family_of(cfg) == kind
    model = ref.MODELS[kind](cfg)
    own = model.state_dict()
    assert set(own) == set(sd), sorted(set(own) ^ set(sd))
    for k, v in own.items():
        assert tuple(v.shape) == tuple(sd[k].shape), (k, tuple(v.shape), tuple(sd[k].shape))
    write_json(os.path.join(out, "config.json"), cfg)
    save_file({k: sd[k].contiguous() for k in sorted(sd)}, os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})
    written = load_file(os.path.join(out, "model.safetensors"))
    assert set(written) == set(sd) and all(torch.equal(written[k], sd[k]) for k in sd)
    ref.load_model(out)  # strict
    write_wordpiece_tokenizer(out, vocab, positions)
    base = os.path.join(FIXTURES, "tiny-bert")
    if os.path.isdir(base):
        for fn in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
            with open(os.path.join(out, fn), "rb") as a, open(os.path.join(base, fn), "rb") as b:
                assert a.read() == b.read(), f"{fn} differs from tiny-bert's"
    hidden = cfg.get("n_embd") or cfg["hidden_size"]
    write_modules(out, hidden, pooling, max_seq_length, prompts=prompts)
    return cfg, sd


def check_remote_folder(out, max_seq_length, extra_texts=()):
    """The folder loads with sentence-transformers (through nomic_jina_reference.install()), the
    tokenizer paths agree (bare tokenizers library, AutoTokenizer, sentence-transformers), encode
    runs, and float32 encode agrees with the float64 reference."""
    import warnings
    import nomic_jina_reference as ref
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer
    ref.install()
    hf = AutoTokenizer.from_pretrained(out)
    raw = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    raw.no_padding()
    raw.enable_truncation(max_length=max_seq_length)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = SentenceTransformer(out, device="cpu")
        st64 = SentenceTransformer(out, device="cpu").to(torch.float64)
    assert st.max_seq_length == max_seq_length, st.max_seq_length
    assert type(st[0].auto_model).__module__ == "nomic_jina_reference", type(st[0].auto_model)
    for text in CHECK_TEXTS + list(extra_texts):
        enc = raw.encode(text)
        hb = hf(text, truncation=True, max_length=max_seq_length, return_special_tokens_mask=True)
        c = st.preprocess([text])["input_ids"][0].tolist()
        assert enc.ids == hb["input_ids"] == c, (out, text)
        assert enc.special_tokens_mask == hb["special_tokens_mask"], (out, text)
    emb = st.encode(CHECK_TEXTS[:3], convert_to_tensor=True)
    emb64 = st64.encode(CHECK_TEXTS[:3], convert_to_tensor=True)
    assert emb.shape == (3, 32), emb.shape
    err = (emb.double() - emb64).abs().max().item()
    print(f"  loads with sentence-transformers (own reference); float32 vs float64 encode {err:.1e}")
    assert err < 1e-5, err
    return hf


def check_lively_remote(out):
    """check_lively for the own references: attention rows far from uniform, layer outputs O(1)
    and different between texts, pooled embeddings not parallel (asserted)."""
    import warnings
    import nomic_jina_reference as ref
    from sentence_transformers import SentenceTransformer
    ref.install()
    texts = ["A man is playing a guitar.", "Someone plays an instrument.",
             "The children played in the park at 7 o'clock!", "The dogs were jumping happily in the garden."]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = SentenceTransformer(out, device="cpu")
    model = st[0].auto_model
    probs, outs = {}, {}

    def att_hook(l):
        def f(module, args, output):
            probs.setdefault(l, []).append(module.last_probs[0])
        return f

    def out_hook(l):
        def f(module, args, kwargs, output):
            outs.setdefault(l, []).append(output[0])
        return f

    layers = ref.layer_list(model)
    handles = []
    for l, layer in enumerate(layers):
        att = layer.attn if hasattr(layer, "attn") else layer.attention
        att.keep_probs = True
        handles.append(att.register_forward_hook(att_hook(l)))
        handles.append(layer.register_forward_hook(out_hook(l), with_kwargs=True))
    try:
        for text in texts:
            with torch.no_grad():
                st.encode(text)
    finally:
        for h in handles:
            h.remove()
        for layer in layers:
            (layer.attn if hasattr(layer, "attn") else layer.attention).keep_probs = False
    for l in range(len(layers)):
        ents, mxs, unis = [], [], []
        for p in probs[l]:  # heads x T x T
            t = p.shape[-1]
            ents.append((-(p * p.clamp_min(1e-30).log()).sum(-1) / math.log(t)).mean().item())
            mxs.append(p.max(-1).values.mean().item())
            unis.append(1.0 / t)
        ent, mx, uni = sum(ents) / len(ents), sum(mxs) / len(mxs), sum(unis) / len(unis)
        rms = [o.pow(2).mean().sqrt().item() for o in outs[l]]
        m = [o.mean(0) for o in outs[l]]
        cos = max(torch.nn.functional.cosine_similarity(m[i], m[j], dim=0).item()
                  for i in range(len(m)) for j in range(i + 1, len(m)))
        print(f"  layer {l}: attention entropy/ln T {ent:.2f}, mean max prob {mx:.2f} (uniform 1/T ~{uni:.2f}); "
              f"output RMS {min(rms):.2f}..{max(rms):.2f}; max cos of mean rows between texts {cos:.3f}")
        assert ent < 0.8 and mx > 2.5 * uni, (l, ent, mx)
        assert 0.2 < min(rms) and max(rms) < 20, rms
        assert cos < 0.99, cos
    emb = st.encode(texts, convert_to_tensor=True)
    off = (emb @ emb.T)[~torch.eye(len(texts), dtype=torch.bool)]
    print(f"  embeddings: cos between texts {off.min().item():.3f}..{off.max().item():.3f}")
    assert off.max().item() < 0.99


BERT_DENSE_STD = 0.2  # Dense weights of the tiny-bert variants: N(0, 0.2²), biases U(-0.1, 0.1)


def write_bert_variant(out, pooling, max_seq_length=24, include_prompt=True, dense_specs=(), dense_seed=None,
                       prompts=None):
    """tiny-bert's weights and tokenizer (written again by write_bert with seed 1234: the same
    bytes, checked against tests/fixtures/tiny-bert/ when it is there) with other modules."""
    os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)
    cfg, sd = write_bert(out, 1234, "mean", max_seq_length)
    dense = []
    if dense_specs:
        g = torch.Generator().manual_seed(dense_seed)
        dense = dense_weights(g, dense_specs, cfg["hidden_size"], BERT_DENSE_STD, 0.1)
    write_modules(out, cfg["hidden_size"], pooling, max_seq_length, include_prompt=include_prompt,
                  dense=dense, prompts=prompts)
    sd = {**sd, **{f"{i + 2}_Dense.linear.{n}": t for i, d in enumerate(dense)
                   for n, t in (("weight", d[2]), ("bias", d[3])) if t is not None}}
    base = os.path.join(FIXTURES, "tiny-bert")
    if os.path.normpath(out) != base and os.path.isdir(base):
        for fn in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "special_tokens_map.json",
                   "tokenizer_config.json", "sentence_bert_config.json"):
            with open(os.path.join(out, fn), "rb") as a, open(os.path.join(base, fn), "rb") as b:
                assert a.read() == b.read(), f"{fn} differs from tiny-bert's"
    return cfg, sd


# name -> keyword arguments of write_t5 / write_bert_variant (folders beyond the single-arch presets)
VARIANT_PRESETS = {
    "tiny-t5": ("t5", dict(seed=5678, feed_forward_proj="gated-gelu", pooling="mean",
                           dense_specs=[(24, False, "Identity")], max_seq_length=32)),
    "tiny-t5-relu": ("t5", dict(seed=6789, feed_forward_proj="relu", pooling="mean",
                                dense_specs=[(16, True, "Tanh")], max_seq_length=32)),
    "tiny-bert-lasttoken": ("bert", dict(pooling="lasttoken", dense_specs=[(20, True, "Tanh"), (16, True, "Identity")],
                                         dense_seed=7890)),
    "tiny-bert-weightedmean": ("bert", dict(pooling="weightedmean", include_prompt=True,
                                            prompts={"query": "query: ", "document": "passage: "})),
    "tiny-bert-sqrtlen": ("bert", dict(pooling="mean_sqrt_len_tokens", include_prompt=False,
                                       prompts={"query": "query: ", "document": ""})),
    "tiny-qwen3": ("qwen3", dict(seed=8901, pooling="lasttoken", include_prompt=True, max_seq_length=64,
                                 prompts=QWEN3_PROMPTS)),
    "tiny-gemma3": ("gemma3", dict(seed=9012, pooling="mean", max_seq_length=64,
                                   dense_specs=[(48, False, "Identity"), (32, False, "Identity")],
                                   prompts=GEMMA3_PROMPTS)),
    "tiny-modernbert": ("modernbert", dict(seed=123, pooling="mean", max_seq_length=32)),
    "tiny-nomic-bert": ("nomic_bert", dict(seed=4321, pooling="mean", max_seq_length=64, prompts=NOMIC_PROMPTS)),
    "tiny-jina-bert": ("jina_bert", dict(seed=5432, pooling="mean", max_seq_length=32)),
}


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


def check_folder(out, max_seq_length, dim=32, t5=False, extra_texts=()):
    """The folder loads with transformers (AutoModel, or T5EncoderModel for T5, which
    sentence-transformers loads for a T5 config; AutoTokenizer) and sentence-transformers, and
    all three tokenizer paths give the same ids (and the bare library the same special-token mask
    as transformers)."""
    import warnings
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer, T5EncoderModel
    (T5EncoderModel if t5 else AutoModel).from_pretrained(out)
    hf = AutoTokenizer.from_pretrained(out)
    raw = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    raw.no_padding()
    raw.enable_truncation(max_length=max_seq_length)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = SentenceTransformer(out, device="cpu")
    assert st.max_seq_length == max_seq_length, st.max_seq_length
    for text in CHECK_TEXTS + list(extra_texts):
        enc = raw.encode(text)
        a = enc.ids
        hb = hf(text, truncation=True, max_length=max_seq_length, return_special_tokens_mask=True)
        b = hb["input_ids"]
        fn = getattr(st, "preprocess", None) or st.tokenize
        c = fn([text])["input_ids"][0].tolist()
        assert a == b == c, (out, text, a, b, c)
        assert enc.special_tokens_mask == hb["special_tokens_mask"], (out, text)
    emb = st.encode(CHECK_TEXTS[:3])
    assert emb.shape == (3, dim), emb.shape
    return hf


def check_lively(out, strict=True):
    """Prints, and (strict: for a network drawn here) loosely asserts, that the random network is
    not degenerate: attention far from uniform (mean normalized entropy H/ln T of the attention
    rows < 0.8, mean max probability > 2.5/T), every layer's output O(1) (RMS in 0.2..20) and
    different between texts (cos of the mean rows < 0.99), pooled embeddings of different texts not
    parallel, and how many Dense pre-activations saturate a Tanh (printed). The tiny-bert variants
    keep tiny-bert's weights (attention entropy ~0.9 in layer 0): printed only."""
    import warnings
    from sentence_transformers import SentenceTransformer
    texts = ["A man is playing a guitar.", "Someone plays an instrument.",
             "The children played in the park at 7 o'clock!", "The dogs were jumping happily in the garden."]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = SentenceTransformer(out, device="cpu", model_kwargs={"attn_implementation": "eager"})
    model = st[0].auto_model
    states, rows = [], []
    for text in texts:
        ids = st.preprocess([text])["input_ids"]
        with torch.no_grad():
            o = model(input_ids=ids, output_attentions=True, output_hidden_states=True)
        t = ids.shape[1]
        att = torch.stack([a[0] for a in o.attentions])  # layers x heads x T x T
        # Rows are normalized by the number of keys they may attend to (T without a mask; causal and
        # sliding-window layers: the keys with nonzero probability); rows with one key are left out.
        allowed = (att > 0).sum(-1)  # layers x heads x T
        keep = (allowed > 1).double()
        ent = -(att * att.clamp_min(1e-30).log()).sum(-1) / torch.log(allowed.double().clamp_min(2))
        rows.append(((ent * keep).sum((1, 2)) / keep.sum((1, 2)),
                     (att.max(-1).values * keep).sum((1, 2)) / keep.sum((1, 2)),
                     ((1.0 / allowed.double()) * keep).sum((1, 2)) / keep.sum((1, 2))))
        states.append([h[0] for h in o.hidden_states[1:]])  # outputs of each layer
    layers = len(states[0])
    for l in range(layers):
        ent = sum(r[0][l].item() for r in rows) / len(rows)
        mx = sum(r[1][l].item() for r in rows) / len(rows)
        rms = [s[l].pow(2).mean().sqrt().item() for s in states]
        m = [s[l].mean(0) for s in states]
        cos = max(torch.nn.functional.cosine_similarity(m[i], m[j], dim=0).item()
                  for i in range(len(m)) for j in range(i + 1, len(m)))
        uni = rows[0][2][l].item()
        print(f"  layer {l}: attention entropy/ln T {ent:.2f}, mean max prob {mx:.2f} (uniform 1/T "
              f"~{uni:.2f}); output RMS {min(rms):.2f}..{max(rms):.2f}; max cos of mean rows "
              f"between texts {cos:.3f}")
        if strict:
            assert ent < 0.8 and mx > 2.5 * uni, (l, ent, mx)
            assert 0.2 < min(rms) and max(rms) < 20, rms
            assert cos < 0.99, cos
    emb = st.encode(texts, convert_to_tensor=True)
    cos = emb @ emb.T
    off = cos[~torch.eye(len(texts), dtype=torch.bool)]
    print(f"  embeddings: cos between texts {off.min().item():.3f}..{off.max().item():.3f}")
    assert off.max().item() < 0.99
    # Dense pre-activations: share of |tanh input| > 2 (saturated)
    feats = st.preprocess(texts)
    with torch.no_grad():
        for m in st:
            if type(m).__name__ == "Dense":
                pre = m.linear(feats["sentence_embedding"])
                print(f"  {type(m.activation_function).__name__} Dense {m.in_features}->{m.out_features}: "
                      f"pre-activation RMS {pre.pow(2).mean().sqrt().item():.2f}, |pre| > 2: "
                      f"{(pre.abs() > 2).double().mean().item():.0%}")
            feats = m(feats)


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
    ap.add_argument("--preset", default=None,
                    choices=sorted(PRESETS) + sorted(VARIANT_PRESETS) + ["tiny-mpnet-exact", "all"],
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
    if args.preset in VARIANT_PRESETS:
        assert args.seed is None and args.arch is None and args.pooling is None and args.max_seq_length is None, (
            f"--preset {args.preset} takes only --out and --no-check")
        write_variant(args.preset, args.out or os.path.join(FIXTURES, args.preset), not args.no_check)
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
        list_files(out)
        if not args.no_check:
            hf = check_folder(out, msl)
            ids = hf("A man is playing a guitar.")["input_ids"]
            print(f"  loads with transformers and sentence-transformers; 'A man is playing a guitar.' -> "
                  f"{ids} {hf.convert_ids_to_tokens(ids)}")
    if args.preset == "all":
        for name in VARIANT_PRESETS:
            write_variant(name, os.path.join(FIXTURES, name), not args.no_check)


def list_files(out):
    total = 0
    for root, _, files in sorted(os.walk(out)):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            total += os.path.getsize(p)
            print(f"  {os.path.relpath(p, out):28s} {os.path.getsize(p):8d} bytes")
    print(f"  {'total':28s} {total:8d} bytes")
    return total


def write_variant(name, out, check):
    kind, kw = VARIANT_PRESETS[name]
    os.makedirs(out, exist_ok=True)
    limit = 200_000
    if kind == "t5":
        cfg, sd = write_t5(out, **kw)
        msl, dim = kw["max_seq_length"], kw["dense_specs"][-1][0]
        desc = f"T5EncoderModel {kw['feed_forward_proj']}, seed {kw['seed']}"
    elif kind in ("nomic_bert", "jina_bert"):
        cfg, sd = write_remote(out, kind, **kw)
        msl, dim = kw["max_seq_length"], 32
        desc = f"{cfg['architectures'][0]} (own reference), seed {kw['seed']}"
    elif kind in ROTARY_WRITERS:
        cfg, sd = ROTARY_WRITERS[kind](out, **kw)
        msl = kw["max_seq_length"]
        dim = kw["dense_specs"][-1][0] if kw.get("dense_specs") else cfg["hidden_size"]
        desc = f"{cfg['architectures'][0]}, seed {kw['seed']}"
        limit = 250_000
    else:
        cfg, sd = write_bert_variant(out, **kw)
        msl, dim = 24, (kw["dense_specs"][-1][0] if kw.get("dense_specs") else 32)
        desc = "tiny-bert's weights" + (f", Dense seed {kw['dense_seed']}" if kw.get("dense_seed") else "")
    print(f"wrote {out} ({name}: {desc}, {kw['pooling']} pooling, include_prompt {kw.get('include_prompt', True)}, "
          f"prompts {kw.get('prompts')}, Dense {kw.get('dense_specs', [])}, max_seq_length {msl}): "
          f"vocab {cfg['vocab_size']}, {sum(v.numel() for v in sd.values())} parameters")
    total = list_files(out)
    assert total < limit, f"{out} is {total} bytes"
    if check:
        prompts = [p for p in (kw.get("prompts") or {}).values() if p]
        extra = [p + t for p in prompts for t in CHECK_TEXTS[:3]] + prompts
        if kind in ("nomic_bert", "jina_bert"):
            hf = check_remote_folder(out, msl, extra_texts=extra)
            for p in prompts:
                ids = hf(p)["input_ids"]
                print(f"  prompt {p!r} -> {len(ids)} tokens {hf.convert_ids_to_tokens(ids)}")
            check_lively_remote(out)
            return
        hf = check_folder(out, msl, dim=dim, t5=kind == "t5", extra_texts=extra)
        ids = hf("A man is playing a guitar.")["input_ids"]
        print(f"  loads with transformers and sentence-transformers; 'A man is playing a guitar.' -> "
              f"{ids} {hf.convert_ids_to_tokens(ids)}")
        for p in prompts:
            ids = hf(p)["input_ids"]
            print(f"  prompt {p!r} -> {len(ids)} tokens {hf.convert_ids_to_tokens(ids)}")
        if kind in ROTARY_WRITERS:
            check_legacy_config_outputs(out)
        check_lively(out, strict=kind == "t5" or kind in ROTARY_WRITERS)


ROTARY_WRITERS = {"qwen3": write_qwen3, "gemma3": write_gemma3, "modernbert": write_modernbert}


def check_legacy_config_outputs(out):
    """The model built from config.legacy.json gives the same token states as from config.json."""
    import tempfile
    import shutil
    import warnings
    from transformers import AutoModel
    texts = ["A man is playing a guitar.", "The quick brown fox jumps over the lazy dog near the riverbank."]
    with tempfile.TemporaryDirectory() as tmp:
        for fn in os.listdir(out):
            if os.path.isfile(os.path.join(out, fn)) and fn not in ("config.json", "config.legacy.json"):
                shutil.copyfile(os.path.join(out, fn), os.path.join(tmp, fn))
        shutil.copyfile(os.path.join(out, "config.legacy.json"), os.path.join(tmp, "config.json"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = AutoModel.from_pretrained(out, attn_implementation="eager").eval()
            b = AutoModel.from_pretrained(tmp, attn_implementation="eager").eval()
    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(out)
    for text in texts:
        ids = torch.tensor([hf(text)["input_ids"]])
        with torch.no_grad():
            assert torch.equal(a(input_ids=ids).last_hidden_state, b(input_ids=ids).last_hidden_state), text
    print("  config.legacy.json: the same configuration and the same token states as config.json")


if __name__ == "__main__":
    main()

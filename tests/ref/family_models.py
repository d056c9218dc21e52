"""Random tiny model folders of each encoder family's exact shape (hidden 64,
4 heads, 2 layers, intermediate 128), and of each decoder embedder's (Qwen3,
Qwen2: hidden 64, 4 query heads over 2 key/value heads of 16, 2 layers,
intermediate 128, a byte-level BPE tokenizer appending <|endoftext|>,
last-token pooling, Normalize and instruction prompts, as Qwen3-Embedding), laid out as transformers and
sentence-transformers save them: config.json with the keys transformers
writes for the family, model.safetensors under the family's tensor names,
tokenizer.json of the family's kind (trained here with `tokenizers`, or
converted from a SentencePiece model: tok_models.py) with its
tokenizer_config.json, and the sentence-transformers files (modules.json,
the Pooling / Dense / Normalize module folders, sentence_bert_config.json).
scripts/make-model --family calls write(); tests may call it directly.
Nothing here needs PyTorch."""
import json
import os
import struct

import numpy as np

import pyenv  # noqa: F401  (puts .cache/pyenv on the path)

H, HEADS, LAYERS, INTER = 64, 4, 2, 128
PREFIX = {"bert": "bert.", "distilbert": "distilbert.", "roberta": "roberta.", "xlm-roberta": "roberta.",
          "camembert": "roberta.", "mpnet": "mpnet."}
CLASS = {"bert": "Bert", "distilbert": "DistilBert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta",
         "camembert": "Camembert", "mpnet": "MPNet"}
TORCH_ACT = {"tanh": "torch.nn.modules.activation.Tanh", "identity": "torch.nn.modules.linear.Identity",
             "relu": "torch.nn.modules.activation.ReLU", "gelu": "torch.nn.modules.activation.GELU",
             "sigmoid": "torch.nn.modules.activation.Sigmoid"}
POOLING_KEYS = (("cls", "pooling_mode_cls_token"), ("mean", "pooling_mode_mean_tokens"),
                ("max", "pooling_mode_max_tokens"), ("mean_sqrt_len_tokens", "pooling_mode_mean_sqrt_len_tokens"),
                ("weightedmean", "pooling_mode_weightedmean_tokens"), ("lasttoken", "pooling_mode_lasttoken"))
LABELS = ("negative", "positive", "neutral", "mixed", "question", "other")


def write_safetensors(path, tensors, dtype="f32"):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        if dtype == "f16":
            dt, b = "F16", t.astype("<f2").tobytes()
        elif dtype == "bf16":   # round to nearest even on the top 16 bits
            u = t.astype("<f4").view("<u4").astype(np.uint64)
            dt, b = "BF16", ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()
        else:
            dt, b = "F32", t.astype("<f4").tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def scaled(factor, *suffixes):
    """A save for write(): the tensors whose names end in one of suffixes
    times factor (a model whose activations pass f16's range), then
    write_safetensors."""
    def save(path, tensors, dtype="f32"):
        for k in tensors:
            if k.endswith(suffixes):
                tensors[k] = tensors[k] * factor
        write_safetensors(path, tensors, dtype)
    return save


def _dump(folder, name, obj):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)


# ---- tokenizers ----

def wordpiece_json(specials, unk, cls, sep, pair_sep, mask=None):
    """A WordPiece tokenizer as transformers' BERT and MPNet converters lay
    it out (BertNormalizer lowercasing, BertPreTokenizer, a template), with
    specials first and mask (if any) appended last, as MPNet's <mask> is."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from tok_models import training_text
    tok = Tokenizer(models.WordPiece(unk_token=unk, max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.train_from_iterator(training_text(), trainers.WordPieceTrainer(
        vocab_size=1000, show_progress=False, limit_alphabet=200, special_tokens=list(specials)))
    if mask:
        tok.add_special_tokens([mask])
    ids = {t: tok.token_to_id(t) for t in (cls, sep)}
    pair = f"{cls}:0 $A:0 {sep}:0 {sep}:0 $B:1 {sep}:1" if pair_sep == 2 else f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1"
    tok.post_processor = processors.TemplateProcessing(single=f"{cls}:0 $A:0 {sep}:0", pair=pair,
                                                       special_tokens=list(ids.items()))
    spec = json.loads(tok.to_str())
    for t in spec["added_tokens"]:
        t["lstrip"] = t["content"] == "<mask>"
    return spec


def tokenizer(family, max_length):
    """(tokenizer.json spec, tokenizer_config.json) for the family."""
    import tok_models
    if family in ("bert", "distilbert"):
        spec = wordpiece_json(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], "[UNK]", "[CLS]", "[SEP]", 1)
        cfg = {"do_lower_case": True, "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
               "cls_token": "[CLS]", "mask_token": "[MASK]", "tokenize_chinese_chars": True, "strip_accents": None}
    elif family == "mpnet":
        spec = wordpiece_json(["<s>", "<pad>", "</s>", "<unk>", "[UNK]"], "[UNK]", "<s>", "</s>", 2, mask="<mask>")
        cfg = {"do_lower_case": True, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "[UNK]",
               "sep_token": "</s>", "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>",
               "tokenize_chinese_chars": True, "strip_accents": None}
    else:
        spec = tok_models.roberta_json() if family == "roberta" else tok_models.xlmr_json()
        cfg = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
               "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"}
        if family == "roberta":
            cfg.update(add_prefix_space=False, errors="replace", trim_offsets=True)
    cfg.update(tokenizer_class=CLASS[family] + "Tokenizer", model_max_length=max_length,
               clean_up_tokenization_spaces=False)
    return spec, cfg


def vocab_size(spec):
    m = spec["model"]
    n = len(m["vocab"])
    return max([n] + [t["id"] + 1 for t in spec["added_tokens"]])


# ---- config.json ----

def config(family, vocab, positions, hidden_act, architectures):
    common = {"architectures": architectures, "initializer_range": 0.02, "vocab_size": vocab,
              "dtype": "float32", "transformers_version": "4.57.1"}
    if family == "distilbert":
        return dict(common, activation=hidden_act, attention_dropout=0.1, dim=H, dropout=0.1, hidden_dim=INTER,
                    max_position_embeddings=positions, model_type="distilbert", n_heads=HEADS, n_layers=LAYERS,
                    pad_token_id=0, qa_dropout=0.1, seq_classif_dropout=0.2, sinusoidal_pos_embds=False,
                    tie_weights_=True)
    c = dict(common, attention_probs_dropout_prob=0.1, hidden_act=hidden_act, hidden_dropout_prob=0.1,
             hidden_size=H, intermediate_size=INTER, num_attention_heads=HEADS, num_hidden_layers=LAYERS,
             model_type=family)
    if family == "bert":
        return dict(c, classifier_dropout=None, layer_norm_eps=1e-12, max_position_embeddings=positions,
                    pad_token_id=0, position_embedding_type="absolute", type_vocab_size=2, use_cache=True)
    # positions past the padding index (1): max_position_embeddings = usable + 2
    c.update(bos_token_id=0, eos_token_id=2, pad_token_id=1, layer_norm_eps=1e-5,
             max_position_embeddings=positions + 2)
    if family == "mpnet":
        return dict(c, relative_attention_num_buckets=32)
    return dict(c, classifier_dropout=None, position_embedding_type="absolute", type_vocab_size=1, use_cache=True)


# ---- decoder embedders (Qwen3, Qwen2) ----

DECODERS = ("qwen3", "qwen2")
KV_HEADS, HEAD_DIM = 2, 16
# Qwen3-Embedding's prompts (config_sentence_transformers.json)
DECODER_PROMPTS = {"query": "Instruct: Given a web search query, retrieve relevant passages that answer the query\n"
                            "Query:", "document": ""}


def decoder_tokenizer(max_length):
    """Qwen2's byte-level BPE (NFC, its split regex, ByteLevel) trained on the
    corpus, appending <|endoftext|> as Qwen3-Embedding's does, and its
    tokenizer_config.json (left padding, as Qwen3-Embedding)."""
    import tok_models
    spec = tok_models.qwen_json()
    cfg = {"add_prefix_space": False, "bos_token": None, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
           "unk_token": None, "errors": "replace", "padding_side": "left", "split_special_tokens": False,
           "tokenizer_class": "Qwen2Tokenizer", "model_max_length": max_length,
           "clean_up_tokenization_spaces": False}
    return spec, cfg


def decoder_config(family, vocab, positions, eot):
    c = {"architectures": ["Qwen3ForCausalLM" if family == "qwen3" else "Qwen2ForCausalLM"],
         "attention_dropout": 0.0, "bos_token_id": eot, "eos_token_id": eot, "hidden_act": "silu",
         "hidden_size": H, "initializer_range": 0.02, "intermediate_size": INTER,
         "max_position_embeddings": positions, "max_window_layers": LAYERS, "model_type": family,
         "num_attention_heads": HEADS, "num_hidden_layers": LAYERS, "num_key_value_heads": KV_HEADS,
         "rms_norm_eps": 1e-6, "rope_scaling": None, "sliding_window": None, "tie_word_embeddings": True,
         "torch_dtype": "float32", "transformers_version": "4.51.3", "use_cache": True,
         "use_sliding_window": False, "vocab_size": vocab}
    if family == "qwen3":
        return dict(c, attention_bias=False, head_dim=HEAD_DIM, rope_theta=1000000)
    return dict(c, rope_theta=10000.0)


def decoder_weights(family, vocab, rng):
    """Qwen3Model's / Qwen2Model's tensors (no "model." prefix, as
    Qwen3-Embedding's model.safetensors)."""
    r = lambda *shape: rng.standard_normal(shape) * 0.2
    lin = lambda o, i: r(o, i) / np.sqrt(i) * 5
    t = {"embed_tokens.weight": r(vocab, H) * 5, "norm.weight": 1 + r(H)}
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    for i in range(LAYERS):
        p = f"layers.{i}."
        t[p + "input_layernorm.weight"], t[p + "post_attention_layernorm.weight"] = 1 + r(H), 1 + r(H)
        for name, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
            t[p + f"self_attn.{name}.weight"] = lin(rows, H)
            if family == "qwen2":
                t[p + f"self_attn.{name}.bias"] = r(rows)
        if family == "qwen3":
            t[p + "self_attn.q_norm.weight"], t[p + "self_attn.k_norm.weight"] = 1 + r(HEAD_DIM), 1 + r(HEAD_DIM)
        t[p + "self_attn.o_proj.weight"] = lin(H, q)
        t[p + "mlp.gate_proj.weight"], t[p + "mlp.up_proj.weight"] = lin(INTER, H), lin(INTER, H)
        t[p + "mlp.down_proj.weight"] = lin(H, INTER)
    return t


def write_decoder(family, folder, a, rng, save=None):
    positions = a.positions or 64
    os.makedirs(folder, exist_ok=True)
    spec, tok_cfg = decoder_tokenizer(positions)
    vocab = vocab_size(spec)
    eot = next(t["id"] for t in spec["added_tokens"] if t["content"] == "<|endoftext|>")
    _dump(folder, "tokenizer.json", spec)
    _dump(folder, "tokenizer_config.json", tok_cfg)
    _dump(folder, "config.json", decoder_config(family, vocab, positions, eot))
    t = decoder_weights(family, vocab, rng)
    prefix = a.prefix or ""
    (save or write_safetensors)(os.path.join(folder, "model.safetensors"), {prefix + k: v for k, v in t.items()},
                                dtype=a.dtype)
    write_st(folder, a, rng, save, positions, DECODER_PROMPTS, "lasttoken")


# ---- weights ----

def weights(family, vocab, positions, rng, head):
    r = lambda *shape: rng.standard_normal(shape) * 0.2
    lin = lambda o, i: (r(o, i) / np.sqrt(i) * 5, r(o))
    ln = lambda: (1 + r(H), r(H))
    t = {"embeddings.word_embeddings.weight": r(vocab, H)}
    if family == "distilbert":
        t["embeddings.position_embeddings.weight"] = r(positions, H)
    else:
        npos = positions if family == "bert" else positions + 2
        t["embeddings.position_embeddings.weight"] = r(npos, H)
        if family != "mpnet":
            t["embeddings.token_type_embeddings.weight"] = r(2 if family == "bert" else 1, H)
    t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"] = ln()
    if family == "mpnet":
        t["encoder.relative_attention_bias.weight"] = rng.standard_normal((32, HEADS))
    names = {"bert": (("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                       "intermediate.dense", "output.dense"), ("attention.output.LayerNorm", "output.LayerNorm"),
                      "encoder.layer.{}."),
             "distilbert": (("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "ffn.lin1",
                             "ffn.lin2"), ("sa_layer_norm", "output_layer_norm"), "transformer.layer.{}."),
             "mpnet": (("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
                        "intermediate.dense", "output.dense"), ("attention.LayerNorm", "output.LayerNorm"),
                       "encoder.layer.{}.")}
    dense, norms, layer = names.get(family, names["bert"])
    for i in range(LAYERS):
        p = layer.format(i)
        for name, shape in zip(dense, [(H, H)] * 4 + [(INTER, H), (H, INTER)]):
            t[p + name + ".weight"], t[p + name + ".bias"] = lin(*shape)
        for name in norms:
            t[p + name + ".weight"], t[p + name + ".bias"] = ln()
    if head is None and family != "distilbert":   # the pooler AutoModel builds
        t["pooler.dense.weight"], t["pooler.dense.bias"] = lin(H, H)
    return t


def head_weights(family, head, vocab, rng):
    r = lambda *shape: rng.standard_normal(shape) * 0.2
    lin = lambda o, i: (r(o, i) / np.sqrt(i) * 5, r(o))
    t, enc = {}, {}
    if head[0] == "classify":
        n = head[1]
        if family == "bert":
            enc["pooler.dense.weight"], enc["pooler.dense.bias"] = lin(H, H)
            t["classifier.weight"], t["classifier.bias"] = lin(n, H)
        elif family == "distilbert":
            t["pre_classifier.weight"], t["pre_classifier.bias"] = lin(H, H)
            t["classifier.weight"], t["classifier.bias"] = lin(n, H)
        else:
            t["classifier.dense.weight"], t["classifier.dense.bias"] = lin(H, H)
            t["classifier.out_proj.weight"], t["classifier.out_proj.bias"] = lin(n, H)
    elif family == "bert":
        t["cls.predictions.transform.dense.weight"], t["cls.predictions.transform.dense.bias"] = lin(H, H)
        t["cls.predictions.transform.LayerNorm.weight"] = 1 + r(H)
        t["cls.predictions.transform.LayerNorm.bias"] = r(H)
        t["cls.predictions.bias"] = r(vocab)
    elif family == "distilbert":
        t["vocab_transform.weight"], t["vocab_transform.bias"] = lin(H, H)
        t["vocab_layer_norm.weight"], t["vocab_layer_norm.bias"] = 1 + r(H), r(H)
        t["vocab_projector.bias"] = r(vocab)
    elif family != "mpnet":
        t["lm_head.dense.weight"], t["lm_head.dense.bias"] = lin(H, H)
        t["lm_head.layer_norm.weight"], t["lm_head.layer_norm.bias"] = 1 + r(H), r(H)
        t["lm_head.bias"] = r(vocab)
    else:
        raise ValueError("mpnet: no masked-language-model head")
    return enc, t


# ---- the folder ----

def write(family, folder, a, rng, save=None):
    """Writes the folder for family from make-model's options a (pooling,
    include_prompt, dense, dense_act, dense_bias, normalize, head,
    score_activation, positions, hidden_act, prefix, dtype)."""
    if family in DECODERS:
        return write_decoder(family, folder, a, rng, save)
    head = None
    if a.head:
        if a.head[0] == "classify" and len(a.head) == 2:
            head = ("classify", int(a.head[1]))
        elif a.head == ["mlm"]:
            head = ("mlm",)
        else:
            raise SystemExit("--head is 'classify N' or 'mlm'")
    positions = a.positions or (160 if family == "mpnet" else 64)
    os.makedirs(folder, exist_ok=True)
    spec, tok_cfg = tokenizer(family, positions)
    vocab = vocab_size(spec)
    _dump(folder, "tokenizer.json", spec)
    _dump(folder, "tokenizer_config.json", tok_cfg)
    if family in ("bert", "distilbert", "mpnet"):   # the slow tokenizers' file, for readers that want it
        inv = sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
        with open(os.path.join(folder, "vocab.txt"), "w") as f:
            f.write("".join(k + "\n" for k, _ in inv))

    cls = CLASS[family]
    arch = {None: cls + "Model", "classify": cls + "ForSequenceClassification", "mlm": cls + "ForMaskedLM"}
    c = config(family, vocab, positions, a.hidden_act, [arch[head[0] if head else None]])
    if head and head[0] == "classify":
        n = head[1]
        labels = [LABELS[i] if n > 1 and i < len(LABELS) else f"LABEL_{i}" for i in range(n)]
        c["id2label"] = {str(i): lab for i, lab in enumerate(labels)}
        c["label2id"] = {lab: i for i, lab in enumerate(labels)}
        if a.score_activation:
            c["sentence_transformers"] = {"activation_fn": TORCH_ACT[a.score_activation], "version": "5.1.0"}
    if head and head[0] == "mlm":
        c["tie_word_embeddings"] = True
    _dump(folder, "config.json", c)

    t = weights(family, vocab, positions, rng, head)
    extra = {}
    if head:
        enc, extra = head_weights(family, head, vocab, rng)
        t.update(enc)
    prefix = a.prefix if a.prefix is not None else (PREFIX[family] if head else "")
    tensors = {prefix + k: v for k, v in t.items()}
    tensors.update(extra)
    (save or write_safetensors)(os.path.join(folder, "model.safetensors"), tensors, dtype=a.dtype)

    # sentence-transformers: an embedding folder unless it is a bare head
    if head is not None and not a.pooling:
        return
    if head and head[0] == "mlm":
        raise SystemExit("--head mlm takes no --pooling")
    write_st(folder, a, rng, save, positions, {"query": "query: ", "document": "passage: "}, "mean")


def write_st(folder, a, rng, save, positions, prompts, pooling):
    """The sentence-transformers files: modules.json, the Pooling (a.pooling,
    else pooling), Dense and Normalize modules, sentence_bert_config.json and
    config_sentence_transformers.json with the prompts."""
    modes = (a.pooling or pooling).split(",")
    mods = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    pool = {"word_embedding_dimension": H}
    for mode, key in POOLING_KEYS:
        pool[key] = mode in modes
    unknown = set(modes) - {m for m, _ in POOLING_KEYS}
    if unknown:
        raise SystemExit(f"--pooling: {sorted(unknown)} not one of {[m for m, _ in POOLING_KEYS]}")
    pool["include_prompt"] = bool(a.include_prompt)
    _dump(os.path.join(folder, "1_Pooling"), "config.json", pool)
    dim = H * len(modes)
    if a.dense:
        path = f"{len(mods)}_Dense"
        mods.append({"idx": len(mods), "name": str(len(mods)), "path": path,
                     "type": "sentence_transformers.models.Dense"})
        _dump(os.path.join(folder, path), "config.json",
              {"in_features": dim, "out_features": a.dense, "bias": bool(a.dense_bias),
               "activation_function": TORCH_ACT[a.dense_act]})
        d = {"linear.weight": rng.standard_normal((a.dense, dim)) / np.sqrt(dim)}
        if a.dense_bias:
            d["linear.bias"] = rng.standard_normal(a.dense) * 0.1
        (save or write_safetensors)(os.path.join(folder, path, "model.safetensors"), d, dtype=a.dtype)
    if a.normalize:
        path = f"{len(mods)}_Normalize"
        mods.append({"idx": len(mods), "name": str(len(mods)), "path": path,
                     "type": "sentence_transformers.models.Normalize"})
        os.makedirs(os.path.join(folder, path), exist_ok=True)
    _dump(folder, "modules.json", mods)
    _dump(folder, "sentence_bert_config.json", {"max_seq_length": positions, "do_lower_case": False})
    _dump(folder, "config_sentence_transformers.json",
          {"prompts": prompts, "default_prompt_name": None,
           "similarity_fn_name": "cosine"})

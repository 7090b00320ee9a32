"""xlref.tokenization (notebook 13): XLNet's SentencePiece tokenizer and Transformer-XL's word-level
tokenizer against transformers 4.35's slow tokenizers (exact equality of tokens, ids, type ids,
masks, padding and decoded text), round trips, every error path, the defects of 4.35 pinned, and
the restricted unpickler against a crafted malicious pickle."""
import collections
import itertools
import json
import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from xlref.datasets import path as corpus_path
from xlref.tokenization import (
    TransfoXLTokenizer,
    XLNetTokenizer,
    load_vocab_pickle,
    train_xlnet_spiece,
)

warnings.filterwarnings("ignore", category=FutureWarning)
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
pytest.importorskip("sacremoses")
from transformers import TransfoXLTokenizer as HFTransfoXL  # noqa: E402
from transformers import XLNetTokenizer as HFXLNet  # noqa: E402

REFERENCE = Path(__file__).resolve().parent / "reference" / "pretrained_expectations.json"

TRICKY = [
    "Hello, world! 1,000 people paid 3,5, then 12,3, more,",
    "  lots   of\tspace\n and\u3000ideographic space ",
    "",
    "   ",
    "café naïve Ünïcödé ﬁ Å",
    "<mask> a<mask>b <sep>x<cls>  <mask>",
    "``quoted'' and \"double\"",
    "日本語 and emoji 🙂 and Ελληνικά",
    "HeLLo <SEP> World<MASK>",
    "<unk><pad><eod><eop><s></s>",
    "x" * 200,
]


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def spiece(tmp_path_factory):
    "A small project-trained SentencePiece model with XLNet's special pieces (about 1.5 s)."
    out = tmp_path_factory.mktemp("spiece")
    return train_xlnet_spiece([corpus_path("tiny_shakespeare"), corpus_path("wikitext2_valid")],
                              out / "spiece", vocab_size=800, max_lines=3000)


@pytest.fixture(scope="session")
def wiki_lines():
    with open(corpus_path("wikitext2_valid"), encoding="utf-8") as f:
        return list(itertools.islice(f, 500))


@pytest.fixture(scope="session")
def wiki_file(tmp_path_factory, wiki_lines):
    path = tmp_path_factory.mktemp("wiki") / "wiki.txt"
    path.write_text("".join(wiki_lines), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def txl_pair(wiki_file):
    "(ours, transformers') word-level tokenizers built from the same WikiText-2 slice."
    ours, theirs = TransfoXLTokenizer(special=["<eos>"]), HFTransfoXL(special=["<eos>"])
    ours.count_file(wiki_file)
    theirs.count_file(str(wiki_file))
    ours.build_vocab()
    theirs.build_vocab()
    return ours, theirs


@pytest.fixture(scope="session")
def legacy_pickle(tmp_path_factory, txl_pair):
    "A legacy-format vocab.pkl (dict with idx2sym, OrderedDict sym2idx, Counter) that we wrote ourselves."
    ours, _ = txl_pair
    path = tmp_path_factory.mktemp("legacy") / "vocab.pkl"
    with open(path, "wb") as f:
        pickle.dump({"idx2sym": ours.idx2sym, "sym2idx": collections.OrderedDict(ours.sym2idx),
                     "counter": ours.counter, "min_freq": 0, "max_size": None, "lower_case": False,
                     "special": ["<eos>"], "delimiter": None, "unk_idx": ours.sym2idx["<unk>"]}, f, protocol=2)
    return path


def both_xlnet(spiece, **kw):
    return XLNetTokenizer(spiece, **kw), HFXLNet(str(spiece), **kw)


# ---------------------------------------------------------------- XLNet: training helper

def test_trained_model_has_xlnet_special_ids(spiece):
    tok = XLNetTokenizer(spiece)
    assert [tok.convert_ids_to_tokens(i) for i in range(9)] == [
        "<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]
    assert (tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.pad_token_id, tok.mask_token_id) == (0, 3, 4, 5, 6)


def test_training_is_deterministic(tmp_path):
    import sentencepiece as spm
    src = corpus_path("wikitext2_valid")
    a = spm.SentencePieceProcessor(model_file=str(train_xlnet_spiece(src, tmp_path / "a", vocab_size=300, max_lines=500)))
    b = spm.SentencePieceProcessor(model_file=str(train_xlnet_spiece(src, tmp_path / "b", vocab_size=300, max_lines=500)))
    assert [(a.id_to_piece(i), a.get_score(i)) for i in range(len(a))] == [(b.id_to_piece(i), b.get_score(i)) for i in range(len(b))]


def test_training_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train_xlnet_spiece(tmp_path / "nope.txt", tmp_path / "m")
    with pytest.raises(ValueError, match="vocab_size"):
        train_xlnet_spiece(corpus_path("wikitext2_valid"), tmp_path / "m", vocab_size=3)
    with pytest.raises(ValueError, match="empty"):
        train_xlnet_spiece([], tmp_path / "m")
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("a b c\n")
    with pytest.raises(ValueError, match="could not train"):
        train_xlnet_spiece(tiny, tmp_path / "m", vocab_size=5000)


# ---------------------------------------------------------------- XLNet: parity with 4.35

@pytest.mark.parametrize("options", [{}, {"do_lower_case": True}, {"keep_accents": True}, {"remove_space": False},
                                     {"do_lower_case": True, "keep_accents": True}])
@pytest.mark.parametrize("text", TRICKY)
def test_xlnet_tokens_ids_decode_match_hf(spiece, options, text):
    ours, theirs = both_xlnet(spiece, **options)
    assert ours.tokenize(text) == theirs.tokenize(text)
    ids = ours.encode(text)
    assert ids == theirs.encode(text)
    assert ours.encode(text, add_special_tokens=False) == theirs.encode(text, add_special_tokens=False)
    for skip in (False, True):
        assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
    assert ours.decode(ids, clean_up_tokenization_spaces=False) == theirs.decode(ids, clean_up_tokenization_spaces=False)
    assert ours.convert_ids_to_tokens(ids) == theirs.convert_ids_to_tokens(ids)


@pytest.mark.parametrize("text", TRICKY[:3])
def test_xlnet_tokenizes_wikitext_and_shakespeare_like_hf(spiece, wiki_lines, text):
    ours, theirs = both_xlnet(spiece)
    with open(corpus_path("tiny_shakespeare"), encoding="utf-8") as f:
        lines = wiki_lines[:150] + list(itertools.islice(f, 150))
    assert [ours.encode(l) for l in lines] == [theirs.encode(l) for l in lines]
    assert [ours.decode(ours.encode(l)) for l in lines] == [theirs.decode(theirs.encode(l)) for l in lines]


class _ForcedSegmentation:
    "A SentencePiece stand-in that returns a chosen segmentation for chosen strings (to exercise a rule)."

    def __init__(self, sp, table):
        self._sp, self._table = sp, table

    def encode(self, text, out_type=str):
        return list(self._table[text]) if text in self._table else self._sp.encode(text, out_type=out_type)

    def EncodeAsPieces(self, text):
        return self.encode(text, out_type=str)

    def __getattr__(self, name):
        return getattr(self._sp, name)


def test_xlnet_digit_comma_rule_matches_hf(spiece):
    "Pieces ending in digit + ',' are re-cut; a small vocabulary has none, so we force such pieces."
    text = "In 1990, the x12, 7,"
    forced = {text: ["▁In", "▁1990,", "▁the", "▁x", "12,", "▁7,"]}
    ours, theirs = both_xlnet(spiece)
    ours.sp_model = _ForcedSegmentation(ours.sp_model, forced)
    theirs.sp_model = _ForcedSegmentation(theirs.sp_model, forced)
    got = ours.tokenize(text)
    assert got == theirs.tokenize(text)
    assert "▁1990," not in got and "12," not in got and got.count(",") == 3
    assert "".join(got) == "".join(forced[text])


@given(st.text(alphabet=st.characters(codec="utf-8", blacklist_categories=("Cs",)), max_size=40))
def test_xlnet_matches_hf_on_random_text(spiece_hyp, text):
    ours, theirs = spiece_hyp
    assert ours.tokenize(text) == theirs.tokenize(text)
    ids = ours.encode(text)
    assert ids == theirs.encode(text)
    assert ours.decode(ids) == theirs.decode(ids)


@pytest.fixture(scope="session")
def spiece_hyp(spiece):
    return both_xlnet(spiece)


@given(st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8), max_size=8),
       st.sampled_from([" ", "  ", "\t", " \n "]))
def test_xlnet_round_trip_of_plain_words(spiece_hyp, words, sep):
    ours, _ = spiece_hyp
    text = sep.join(words)
    assert ours.decode(ours.encode(text), skip_special_tokens=True) == " ".join(words)


PAIRS = [("The lobster is blue.", "It turns red on cooking, 1,000 times."), ("", "only b"), ("only a", ""),
         ("a b c d e f g h i j k l", "m")]


@pytest.mark.parametrize("a, b", PAIRS)
@pytest.mark.parametrize("kwargs", [
    {}, {"padding": "max_length", "max_length": 64}, {"truncation": True, "max_length": 9},
    {"truncation": "only_first", "max_length": 12}, {"truncation": "longest_first", "max_length": 6},
    {"max_length": 10}, {"return_special_tokens_mask": True, "return_length": True, "padding": "max_length", "max_length": 40},
    {"padding": "max_length", "max_length": 32, "pad_to_multiple_of": 8, "truncation": True},
    {"add_special_tokens": False}, {"return_tensors": "pt"},
])
def test_xlnet_pair_encoding_matches_hf(spiece_hyp, a, b, kwargs):
    ours, theirs = spiece_hyp
    try:
        expected = theirs(a, b, **kwargs)
    except Exception as e:  # pragma: no cover - only if 4.35 itself refuses
        pytest.fail(f"transformers refused {kwargs}: {e}")
    if "truncation" in kwargs or "max_length" in kwargs:
        n = len(ours.tokenize(a) if a else []) + len(ours.tokenize(b) if b else [])
        strategy = kwargs.get("truncation", True)
        first = len(ours.tokenize(a))
        if strategy == "only_first" and first <= n + 3 - kwargs["max_length"]:
            with pytest.raises(ValueError, match="only_first"):
                ours(a, b, **kwargs)
            return
    got = ours(a, b, **kwargs)
    assert set(got) == set(expected)
    for key in expected:
        if isinstance(expected[key], torch.Tensor):
            assert torch.equal(got[key], expected[key]), key
        else:
            assert got[key] == expected[key], key


@pytest.mark.parametrize("kwargs", [
    {"padding": True}, {"padding": True, "return_tensors": "pt"}, {"padding": "longest", "truncation": True, "max_length": 7},
    {"padding": "max_length", "max_length": 40, "return_tensors": "pt", "return_special_tokens_mask": True},
    {"truncation": True, "max_length": 8}, {"padding": True, "pad_to_multiple_of": 16, "return_length": True},
])
def test_xlnet_batches_match_hf(spiece_hyp, kwargs):
    ours, theirs = spiece_hyp
    a = ["The lobster is blue.", "Mating occurs in the summer", "A", ""]
    b = ["a", "b c d e f", "g", "h i"]
    for args in [(a,), (a, b)]:
        expected, got = theirs(*args, **kwargs), ours(*args, **kwargs)
        assert set(got) == set(expected)
        for key in expected:
            e, g = expected[key], got[key]
            assert (torch.equal(g, e) if isinstance(e, torch.Tensor) else g == e), key


def test_xlnet_left_padding_and_type_ids(spiece):
    tok = XLNetTokenizer(spiece)
    enc = tok(["a", "a much longer text than the first"], ["b", "c"], padding=True, return_tensors="pt")
    assert (enc.input_ids[:, -1] == tok.cls_token_id).all() and (enc.token_type_ids[:, -1] == 2).all()
    pads = enc.attention_mask == 0
    assert pads[0].any() and not pads[1].any() and pads[0, 0]
    assert (enc.input_ids[pads] == 5).all() and (enc.token_type_ids[pads] == 3).all()
    assert enc.input_ids.dtype == torch.long and enc.to("cpu").input_ids.equal(enc.input_ids)


def test_xlnet_right_padding_option(spiece):
    ours, theirs = both_xlnet(spiece, padding_side="right")
    assert ours(["a", "b c d"], padding=True) == dict(theirs(["a", "b c d"], padding=True))


def test_xlnet_special_tokens_mask_and_helpers(spiece):
    ours, theirs = both_xlnet(spiece)
    ids = ours.encode("a b", "c")
    assert ours.get_special_tokens_mask(ids, already_has_special_tokens=True) == theirs.get_special_tokens_mask(ids, already_has_special_tokens=True)
    assert ours.num_special_tokens_to_add(pair=True) == theirs.num_special_tokens_to_add(pair=True) == 3
    assert ours.all_special_tokens == theirs.all_special_tokens and ours.all_special_ids == theirs.all_special_ids
    assert ours.get_vocab() == {k: v for k, v in theirs.get_vocab().items()} and len(ours) == len(theirs)
    assert ours.convert_tokens_to_ids(["▁the", "notapiece", "<sep>"]) == theirs.convert_tokens_to_ids(["▁the", "notapiece", "<sep>"])
    assert ours.batch_decode(torch.tensor([ids, ids])) == theirs.batch_decode(torch.tensor([ids, ids]))


def test_xlnet_save_and_load_round_trips(spiece, tmp_path):
    ours = XLNetTokenizer(spiece, do_lower_case=True, model_max_length=16)
    ours.save_pretrained(tmp_path / "ours")
    text = "Hello THERE, 1,000 <mask> times"
    again = XLNetTokenizer.from_pretrained(tmp_path / "ours")
    assert again.encode(text) == ours.encode(text) and again.do_lower_case and again.model_max_length == 16
    assert HFXLNet.from_pretrained(str(tmp_path / "ours")).encode(text) == ours.encode(text)
    HFXLNet(str(spiece), do_lower_case=True).save_pretrained(str(tmp_path / "hf"))
    from_hf = XLNetTokenizer.from_pretrained(tmp_path / "hf")
    assert from_hf.encode(text) == ours.encode(text) and from_hf.mask_token == "<mask>" and from_hf.model_max_length is None


def test_pretrained_xlnet_base_cased_ids():
    "The public xlnet-base-cased ids (transformers' integration test), when a real spiece.model is given."
    path = os.environ.get("XLREF_XLNET_SPIECE")
    if not path:
        pytest.skip("set XLREF_XLNET_SPIECE to the xlnet-base-cased spiece.model to check its published ids")
    if not Path(path).is_file():
        pytest.fail(f"XLREF_XLNET_SPIECE={path} is not a file")
    expected = json.loads(REFERENCE.read_text())["xlnet-base-cased"]["tokenizer"]
    tok = XLNetTokenizer(path)
    assert tok.encode(expected["text"]) == expected["expected_input_ids"]
    enc = tok([expected["text"], "Hi"], padding=True)
    assert enc["input_ids"][0] == expected["expected_input_ids"]
    assert enc["input_ids"][1][0] == 5 and enc["token_type_ids"][1][0] == 3 and enc["token_type_ids"][0][-1] == 2


# ---------------------------------------------------------------- XLNet: errors and pinned 4.35 behaviour

def test_xlnet_missing_and_corrupt_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        XLNetTokenizer(tmp_path / "spiece.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ValueError, match="not a valid SentencePiece model"):
        XLNetTokenizer(bad)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        XLNetTokenizer.from_pretrained(tmp_path / "xlnet-base-cased")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        XLNetTokenizer.from_pretrained(tmp_path / "d")


def test_xlnet_unknown_special_token_is_refused(spiece):
    with pytest.raises(ValueError, match=r"\['\[SEP\]'\] are not pieces"):
        XLNetTokenizer(spiece, sep_token="[SEP]")
    with pytest.raises(TypeError, match="sep_token"):
        XLNetTokenizer(spiece, sep_token=3)
    # 4.35 instead appends the unknown token after the vocabulary, at an id the model has no embedding for
    theirs = HFXLNet(str(spiece), sep_token="[SEP]")
    assert theirs.sep_token_id == theirs.vocab_size


def test_xlnet_too_long_without_truncation_is_an_error(spiece):
    ours, theirs = both_xlnet(spiece)
    a, b = "a long first text " * 4, "and a second one " * 4
    with pytest.raises(ValueError, match="truncation is off"):
        ours(a, b, padding="max_length", max_length=10)
    with pytest.raises(ValueError, match="truncation is off"):
        ours(a, b, max_length=10, truncation=False)
    # 4.35 returns more than max_length ids without a word
    assert len(theirs(a, b, padding="max_length", max_length=10)["input_ids"]) > 10


def test_xlnet_impossible_truncation_is_an_error(spiece):
    ours, theirs = both_xlnet(spiece)
    with pytest.raises(ValueError, match="only_second"):
        ours("a b c d e f g", "x", truncation="only_second", max_length=5)
    with pytest.raises(ValueError, match="needs a pair"):
        ours("a b c d e f g", truncation="only_second", max_length=5)
    with pytest.raises(ValueError, match="no room"):
        ours("a", "b", truncation=True, max_length=2)
    # 4.35 logs an error and returns the untruncated, too-long sequence
    assert len(theirs("a b c d e f g", "x", truncation="only_second", max_length=5)["input_ids"]) > 5


@pytest.mark.parametrize("kwargs, err, match", [
    ({"padding": "sideways"}, ValueError, "padding must be"),
    ({"truncation": "middle"}, ValueError, "truncation must be"),
    ({"return_tensors": "tf"}, ValueError, "return_tensors"),
    ({"max_length": 0}, ValueError, "max_length"),
    ({"max_length": 2.5}, ValueError, "max_length"),
    ({"padding": "max_length"}, ValueError, "need max_length"),
    ({"padding": "max_length", "truncation": True, "max_length": 30, "pad_to_multiple_of": 8}, ValueError, "multiple"),
    ({"return_token_type_ids": True, "add_special_tokens": False}, ValueError, "add_special_tokens"),
])
def test_xlnet_bad_call_arguments(spiece_hyp, kwargs, err, match):
    ours, _ = spiece_hyp
    with pytest.raises(err, match=match):
        ours("some text", **kwargs)


def test_xlnet_bad_inputs(spiece_hyp):
    ours, _ = spiece_hyp
    with pytest.raises(TypeError, match="must be a str"):
        ours.tokenize(b"bytes")
    with pytest.raises(TypeError, match="text must be"):
        ours(3.5)
    with pytest.raises(ValueError, match="text_pair as a list"):
        ours(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="padding=True"):
        ours(["a", "b c d"], return_tensors="pt")
    with pytest.raises(IndexError, match="outside the vocabulary"):
        ours.decode([0, 10**6])
    with pytest.raises(TypeError, match="ids must be ints"):
        ours.decode(["a"])
    with pytest.raises(ValueError, match="batch_decode"):
        ours.decode(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="batch"):
        ours.encode(["a", "b"])
    with pytest.raises(AttributeError, match="no 'foo'"):
        ours("a").foo


# ---------------------------------------------------------------- Transformer-XL: parity with 4.35

def test_txl_vocabulary_matches_hf(txl_pair):
    ours, theirs = txl_pair
    assert ours.idx2sym == theirs.idx2sym and ours.sym2idx == dict(theirs.sym2idx)
    assert ours.counter == theirs.counter and ours.vocab_size == theirs.vocab_size


@pytest.mark.parametrize("options", [{"min_freq": 3}, {"max_size": 200}, {"lower_case": True, "max_size": 500, "min_freq": 2},
                                     {"special": ["<eos>", "<unk>"], "max_size": 50}])
def test_txl_vocabulary_options_match_hf(wiki_file, options):
    ours, theirs = TransfoXLTokenizer(**options), HFTransfoXL(**options)
    ours.count_file(wiki_file)
    theirs.count_file(str(wiki_file))
    ours.build_vocab()
    theirs.build_vocab()
    assert ours.idx2sym == theirs.idx2sym


TXL_TRICKY = ["Hello <unk> world, 23,000 people are 1.80m tall; state-of-the-art <eos> <formula>",
              "\"quoted\" don't (parens) [brackets] $5.00 & 50% off... really?!", "", "   ", "café Ünïcödé 日本語 🙂",
              "e.g. U.S. 3,5, 1.2.3 a,b 4-5", "tabs\tand\nnewlines  and   runs"]


@pytest.mark.parametrize("text", TXL_TRICKY)
@pytest.mark.parametrize("lower_case", [False, True])
def test_txl_tokenize_matches_hf(text, lower_case):
    ours, theirs = TransfoXLTokenizer(lower_case=lower_case), HFTransfoXL(lower_case=lower_case)
    assert ours.tokenize(text) == theirs.tokenize(text)
    if "<" not in text:  # 4.35 honours add_eos only in its private _tokenize, which does not split specials
        assert ours.tokenize(text, add_eos=True) == theirs._tokenize(text, add_eos=True)
        assert ours.tokenize(text, add_double_eos=True) == theirs._tokenize(text, add_double_eos=True)


def test_txl_wikitext_lines_tokenize_like_hf(txl_pair, wiki_lines):
    ours, theirs = txl_pair
    assert [ours.tokenize(l) for l in wiki_lines] == [theirs.tokenize(l) for l in wiki_lines]


def test_txl_ids_and_decode_match_hf_loaded_vocab(txl_pair, legacy_pickle, wiki_lines):
    "Through the pretrained-vocabulary path (the wt103 route) 4.35's ids are right; compare ids and text."
    ours = TransfoXLTokenizer(pretrained_vocab_file=legacy_pickle)
    theirs = HFTransfoXL(pretrained_vocab_file=str(legacy_pickle))
    theirs.idx2sym = list(txl_pair[0].idx2sym)  # 4.35 does not restore it (pinned below)
    for text in wiki_lines[:200] + TXL_TRICKY:
        ids = ours.encode(text)
        assert ids == theirs.encode(text)
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
    assert ours.convert_tokens_to_ids(["<formula>", "<unk>", "zzzz"]) == theirs.convert_tokens_to_ids(["<formula>", "<unk>", "zzzz"])
    assert len(ours) == len(theirs) and ours.get_vocab() == theirs.get_vocab()


def test_txl_vocab_file_matches_hf(tmp_path, txl_pair):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(f"{w} {i}\n" for i, w in enumerate(txl_pair[0].idx2sym)), encoding="utf-8")
    ours, theirs = TransfoXLTokenizer(vocab_file=vocab), HFTransfoXL(vocab_file=str(vocab))
    text = TXL_TRICKY[0] + " " + TXL_TRICKY[5]
    assert ours.idx2sym == theirs.idx2sym and ours.encode(text) == theirs.encode(text)


def test_txl_call_matches_hf(txl_pair, legacy_pickle):
    ours = TransfoXLTokenizer(pretrained_vocab_file=legacy_pickle)
    theirs = HFTransfoXL(pretrained_vocab_file=str(legacy_pickle))
    for kwargs in [{}, {"truncation": True, "max_length": 4}, {"return_attention_mask": True}]:
        assert ours("the lobster is blue", **kwargs) == dict(theirs("the lobster is blue", **kwargs))
        assert ours(["a b", "c"], **kwargs) == dict(theirs(["a b", "c"], **kwargs))


def test_txl_encode_file(txl_pair, wiki_file, wiki_lines):
    ours, _ = txl_pair
    ids = ours.encode_file(wiki_file, ordered=True)
    eos = ours.convert_tokens_to_ids("<eos>")
    assert ids.dtype == torch.long and ids.dim() == 1 and int((ids == eos).sum()) == len(wiki_lines)
    per_line = ours.encode_file(wiki_file)
    assert len(per_line) == len(wiki_lines) and torch.equal(torch.cat(per_line), ids)
    assert all(int(t[-1]) == eos for t in per_line)
    no_eos = ours.encode_file(wiki_file, ordered=True, add_eos=False)
    assert torch.equal(no_eos, ids[ids != eos])
    double = ours.encode_file(wiki_file, add_double_eos=True)
    assert double[0].tolist()[0] == double[0].tolist()[-1] == ours.convert_tokens_to_ids("<S>")
    assert torch.equal(ours.encode_sents([ours.tokenize(l, add_eos=True) for l in wiki_lines], ordered=True), ids)


def test_txl_round_trip_and_number_tokens(txl_pair):
    ours, _ = txl_pair
    text = "the city had 23,000 people and 1.5 of the state-of-the-art , ."
    words = ours.tokenize(text)
    assert "@,@" in words and "@.@" in words and "@-@" in words
    assert ours.convert_tokens_to_string(words) == "the city had 23,000 people and 1.5 of the state-of-the-art,."


@given(st.lists(st.sampled_from(["the", "of", "lobster", "is", "blue", "a", "sea", ",", ".", "(", ")", "zzqx"]), max_size=12))
def test_txl_round_trip_property(txl_fixture_words, words):
    tok = txl_fixture_words
    text = " ".join(words)
    known = [w if w in tok.sym2idx else tok.unk_token for w in tok.tokenize(text)]   # unknown words become <unk>
    assert tok.decode(tok.encode(text)) == tok.clean_up_tokenization(tok.convert_tokens_to_string(known))
    assert tok.convert_ids_to_tokens(tok.encode(text)) == known


@pytest.fixture(scope="session")
def txl_fixture_words(txl_pair):
    return txl_pair[0]


def test_txl_character_and_delimiter_modes():
    chars = TransfoXLTokenizer(delimiter="")
    assert chars.tokenize("ab c", add_eos=True) == ["a", "b", " ", "c", "<eos>"]
    # 4.35 returns a str instead of a list here, so its add_eos crashes
    with pytest.raises(TypeError):
        HFTransfoXL(delimiter="")._tokenize("ab c", add_eos=True)
    split = TransfoXLTokenizer(delimiter="|")
    assert split.tokenize("a,b|c d||e") == ["a,b", "c d", "e"]
    # 4.35 ignores a non-empty delimiter and runs the Moses pipeline instead
    assert HFTransfoXL(delimiter="|").tokenize("a,b|c") != ["a,b", "c"]


def test_txl_save_and_load_json(tmp_path, txl_pair):
    ours, _ = txl_pair
    ours.save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["tokenizer_config.json", "vocab.json"]
    again = TransfoXLTokenizer.from_pretrained(tmp_path / "saved")
    assert again.idx2sym == ours.idx2sym and again.encode(TXL_TRICKY[0]) == ours.encode(TXL_TRICKY[0])
    assert TransfoXLTokenizer(pretrained_vocab_file=tmp_path / "saved" / "vocab.json").idx2sym == ours.idx2sym


# ---------------------------------------------------------------- Transformer-XL: 4.35 defects, pinned

def test_hf_ignores_add_eos_in_count_and_encode_file(wiki_file, wiki_lines, txl_pair):
    _, theirs = txl_pair
    hf_ids = theirs.encode_file(str(wiki_file), ordered=True, add_eos=True)
    assert int((hf_ids == theirs.sym2idx["<eos>"]).sum()) == 0  # no <eos> at all
    assert theirs.tokenize("a line", add_eos=True) == ["a", "line"]
    assert TransfoXLTokenizer().tokenize("a line", add_eos=True) == ["a", "line", "<eos>"]


def test_hf_vocab_built_from_corpus_is_shadowed_by_added_tokens(txl_pair):
    ours, theirs = txl_pair
    ids = theirs.encode("the")
    assert ids == [ours.sym2idx["the"]] and theirs.decode(ids) != "the"
    assert ours.decode(ours.encode("the")) == "the"


def test_hf_reloaded_vocab_cannot_decode(tmp_path, txl_pair):
    _, theirs = txl_pair
    theirs.save_pretrained(str(tmp_path))
    reloaded = HFTransfoXL.from_pretrained(str(tmp_path))
    with pytest.raises(IndexError):
        reloaded.decode(reloaded.encode("the city"))


# ---------------------------------------------------------------- safe loading

class _Payload:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _evil_pickle(path: Path, marker: Path, protocol=pickle.DEFAULT_PROTOCOL):
    path.write_bytes(pickle.dumps({"idx2sym": ["<unk>", "a"], "hook": _Payload(f"touch '{marker}'")}, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_is_refused_without_running(tmp_path, protocol):
    marker = tmp_path / "marker"
    evil = _evil_pickle(tmp_path / "vocab.pkl", marker, protocol)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load (posix|os)\.system.*may only contain"):
        load_vocab_pickle(evil)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        TransfoXLTokenizer(pretrained_vocab_file=evil)
    (tmp_path / "dir").mkdir()
    _evil_pickle(tmp_path / "dir" / "vocab.pkl", marker, protocol)
    with pytest.raises(pickle.UnpicklingError):
        TransfoXLTokenizer.from_pretrained(tmp_path / "dir")
    assert not marker.exists()


def test_hf_runs_the_malicious_pickle(tmp_path):
    "The defect we guard against: transformers 4.35 executes the payload (here, it only creates a file)."
    marker = tmp_path / "marker"
    evil = _evil_pickle(tmp_path / "vocab.pkl", marker)
    HFTransfoXL(pretrained_vocab_file=str(evil))  # loads without complaint...
    assert marker.exists()                         # ...after running the command


@pytest.mark.parametrize("payload", [
    (lambda: __import__("builtins").eval, "builtins.eval"),
    (lambda: __import__("subprocess").call, "subprocess.call"),
    (lambda: __import__("functools").partial, "functools.partial"),
])
def test_other_globals_are_refused(tmp_path, payload):
    make, name = payload

    class Reducer:
        def __reduce__(self):
            return (make(), ("1",))
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"a": Reducer()}))
    with pytest.raises(pickle.UnpicklingError, match=name.replace(".", r"\.")):
        load_vocab_pickle(path)


def test_plain_vocabulary_pickles_are_accepted(tmp_path, legacy_pickle, txl_pair):
    d = load_vocab_pickle(legacy_pickle)
    assert isinstance(d["counter"], collections.Counter) and isinstance(d["sym2idx"], collections.OrderedDict)
    assert TransfoXLTokenizer(pretrained_vocab_file=legacy_pickle).idx2sym == txl_pair[0].idx2sym
    for protocol in (0, 1, 2, 4, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps({"idx2sym": ["<unk>", "a", "é"], "special": ("<eos>",), "s": {1, 2},
                                       "f": frozenset(["x"]), "n": None, "x": 1.5, "b": True}, protocol=protocol))
        assert TransfoXLTokenizer(pretrained_vocab_file=path).idx2sym == ["<unk>", "a", "é"]


def test_bad_vocabulary_files(tmp_path):
    cases = {
        "int.pkl": (pickle.dumps(3), ValueError, "torch.save"),
        "list.pkl": (pickle.dumps(["a"]), ValueError, "holds a list"),
        "bytes.pkl": (pickle.dumps({"idx2sym": [b"a"]}, protocol=3), ValueError, "bytes"),
        "trunc.pkl": (pickle.dumps({"idx2sym": ["a", "b"]})[:-5], pickle.UnpicklingError, "truncated"),
        "nowords.pkl": (pickle.dumps({"counter": collections.Counter()}), ValueError, "neither a sym2idx"),
        "gaps.pkl": (pickle.dumps({"sym2idx": {"a": 0, "b": 5}}), ValueError, "without gaps"),
        "dup.json": (json.dumps({"idx2sym": ["a", "a"]}).encode(), ValueError, "twice"),
        "bad.json": (b"{nope", ValueError, "neither xlref's vocab.json nor a pickle"),
    }
    for name, (content, err, match) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(err, match=match):
            TransfoXLTokenizer(pretrained_vocab_file=tmp_path / name)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TransfoXLTokenizer(pretrained_vocab_file=tmp_path / "missing.pkl")
    with pytest.raises(FileNotFoundError, match="has none of"):
        TransfoXLTokenizer.from_pretrained(tmp_path)


def test_txl_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus file"):
        TransfoXLTokenizer().count_file(tmp_path / "none.txt")
    with pytest.raises(FileNotFoundError, match="corpus file"):
        TransfoXLTokenizer().encode_file(tmp_path / "none.txt")
    with pytest.raises(ValueError, match="min_freq"):
        TransfoXLTokenizer(min_freq=-1)
    with pytest.raises(ValueError, match="max_size"):
        TransfoXLTokenizer(max_size="10")
    with pytest.raises(TypeError, match="delimiter"):
        TransfoXLTokenizer(delimiter=3)
    no_unk = TransfoXLTokenizer(special=["<eos>"], unk_token="<unk>")
    no_unk.count_sents([["a", "b"]])
    no_unk.build_vocab()
    with pytest.raises(ValueError, match="not in the vocabulary"):
        no_unk.encode("zzz")
    vocab = tmp_path / "v.txt"
    vocab.write_text("a\nb\n")
    with pytest.raises(ValueError, match="has no '<unk>'"):
        TransfoXLTokenizer(vocab_file=vocab)
    vocab.write_text("a\n\n<unk>\n")
    with pytest.raises(ValueError, match="line 2"):
        TransfoXLTokenizer(vocab_file=vocab)
    tok = TransfoXLTokenizer(special=["<unk>"])
    tok.count_sents([["a"]])
    tok.build_vocab()
    with pytest.raises(ValueError, match="no pad_token"):
        tok(["a", "a a"], padding=True)
    with pytest.raises(IndexError, match="outside the vocabulary"):
        tok.decode([99])


def test_txl_character_and_delimiter_modes_decode_as_they_were_cut():
    "decode is the inverse of the cut: characters concatenated, delimited words joined with the delimiter."
    chars = TransfoXLTokenizer(delimiter="", special=["<eos>"])
    chars.count_sents([list("to be, or not")])
    chars.build_vocab()
    assert chars.decode(chars.encode("to be, or not")) == "to be, or not"
    words = TransfoXLTokenizer(delimiter=" ", special=["<eos>"])
    words.count_sents([["to", "be", ",", "or", "not"]])
    words.build_vocab()
    assert words.decode(words.encode("to be , or not"), clean_up_tokenization_spaces=False) == "to be , or not"
    # 4.35 cannot: it runs Moses on characters (spaces become <formula>) before any decoding
    theirs = HFTransfoXL(delimiter="", special=["<eos>"])
    theirs.count_sents([list("to be, or not")])
    theirs.build_vocab()
    assert theirs.decode(theirs.convert_tokens_to_ids(list("to be, or not"))) != "to be, or not"

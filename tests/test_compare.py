"""xlref.compare (notebook 18): checkpoints written by transformers 4.35 compare equal layer by layer in xlref and in
transformers, for both models; a perturbed checkpoint is named at the layer that departs; verify and its command
line; the refusals."""
import json
import subprocess
import sys

import pytest
import torch

from _hf import quiet, transformers
from xlref import TransfoXLLMHeadModel, XLNetModel
from xlref.compare import compare, first_departure, report, verify


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    txl = transformers.TransfoXLConfig(vocab_size=60, cutoffs=[20, 40], d_model=16, d_embed=16, n_head=2, d_head=8,
                                       d_inner=32, n_layer=3, mem_len=4, div_val=2, clamp_len=-1, same_length=False)
    quiet(transformers.TransfoXLLMHeadModel(txl).save_pretrained, root / "txl")
    xl = transformers.XLNetConfig(vocab_size=40, d_model=16, n_layer=3, n_head=2, d_inner=32, mem_len=4)
    quiet(transformers.XLNetLMHeadModel(xl).save_pretrained, root / "xlnet-lm")
    quiet(transformers.XLNetModel(xl).save_pretrained, root / "xlnet")
    return root


@pytest.mark.parametrize("name", ["txl", "xlnet-lm", "xlnet"])
def test_checkpoints_written_by_transformers_compare_equal(checkpoints, name):
    rows = compare(checkpoints / name)
    assert first_departure(rows) is None, report(rows, atol=1e-5)
    names = [r.name for r in rows]
    assert names[0] == "embeddings" and names[-1] == "logits" and "layer 2 output" in names and "memory 2" in names


@pytest.mark.parametrize("layer", [0, 2])
def test_a_perturbed_layer_is_named(checkpoints, tmp_path, layer):
    bent = TransfoXLLMHeadModel.from_pretrained(checkpoints / "txl")
    with torch.no_grad():
        bent.transformer.layers[layer].pos_ff.CoreNet[0].weight.add_(0.01)
    bent.save_pretrained(tmp_path / "bent")
    rows = compare(checkpoints / "txl", tmp_path / "bent")
    assert first_departure(rows) == f"layer {layer} output"
    model = XLNetModel.from_pretrained(checkpoints / "xlnet")
    with torch.no_grad():
        model.layer[1].rel_attn.q.add_(0.05 * torch.randn_like(model.layer[1].rel_attn.q))   # (a constant would
        # cancel: the layer norm before it leaves every position with zero mean)
    assert first_departure(compare(checkpoints / "xlnet", model)) == "layer 1 attention"     # a model object


def test_verify_and_the_command_line(tmp_path):
    assert verify("txl-shakespeare-char") == []
    run = lambda *args: subprocess.run([sys.executable, "-m", "xlref.compare", *map(str, args)], capture_output=True,
                                       text=True, timeout=300)
    ok = run("verify", "txl-shakespeare-char")
    assert ok.returncode == 0 and "every pinned output reproduced" in ok.stdout
    missing = run("verify", "txl-shakespeare-char", "--expected", tmp_path / "none.json")
    assert missing.returncode == 2 and "no expectations" in missing.stderr


def test_refusals(checkpoints, tmp_path):
    with pytest.raises(TypeError, match="against must be"):
        compare(checkpoints / "txl", against=3)
    rows = compare(checkpoints / "txl", TransfoXLLMHeadModel.from_pretrained(checkpoints / "txl").transformer)
    assert first_departure(rows) == "logits" and rows[-1].max_abs == float("inf")   # states, not scores: shapes differ
    from xlref import XLNetConfig
    two_layers = XLNetModel(XLNetConfig(vocab_size=60, d_model=16, n_layer=2, n_head=2, d_inner=32, mem_len=4))
    with pytest.raises(ValueError, match="different quantities"):
        compare(checkpoints / "txl", two_layers)
    with pytest.raises(ValueError, match="verify checks Transformer-XL language models"):
        (checkpoints / "xlnet-lm" / "expected.json").write_text(json.dumps({}))
        verify(checkpoints / "xlnet-lm")
    clf = tmp_path / "clf"
    quiet(transformers.XLNetForSequenceClassification(transformers.XLNetConfig(
        vocab_size=40, d_model=16, n_layer=1, n_head=2, d_inner=32)).save_pretrained, clf)
    with pytest.raises(ValueError, match="compare takes a Transformer-XL or XLNet model or language model"):
        compare(clf)

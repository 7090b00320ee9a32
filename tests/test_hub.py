"""xlref.hub (notebook 14) with the Transformer-XL models: checkpoints exchanged with transformers
4.35 in both directions and both formats, tied weights restored, configs round-tripped, prefixes,
resolution of names, and every refusal."""
import json
import os
import pickle
import sys
import warnings

import pytest
import torch

import xlref.hub as hub
from _hf import TOL, hf_transfo_xl_config, quiet, randomize, tiny_transfo_xl, transformers, twin
from xlref.transfo_xl import TransfoXLConfig, TransfoXLForSequenceClassification, TransfoXLLMHeadModel, TransfoXLModel


def scores(model, ids):
    with torch.no_grad():
        return model(ids, mems=[torch.empty(0, ids.shape[0], model.config.d_model)] * model.config.n_layer).prediction_scores


@pytest.mark.parametrize("safe", [True, False])
@pytest.mark.parametrize("overrides", [dict(), dict(div_val=2), dict(d_embed=12), dict(untie_r=False),
                                       dict(proj_share_all_but_first=False, div_val=2)])
def test_lm_checkpoints_move_both_ways(tmp_path, safe, overrides):
    config = tiny_transfo_xl(**overrides)
    ours, theirs = twin(TransfoXLLMHeadModel, transformers.TransfoXLLMHeadModel, config, seed=3)
    ids = torch.randint(0, 60, (2, 6))
    expected = scores(ours, ids)
    # transformers writes, xlref reads
    quiet(theirs.save_pretrained, tmp_path / "hf", safe_serialization=safe)
    loaded = TransfoXLLMHeadModel.from_pretrained(tmp_path / "hf")
    torch.testing.assert_close(scores(loaded, ids), expected, **TOL)
    assert not loaded.training
    assert all(o.weight is e.weight for o, e in zip(loaded.crit.out_layers, loaded.transformer.word_emb.emb_layers))
    # xlref writes, transformers reads
    ours.save_pretrained(tmp_path / "ours", safe_serialization=safe)
    back = quiet(transformers.TransfoXLLMHeadModel.from_pretrained, tmp_path / "ours").eval()
    with torch.no_grad():
        theirs_scores = back(ids, mems=[torch.empty(0, 2, config.d_model)] * config.n_layer).prediction_scores
    torch.testing.assert_close(theirs_scores, expected, **TOL)
    # the two files carry the same keys
    name = hub.SAFE_WEIGHTS_NAME if safe else hub.WEIGHTS_NAME
    assert set(hub.load_state_dict_file(tmp_path / "hf")) == set(hub.load_state_dict_file(tmp_path / "ours")), name


def test_base_and_head_checkpoints_load_into_each_other(tmp_path):
    config = tiny_transfo_xl(num_labels=3)
    base = TransfoXLModel(config).eval()
    randomize(base)
    base.save_pretrained(tmp_path / "base")
    with pytest.warns(UserWarning, match="missing keys.*score.weight"):
        clf = TransfoXLForSequenceClassification.from_pretrained(tmp_path / "base")
    torch.testing.assert_close(clf.transformer.word_emb.emb_layers[0].weight, base.word_emb.emb_layers[0].weight)
    clf.save_pretrained(tmp_path / "clf")
    with pytest.warns(UserWarning, match="unexpected keys.*score.weight"):
        base_again = TransfoXLModel.from_pretrained(tmp_path / "clf")
    ids = torch.randint(0, 60, (1, 4))
    with torch.no_grad():
        torch.testing.assert_close(base_again(ids).last_hidden_state, base(ids).last_hidden_state, rtol=0, atol=0)


def test_config_round_trips_through_both_libraries(tmp_path):
    config = tiny_transfo_xl(div_val=2, my_extra_key={"kept": True}, num_labels=4)
    config.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["model_type"] == "transfo-xl" and raw["my_extra_key"] == {"kept": True}
    assert TransfoXLConfig.from_pretrained(tmp_path) == config
    theirs = transformers.TransfoXLConfig.from_pretrained(tmp_path)
    for field in TransfoXLConfig.defaults:
        assert getattr(theirs, field) == getattr(config, field), field
    assert theirs.tie_projs == config.tie_projs and theirs.num_labels == 4
    theirs.save_pretrained(tmp_path / "hf")
    again = TransfoXLConfig.from_pretrained(tmp_path / "hf")
    for field in [*TransfoXLConfig.defaults, "tie_projs", "id2label", "my_extra_key"]:
        assert getattr(again, field) == getattr(config, field), field


def test_config_overrides_and_num_labels():
    config = tiny_transfo_xl()
    assert TransfoXLConfig.from_dict(config.to_dict(), num_labels=5).num_labels == 5
    with pytest.warns(UserWarning, match="keeping id2label"):
        assert TransfoXLConfig(num_labels=3, id2label={0: "a", 1: "b"}).num_labels == 2
    with pytest.raises(ValueError, match="not a 'transfo-xl'"):
        TransfoXLConfig.from_dict({**config.to_dict(), "model_type": "xlnet"})


def test_bad_config_files(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        TransfoXLConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        TransfoXLConfig.from_pretrained(tmp_path)


def test_weights_that_do_not_fit_the_config(tmp_path):
    TransfoXLModel(tiny_transfo_xl(d_inner=24)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="does not match the weights"):
        TransfoXLModel.from_pretrained(tmp_path, d_inner=32)


def test_missing_or_corrupt_weight_files(tmp_path):
    tiny_transfo_xl().save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no model.safetensors or pytorch_model.bin"):
        TransfoXLModel.from_pretrained(tmp_path)
    (tmp_path / hub.SAFE_WEIGHTS_NAME).write_bytes(b"garbage")
    with pytest.raises(OSError, match="not a readable safetensors"):
        TransfoXLModel.from_pretrained(tmp_path)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    tiny_transfo_xl().save_pretrained(tmp_path)
    marker = tmp_path / "pwned"
    with open(tmp_path / hub.WEIGHTS_NAME, "wb") as f:
        pickle.dump({"word_emb.emb_layers.0.weight": _Payload(marker)}, f)
    with pytest.raises(OSError, match="never unpickles"):
        TransfoXLModel.from_pretrained(tmp_path)
    assert not marker.exists()


def test_name_resolution(tmp_path, monkeypatch):
    model = TransfoXLModel(tiny_transfo_xl()).eval()
    shipped = tmp_path / "shipped"
    model.save_pretrained(shipped / "xlref-tiny")
    monkeypatch.setattr(hub, "SHIPPED_CHECKPOINTS", shipped)
    loaded = TransfoXLModel.from_pretrained("xlref-tiny")                     # a checkpoint xlref ships
    assert torch.equal(loaded.word_emb.emb_layers[0].weight, model.word_emb.emb_layers[0].weight)
    with pytest.raises(OSError, match="hub could not provide it"):
        TransfoXLModel.from_pretrained("someone/not-in-the-cache", local_files_only=True)
    with pytest.raises(NotADirectoryError):
        TransfoXLModel.from_pretrained(shipped / "xlref-tiny" / "config.json")
    with pytest.raises(TypeError, match="hub id"):
        TransfoXLModel.from_pretrained(42)
    with pytest.raises(OSError, match="not a directory, a checkpoint xlref ships"):
        TransfoXLModel.from_pretrained("not a valid / name!")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(OSError, match="huggingface_hub is not installed"):
        TransfoXLModel.from_pretrained("someone/model")


def test_alias_removal_matches_transformers(tmp_path):
    "Our safetensors files drop exactly the keys 4.35's do (tied output layers, shared r_w_bias)."
    from safetensors import safe_open
    config = tiny_transfo_xl(untie_r=False, div_val=2)
    ours, theirs = twin(TransfoXLLMHeadModel, transformers.TransfoXLLMHeadModel, config)
    quiet(theirs.save_pretrained, tmp_path / "hf")
    ours.save_pretrained(tmp_path / "ours")
    keys = lambda d: set(safe_open(str(d / hub.SAFE_WEIGHTS_NAME), "pt").keys())
    assert keys(tmp_path / "ours") == keys(tmp_path / "hf")
    assert len(keys(tmp_path / "ours")) < len(ours.state_dict())


def test_wrong_config_class_and_output_access():
    with pytest.raises(TypeError, match="needs a TransfoXLConfig"):
        TransfoXLModel(transformers.TransfoXLConfig())
    out = TransfoXLModel(tiny_transfo_xl()).eval()(torch.ones(1, 2, dtype=torch.long))
    assert out["last_hidden_state"] is out[0] is out.last_hidden_state
    with pytest.raises(KeyError, match="hidden_states"):
        out["hidden_states"]


def test_more_refusals(tmp_path):
    model = TransfoXLModel(tiny_transfo_xl()).eval()
    with pytest.raises(TypeError, match="floating-point"):
        model(inputs_embeds=torch.zeros(1, 2, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        model(inputs_embeds=torch.zeros(1, 0, 16))
    with pytest.raises(ValueError, match="id2label"):
        tiny_transfo_xl(id2label={})
    with pytest.raises(ValueError, match="dropout"):
        tiny_transfo_xl(dropout="0.1")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        model.save_pretrained(tmp_path / "a_file")
    model.save_pretrained(tmp_path / "ok")
    with pytest.raises(TypeError, match="either config= or config overrides"):
        TransfoXLModel.from_pretrained(tmp_path / "ok", config=tiny_transfo_xl(), d_inner=8)
    (tmp_path / "ok" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        TransfoXLModel.from_pretrained(tmp_path / "ok")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        TransfoXLConfig.from_pretrained(tmp_path / "ok")
    tiny_transfo_xl().save_pretrained(tmp_path / "bad_bin")
    torch.save([torch.zeros(2)], tmp_path / "bad_bin" / hub.WEIGHTS_NAME)
    with pytest.raises(OSError, match="state dict of tensors"):
        TransfoXLModel.from_pretrained(tmp_path / "bad_bin")


def test_a_config_can_come_with_the_model_call(tmp_path):
    model = TransfoXLModel(tiny_transfo_xl()).eval()
    model.save_pretrained(tmp_path)
    again = TransfoXLModel.from_pretrained(tmp_path, config=tiny_transfo_xl())
    assert torch.equal(again.word_emb.emb_layers[0].weight, model.word_emb.emb_layers[0].weight)
    assert TransfoXLModel.from_pretrained(tmp_path, mem_len=9).mem_len == 9

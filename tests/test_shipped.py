"""The checkpoints xlref ships (xlref/checkpoints/, notebook 16): each loads by name, model and tokenizer, carries
its card, training record and config, reproduces its pinned outputs, and all fit the size budget."""
import json

import pytest

from xlref import TransfoXLLMHeadModel, TransfoXLTokenizer
from xlref.hub import SHIPPED_CHECKPOINTS
from xlref.train import SHIPPED_EXPECTED, TrainConfig, check_pinned

SHIPPED = sorted(p.name for p in SHIPPED_CHECKPOINTS.iterdir() if p.is_dir())
LOADERS = {"lm": (TransfoXLLMHeadModel, TransfoXLTokenizer)}


def test_at_least_one_checkpoint_ships_and_all_fit_the_budget():
    assert "txl-shakespeare-char" in SHIPPED
    total = sum(f.stat().st_size for f in SHIPPED_CHECKPOINTS.rglob("*") if f.is_file())
    assert total <= 25 * 2**20, f"the shipped checkpoints take {total / 2**20:.1f} MiB, over the 25 MiB budget"


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_checkpoint_loads_by_name_and_reproduces_its_pinned_outputs(name):
    folder = SHIPPED_CHECKPOINTS / name
    for part in ("config.json", "model.safetensors", "README.md", "train_config.json", "training.json", SHIPPED_EXPECTED):
        assert (folder / part).is_file(), f"{name} lacks {part}"
    config = TrainConfig.from_dict(json.loads((folder / "train_config.json").read_text()))
    record = json.loads((folder / "training.json").read_text())
    assert record["steps"] == config.steps and record["command"].startswith("python -m xlref.train")
    model_class, tokenizer_class = LOADERS[config.task]
    model, tokenizer = model_class.from_pretrained(name), tokenizer_class.from_pretrained(name)
    expected = json.loads((folder / SHIPPED_EXPECTED).read_text())
    assert check_pinned(model, tokenizer, expected) == []
    card = (folder / "README.md").read_text()
    assert f"{record['final']['eval_bpc']:.3f}" in card and record["command"] in card


def test_check_pinned_names_what_differs():
    name = "txl-shakespeare-char"
    model, tokenizer = TransfoXLLMHeadModel.from_pretrained(name), TransfoXLTokenizer.from_pretrained(name)
    expected = json.loads((SHIPPED_CHECKPOINTS / name / SHIPPED_EXPECTED).read_text())
    bad = dict(expected, log_probs_last=[v + 1e-3 for v in expected["log_probs_last"]],
               greedy_ids=[expected["greedy_ids"][0]] * len(expected["greedy_ids"]))
    problems = check_pinned(model, tokenizer, bad)
    assert problems[0].startswith("log_probs_last: largest difference 1.00e-03") and problems[1].startswith("greedy")


def test_an_unknown_name_is_not_a_shipped_checkpoint():
    with pytest.raises(FileNotFoundError):
        TransfoXLTokenizer.from_pretrained("no-such-checkpoint")

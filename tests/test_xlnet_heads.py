"""Every XLNet head against transformers 4.35 (float32, tolerance 1e-5), the tied LM head's checkpoint
exchange, attention pooling (no reference: HF raises NotImplementedError), and label errors."""
import pytest
import torch

from _hf import TOL, quiet
from test_xlnet import VOCAB, assert_same, hf_xlnet, tiny_xlnet, xlnet_twin
from xlref.heads import (XLNetForMultipleChoice, XLNetForQuestionAnswering, XLNetForQuestionAnsweringSimple,
                         XLNetForSequenceClassification, XLNetForTokenClassification, XLNetLMHeadModel)

IDS = torch.randint(1, VOCAB, (2, 6), generator=torch.Generator().manual_seed(0))
MASK = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]).float()
COMMON = dict(attention_mask=MASK, token_type_ids=torch.tensor([[0, 0, 0, 1, 1, 2]] * 2), output_hidden_states=True,
              output_attentions=True)


def _both(ours, theirs, *args, **kwargs):
    with torch.no_grad():
        assert_same(ours(*args, **kwargs).to_tuple(), quiet(theirs, *args, **kwargs).to_tuple())
        assert_same(ours(*args, return_dict=False, **kwargs), quiet(theirs, *args, return_dict=False, **kwargs))


def test_lm_head_with_targets_and_labels():
    ours, theirs = xlnet_twin(XLNetLMHeadModel, hf_xlnet.XLNetLMHeadModel, tiny_xlnet())
    perm = (torch.rand(2, 6, 6) < 0.5).float()
    tm = torch.nn.functional.one_hot(torch.tensor([[5, 2], [0, 1]]), 6).float()
    _both(ours, theirs, IDS, perm_mask=perm, target_mapping=tm, labels=torch.tensor([[3, -100], [4, 5]]), **COMMON)


@pytest.mark.parametrize("summary_type", ["last", "first", "mean", "cls_index"])
@pytest.mark.parametrize("labels", [torch.tensor([0, 2]), torch.tensor([[1.0, 0, 1], [0, 0, 1]])])
def test_sequence_classification(summary_type, labels):
    ours, theirs = xlnet_twin(XLNetForSequenceClassification, hf_xlnet.XLNetForSequenceClassification,
                              tiny_xlnet(summary_type=summary_type, num_labels=3))
    _both(ours, theirs, IDS, labels=labels, **COMMON)


def test_regression_multiple_choice_tokens_and_simple_qa():
    ours, theirs = xlnet_twin(XLNetForSequenceClassification, hf_xlnet.XLNetForSequenceClassification, tiny_xlnet(num_labels=1))
    _both(ours, theirs, IDS, labels=torch.tensor([0.3, -2.0]))
    ours, theirs = xlnet_twin(XLNetForMultipleChoice, hf_xlnet.XLNetForMultipleChoice, tiny_xlnet())
    _both(ours, theirs, torch.randint(1, VOCAB, (2, 3, 5)), labels=torch.tensor([1, 2]),
          token_type_ids=torch.randint(0, 2, (2, 3, 5)), input_mask=torch.zeros(2, 3, 5))
    ours, theirs = xlnet_twin(XLNetForTokenClassification, hf_xlnet.XLNetForTokenClassification, tiny_xlnet(num_labels=4))
    _both(ours, theirs, IDS, labels=torch.tensor([[-100, -100, 1, 2, 3, 0], [0, 1, 2, 3, 0, 1]]), **COMMON)
    ours, theirs = xlnet_twin(XLNetForQuestionAnsweringSimple, hf_xlnet.XLNetForQuestionAnsweringSimple, tiny_xlnet())
    _both(ours, theirs, IDS, start_positions=torch.tensor([2, 30]), end_positions=torch.tensor([4, 5]), **COMMON)


def test_question_answering_training_and_beam():
    ours, theirs = xlnet_twin(XLNetForQuestionAnswering, hf_xlnet.XLNetForQuestionAnswering,
                              tiny_xlnet(start_n_top=3, end_n_top=2))
    p_mask = torch.zeros(2, 6); p_mask[:, -1] = 1
    _both(ours, theirs, IDS, start_positions=torch.tensor([2, 1]), end_positions=torch.tensor([4, 1]),
          cls_index=torch.tensor([5, 5]), is_impossible=torch.tensor([0.0, 1.0]), p_mask=p_mask, **COMMON)
    _both(ours, theirs, IDS, p_mask=p_mask, **COMMON)
    out = ours(IDS, p_mask=p_mask)
    assert out.start_top_index.shape == (2, 3) and out.end_top_index.shape == (2, 6)
    assert 5 not in out.start_top_index.tolist()[0]


@pytest.mark.parametrize("safe", [True, False])
def test_tied_lm_head_checkpoints_exchange(tmp_path, safe):
    ours, theirs = xlnet_twin(XLNetLMHeadModel, hf_xlnet.XLNetLMHeadModel, tiny_xlnet())
    quiet(theirs.save_pretrained, tmp_path / "hf", safe_serialization=safe)
    loaded = XLNetLMHeadModel.from_pretrained(tmp_path / "hf")
    assert loaded.lm_loss.weight is loaded.transformer.word_embedding.weight
    ours.save_pretrained(tmp_path / "ours", safe_serialization=safe)
    back = quiet(hf_xlnet.XLNetLMHeadModel.from_pretrained, tmp_path / "ours").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(IDS).logits, theirs(IDS).logits, **TOL)
        torch.testing.assert_close(back(IDS).logits, ours(IDS).logits, **TOL)


def test_attention_pooling_is_not_in_transformers_and_ignores_padding():
    with pytest.raises(NotImplementedError):
        quiet(hf_xlnet.XLNetForSequenceClassification, quiet(__import__("transformers").XLNetConfig, summary_type="attn",
                                                             d_model=16, n_head=2, n_layer=1, d_inner=8, vocab_size=40))
    model = XLNetForSequenceClassification(tiny_xlnet(summary_type="attn")).eval()
    pooled = model.sequence_summary
    h = torch.randn(1, 5, 16)
    pad = torch.tensor([[True, True, False, False, False]])
    with torch.no_grad():
        a = pooled(h, pad=pad)
        h2 = h.clone(); h2[0, :2] = torch.randn(2, 16)
        torch.testing.assert_close(a, pooled(h2, pad=pad), rtol=0, atol=0)
        assert model(IDS, attention_mask=MASK).logits.shape == (2, 2)


def test_label_errors():
    model = XLNetForTokenClassification(tiny_xlnet()).eval()
    with pytest.raises(ValueError, match="labels must have shape"):
        model(IDS, labels=torch.zeros(2, 5, dtype=torch.long))
    qa = XLNetForQuestionAnswering(tiny_xlnet()).eval()
    with pytest.raises(ValueError, match="start_positions"):
        qa(IDS, start_positions=torch.tensor([9, 0]), end_positions=torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="p_mask must have shape"):
        qa(IDS, p_mask=torch.zeros(2, 5))

"""Every XLNet head against transformers 4.35 (float32, tolerance 1e-5), the tied LM head's checkpoint
exchange, attention pooling (no reference: HF raises NotImplementedError), and label errors."""
import pytest
import torch

from _hf import TOL, quiet, randomize
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


# ------------------------------------------------------------------ signatures, random configs, errors

import inspect  # noqa: E402

import torch.nn.functional as F  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import xlref  # noqa: E402
from _hf import transformers  # noqa: E402

PUBLIC_MODELS = ["XLNetModel", "XLNetLMHeadModel", "XLNetForSequenceClassification", "XLNetForMultipleChoice",
                 "XLNetForTokenClassification", "XLNetForQuestionAnsweringSimple", "XLNetForQuestionAnswering",
                 "TransfoXLModel", "TransfoXLLMHeadModel", "TransfoXLForSequenceClassification"]


@pytest.mark.parametrize("name", PUBLIC_MODELS)
def test_forward_signatures_are_transformers_own(name):
    "Same parameter names in the same order: a positional call means the same thing in both libraries."
    ours = list(inspect.signature(getattr(xlref, name).forward).parameters)
    theirs = list(inspect.signature(getattr(transformers, name).forward).parameters)
    assert ours == theirs


HEADS = {
    "lm": (XLNetLMHeadModel, hf_xlnet.XLNetLMHeadModel),
    "seq": (XLNetForSequenceClassification, hf_xlnet.XLNetForSequenceClassification),
    "mc": (XLNetForMultipleChoice, hf_xlnet.XLNetForMultipleChoice),
    "tok": (XLNetForTokenClassification, hf_xlnet.XLNetForTokenClassification),
    "qa_simple": (XLNetForQuestionAnsweringSimple, hf_xlnet.XLNetForQuestionAnsweringSimple),
    "qa": (XLNetForQuestionAnswering, hf_xlnet.XLNetForQuestionAnswering),
}


def _call(model, kwargs: dict, positional: bool):
    "Call forward with keywords, or with every argument in signature order (as positional as Python allows)."
    if not positional:
        return model(**kwargs)
    names = [n for n in inspect.signature(model.forward).parameters if n != "kwargs"]
    assert set(kwargs) <= set(names)
    return model(*[kwargs.get(n) for n in names])


@settings(max_examples=40)
@given(head=st.sampled_from(sorted(HEADS)), seed=st.integers(0, 2**16), bsz=st.sampled_from([1, 2, 4]),
       qlen=st.integers(3, 6), bi_data=st.booleans(), mem_len=st.sampled_from([None, 0, 4]),
       reuse_len=st.sampled_from([None, 2]), same_length=st.booleans(), clamp_len=st.sampled_from([-1, 2]),
       mask=st.sampled_from([None, "attention_mask", "input_mask"]), segments=st.booleans(),
       summary_type=st.sampled_from(["last", "first", "mean", "cls_index"]), num_labels=st.integers(1, 3),
       training_labels=st.booleans(), positional=st.booleans(), perm=st.booleans())
def test_every_head_matches_transformers_on_random_configs_over_two_segments(
        head, seed, bsz, qlen, bi_data, mem_len, reuse_len, same_length, clamp_len, mask, segments, summary_type,
        num_labels, training_labels, positional, perm):
    """Every output of every head (loss, logits, QA beam, mems, hidden states, both streams' attentions) equals
    4.35's over two segments of memory, with keyword or positional arguments."""
    if head in ("qa_simple",):
        num_labels = 2
    rows = bsz * (3 if head == "mc" else 1)
    config = tiny_xlnet(bi_data=bi_data and rows % 2 == 0, mem_len=mem_len, reuse_len=reuse_len,
                        same_length=same_length, clamp_len=clamp_len, summary_type=summary_type, num_labels=num_labels,
                        start_n_top=min(3, qlen), end_n_top=min(2, qlen))
    ours_cls, hf_cls = HEADS[head]
    ours, theirs = xlnet_twin(ours_cls, hf_cls, config, seed)
    g = torch.Generator().manual_seed(seed)
    shape = (bsz, 3, qlen) if head == "mc" else (bsz, qlen)
    mems_o = mems_t = None
    for _ in range(2):
        ids = torch.randint(1, VOCAB, shape, generator=g)
        kw = dict(input_ids=ids, use_mems=True, output_attentions=True, output_hidden_states=True)
        if mask:
            keep = torch.ones(shape)
            keep[0, ..., : torch.randint(0, qlen, (1,), generator=g).item()] = 0          # left padding in row 0
            kw[mask] = keep if mask == "attention_mask" else 1 - keep
        if segments:
            kw["token_type_ids"] = torch.randint(0, 3, shape, generator=g)
        if perm and head != "mc":                                                     # 4.35 does not flatten it
            kw["perm_mask"] = (torch.rand(bsz, qlen, qlen, generator=g) < 0.4).float()
        if head == "lm":
            n_pred = int(torch.randint(1, 3, (1,), generator=g))
            kw["target_mapping"] = F.one_hot(torch.randint(0, qlen, (bsz, n_pred), generator=g), qlen).float()
            if training_labels:
                labels = torch.randint(0, VOCAB, (bsz, n_pred), generator=g)
                labels[0, 0] = -100
                kw["labels"] = labels
        elif training_labels and head in ("seq", "mc"):
            if head == "mc" or (num_labels > 1 and seed % 2):
                kw["labels"] = torch.randint(0, 3 if head == "mc" else num_labels, (bsz,), generator=g)
            elif num_labels == 1:
                kw["labels"] = torch.randn(bsz, generator=g)
            else:
                kw["labels"] = (torch.rand(bsz, num_labels, generator=g) < 0.5).float()
        elif training_labels and head == "tok":
            labels = torch.randint(0, num_labels, (bsz, qlen), generator=g)
            labels[0, 0] = -100
            kw["labels"] = labels
        elif training_labels and head == "qa_simple":
            kw["start_positions"] = torch.randint(0, qlen + 2, (bsz,), generator=g)   # past the end: ignored
            kw["end_positions"] = torch.randint(0, qlen, (bsz,), generator=g)
        elif head == "qa":
            kw["p_mask"] = (torch.rand(bsz, qlen, generator=g) < 0.3).float()
            kw["p_mask"][:, -1] = 0                                                    # leave a position open
            if training_labels:
                kw.update(start_positions=torch.randint(0, qlen, (bsz,), generator=g),
                          end_positions=torch.randint(0, qlen, (bsz,), generator=g),
                          cls_index=torch.full((bsz,), qlen - 1), is_impossible=torch.randint(0, 2, (bsz,), generator=g).float())
        with torch.no_grad():
            o = _call(ours, {**kw, "mems": mems_o}, positional)
            t = _call(theirs, {**kw, "mems": mems_t}, positional)
        if t.loss is not None and torch.isnan(t.loss):
            # a cross-entropy with no counted label: NaN in 4.35, 0 in xlref (the other terms stay)
            assert torch.isfinite(o.loss)
            t.loss = o.loss
        assert_same(o.to_tuple(), t.to_tuple())
        assert list(o.keys()) == list(t.keys())
        mems_o, mems_t = o.mems, t.mems


def test_multiple_choice_flattens_per_choice_masks_and_checks_shapes():
    ours, theirs = xlnet_twin(XLNetForMultipleChoice, hf_xlnet.XLNetForMultipleChoice, tiny_xlnet())
    ids = torch.randint(1, VOCAB, (2, 3, 5))
    perm = (torch.rand(2, 3, 5, 5) < 0.4).float()
    tm = F.one_hot(torch.randint(0, 5, (2, 3, 2)), 5).float()
    with torch.no_grad():
        o = ours(ids, perm_mask=perm, target_mapping=tm)
        t = quiet(theirs, ids, perm_mask=perm.reshape(6, 5, 5), target_mapping=tm.reshape(6, 2, 5))  # 4.35: flatten yourself
    assert_same(o.logits, t.logits)
    with pytest.raises(ValueError, match="attention_mask must start with"):
        ours(ids, attention_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="multiple choice needs"):
        ours(ids[:, 0])
    with pytest.raises(ValueError, match="labels must have shape"):
        ours(ids, labels=torch.tensor([0, 1, 2]))


def test_question_answering_input_errors():
    qa = XLNetForQuestionAnswering(tiny_xlnet(start_n_top=5, end_n_top=2)).eval()
    with pytest.raises(ValueError, match="start_n_top"):
        qa(IDS[:, :4])
    with pytest.raises(ValueError, match="cls_index must be"):
        qa(IDS, cls_index=torch.tensor([6, 0]))
    with pytest.raises(ValueError, match="is_impossible must have shape"):
        qa(IDS, start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([2, 3]), cls_index=torch.tensor([5, 5]),
           is_impossible=torch.zeros(3))
    with pytest.raises(ValueError, match="integer positions"):
        qa(IDS, start_positions=torch.tensor([1.0, 2.0]), end_positions=torch.tensor([2, 3]))
    simple = XLNetForQuestionAnsweringSimple(tiny_xlnet()).eval()
    with pytest.raises(ValueError, match="start_positions must have shape"):
        simple(IDS, start_positions=torch.tensor([1, 2, 3]), end_positions=torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="unexpected arguments"):
        simple(IDS, attention_msk=MASK)                                                # a typo is refused


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_qa_masks_stay_finite_in_half_precision(dtype):
    "A fully masked row must not overflow to -inf (NaN after softmax): -65500 in float16, -1e30 in bfloat16."
    from xlref.heads import _mask_logits
    x = torch.randn(2, 4).to(dtype)
    p_mask = torch.tensor([[1, 1, 1, 1], [0, 1, 0, 1]]).to(dtype)
    masked = _mask_logits(x, p_mask)
    assert masked.dtype == dtype and torch.isfinite(masked).all()
    assert torch.isfinite(torch.softmax(masked.float(), -1)).all()
    assert (masked[1, [1, 3]] < -6e4).all()


@pytest.mark.parametrize("head", ["lm", "mc", "tok", "qa_simple", "seq"])
def test_no_counted_label_gives_zero_loss_where_transformers_gives_nan(head):
    "PyTorch's mean over no element is NaN, so 4.35 returns a NaN loss; xlref returns 0 with zero gradients."
    ours, theirs = xlnet_twin(*HEADS[head], tiny_xlnet(num_labels=2))
    ids = IDS[:, None].repeat(1, 3, 1) if head == "mc" else IDS
    labels = {"lm": dict(labels=torch.full((2, 6), -100)), "mc": dict(labels=torch.full((2,), -100)),
              "tok": dict(labels=torch.full((2, 6), -100)), "seq": dict(labels=torch.full((2,), -100)),
              "qa_simple": dict(start_positions=torch.tensor([6, 9]), end_positions=torch.tensor([7, 6]))}[head]
    assert torch.isnan(quiet(theirs, ids, **labels).loss)
    loss = ours(ids, **labels).loss
    loss.backward()
    assert loss.item() == 0.0
    assert all(torch.all(p.grad == 0) for p in ours.parameters() if p.grad is not None)


@pytest.mark.parametrize("head", ["lm", "mc", "tok"])
def test_labels_out_of_range_are_refused(head):
    model = HEADS[head][0](tiny_xlnet(num_labels=2)).eval()
    ids = IDS[:, None].repeat(1, 3, 1) if head == "mc" else IDS
    labels = {"lm": torch.full((2, 6), VOCAB), "mc": torch.tensor([0, 3]), "tok": torch.full((2, 6), 2)}[head]
    with pytest.raises(ValueError, match=r"labels must lie in \[0, "):
        model(ids, labels=labels)


@pytest.mark.parametrize("safe", [True, False])
@pytest.mark.parametrize("head", ["seq", "mc", "tok", "qa_simple", "qa"])
def test_every_head_checkpoint_exchanges_with_transformers(tmp_path, head, safe):
    "4.35 saves, xlref loads (and back), in safetensors and .bin; outputs equal, no key missing or unexpected."
    ours, theirs = xlnet_twin(*HEADS[head], tiny_xlnet(num_labels=2, summary_type="mean", start_n_top=2, end_n_top=2))
    quiet(theirs.save_pretrained, tmp_path / "hf", safe_serialization=safe)
    loaded = HEADS[head][0].from_pretrained(tmp_path / "hf").eval()
    assert sorted(loaded.state_dict()) == sorted(theirs.state_dict())
    loaded.save_pretrained(tmp_path / "ours", safe_serialization=safe)
    back, info = quiet(HEADS[head][1].from_pretrained, tmp_path / "ours", output_loading_info=True)
    assert not any(info.values()), info
    ids = IDS[:, None].repeat(1, 3, 1) if head == "mc" else IDS
    with torch.no_grad():
        assert_same(loaded(ids).to_tuple(), theirs(ids).to_tuple())
        assert_same(back.eval()(ids).to_tuple(), theirs(ids).to_tuple())


def test_qa_top_log_probs_hold_probabilities_as_in_transformers():
    "4.35 names the beam's scores *_top_log_probs but fills them with softmax probabilities; xlref keeps both for parity."
    ours, theirs = xlnet_twin(XLNetForQuestionAnswering, hf_xlnet.XLNetForQuestionAnswering,
                              tiny_xlnet(start_n_top=3, end_n_top=2))
    with torch.no_grad():
        o, t = ours(IDS), theirs(IDS)
        start_logits = ours.start_logits(ours.transformer(IDS).last_hidden_state)
    expected = torch.softmax(start_logits, -1).topk(3, dim=-1).values
    torch.testing.assert_close(t.start_top_log_probs, expected, **TOL)        # probabilities, in 4.35 ...
    torch.testing.assert_close(o.start_top_log_probs, expected, **TOL)        # ... and in xlref
    assert (o.end_top_log_probs > 0).all() and (o.end_top_log_probs <= 1).all()


@settings(max_examples=15)
@given(seed=st.integers(0, 9999), start_n_top=st.integers(1, 4), end_n_top=st.integers(1, 4), bsz=st.integers(1, 3))
def test_qa_beam_spans_pairs_each_start_with_its_own_ends(seed, start_n_top, end_n_top, bsz):
    "4.35 flattens the beam end-rank major; qa_beam_spans regroups it so [b, i, j] = (i-th start, its j-th end)."
    from xlref.heads import qa_beam_spans
    model = XLNetForQuestionAnswering(tiny_xlnet(start_n_top=start_n_top, end_n_top=end_n_top)).eval()
    randomize(model, seed, std=0.3)
    ids = torch.randint(1, VOCAB, (bsz, 6), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = model(ids)
        hidden = model.transformer(ids).last_hidden_state
        starts, ends, prob = qa_beam_spans(out, start_n_top, end_n_top)
        assert starts.shape == ends.shape == prob.shape == (bsz, start_n_top, end_n_top)
        for i in range(start_n_top):
            end_probs = torch.softmax(model.end_logits(hidden, start_positions=out.start_top_index[:, i]), -1)
            top = end_probs.topk(end_n_top, dim=-1)
            assert torch.equal(ends[:, i], top.indices) and torch.equal(starts[:, i, 0], out.start_top_index[:, i])
            torch.testing.assert_close(prob[:, i], out.start_top_log_probs[:, i, None] * top.values, **TOL)


def test_transformers_squad_metrics_reads_the_beam_start_major_but_the_model_writes_it_end_major():
    "4.35's compute_predictions_log_probs pairs start i with end_top_index[i * end_n_top + j]: the original's layout."
    import inspect as _inspect

    from transformers.data.metrics import squad_metrics
    from xlref.heads import qa_beam_spans
    assert "j_index = i * end_n_top + j" in _inspect.getsource(squad_metrics.compute_predictions_log_probs)
    ours, theirs = xlnet_twin(XLNetForQuestionAnswering, hf_xlnet.XLNetForQuestionAnswering,
                              tiny_xlnet(start_n_top=3, end_n_top=2))
    with torch.no_grad():
        t = theirs(IDS)
    _, ends, _ = qa_beam_spans(t, 3, 2)                                    # the model's true pairing
    read = t.end_top_index[:, [i * 2 + j for i in range(3) for j in range(2)]].view(2, 3, 2)
    assert not torch.equal(read, ends)
    with pytest.raises(ValueError, match="a beam of start_n_top=2, end_n_top=2 needs"):
        qa_beam_spans(t, 2, 2)                                               # not the model's beam size
    with pytest.raises(ValueError, match="no beam"):
        qa_beam_spans(quiet(theirs, IDS, start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([2, 3])), 3, 2)


def test_simple_qa_refuses_negative_positions_that_transformers_clamps_to_zero():
    ours, theirs = xlnet_twin(XLNetForQuestionAnsweringSimple, hf_xlnet.XLNetForQuestionAnsweringSimple, tiny_xlnet())
    neg = dict(start_positions=torch.tensor([-1, 2]), end_positions=torch.tensor([3, 4]))
    zero = dict(start_positions=torch.tensor([0, 2]), end_positions=torch.tensor([3, 4]))
    with torch.no_grad():
        torch.testing.assert_close(theirs(IDS, **neg).loss, theirs(IDS, **zero).loss)   # -1 trained as position 0
    with pytest.raises(ValueError, match="start_positions must be integer positions >= 0"):
        ours(IDS, **neg)

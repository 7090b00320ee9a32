"""xlref.transfo_xl (notebooks 07, 08): parity with transformers 4.35 over random tiny configurations
and every flag, the invariants of segment recurrence, the absolute-position ablation against its
definition, every error path, and the defects of 4.35 pinned."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from _hf import TOL, hf_transfo_xl_config, quiet, randomize, tiny_transfo_xl, transformers, twin
from xlref.positions import PositionalEmbedding, transfo_xl_pos_seq
from xlref.transfo_xl import (
    TransfoXLConfig,
    TransfoXLForSequenceClassification,
    TransfoXLLMHeadModel,
    TransfoXLModel,
)

# ---------------------------------------------------------------- random configurations

adaptive = st.sampled_from([
    dict(cutoffs=[], div_val=1, d_embed=16),                       # adaptive off: one softmax
    dict(cutoffs=[20, 40], div_val=1, d_embed=16),                  # clusters, no projections
    dict(cutoffs=[20, 40], div_val=1, d_embed=12),                  # d_embed != d_model: projections
    dict(cutoffs=[20, 40], div_val=2, d_embed=16),
    dict(cutoffs=[10, 25, 45], div_val=2, d_embed=32),
    dict(cutoffs=[20, 40], div_val=4, d_embed=32),
    dict(cutoffs=[30], div_val=2, d_embed=8),
])
configs = st.builds(
    lambda a, **kw: tiny_transfo_xl(**a, **kw),
    adaptive,
    pre_lnorm=st.booleans(),
    untie_r=st.booleans(),
    same_length=st.booleans(),
    clamp_len=st.sampled_from([-1, 0, 2, 4]),
    mem_len=st.sampled_from([1, 3, 6]),
    proj_share_all_but_first=st.booleans(),
    n_layer=st.integers(1, 2),
)


def compare_outputs(a, b, fields):
    for field in fields:
        x, y = getattr(a, field), getattr(b, field)
        if isinstance(x, (list, tuple)):
            assert len(x) == len(y), field
            for u, v in zip(x, y):
                torch.testing.assert_close(u, v, **TOL)
        else:
            torch.testing.assert_close(x, y, **TOL)


@settings(max_examples=25)
@given(config=configs, seed=st.integers(0, 100), start_empty=st.booleans(), qlens=st.sampled_from([(3, 3, 3), (4, 2, 5), (1, 6, 2)]))
def test_lm_head_matches_hf_over_three_segments(config, seed, start_empty, qlens):
    ours, theirs = twin(TransfoXLLMHeadModel, transformers.TransfoXLLMHeadModel, config, seed)
    theirs.crit.keep_order = True                  # 4.35's default order is by cluster (pinned below)
    bsz = 2
    mems_a = mems_b = [torch.empty(0, bsz, config.d_model)] * config.n_layer if start_empty else None
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for qlen in qlens:
            ids = torch.randint(0, config.vocab_size, (bsz, qlen), generator=g)
            a = ours(ids, mems=mems_a, output_hidden_states=True, output_attentions=True)
            b = theirs(ids, mems=mems_b, output_hidden_states=True, output_attentions=True)
            compare_outputs(a, b, ["prediction_scores", "hidden_states", "attentions"])
            if qlen > 1:
                labels = ids.clone()
                labels[1, -1] = -100   # row 1: 4.35 rewrites row 0's labels when they are all -100 (pinned below)
                la, lb = ours(ids, mems=mems_a, labels=labels), theirs(ids, mems=mems_b, labels=labels.clone())
                compare_outputs(la, lb, ["losses", "loss"])
            compare_outputs(a, b, ["mems"])
            mlen = config.mem_len if mems_a is None else mems_a[0].shape[0]   # None: 4.35's zero memory
            assert all(m.shape == (min(config.mem_len, mlen + qlen), bsz, config.d_model) for m in a.mems)
            mems_a, mems_b = a.mems, b.mems


@settings(max_examples=10)
@given(config=configs, seed=st.integers(0, 100))
def test_base_model_matches_hf_with_inputs_embeds_and_head_mask(config, seed):
    ours, theirs = twin(TransfoXLModel, transformers.TransfoXLModel, config, seed)
    g = torch.Generator().manual_seed(seed)
    embeds = torch.randn(2, 4, config.d_model, generator=g)
    head_mask = torch.rand(config.n_layer, config.n_head, generator=g)
    with torch.no_grad():
        a = ours(inputs_embeds=embeds, head_mask=head_mask, output_attentions=True)
        b = theirs(inputs_embeds=embeds, head_mask=head_mask, output_attentions=True)
    compare_outputs(a, b, ["last_hidden_state", "mems", "attentions"])
    with torch.no_grad():  # a 1-D head mask applies to every layer
        a1 = ours(inputs_embeds=embeds, head_mask=head_mask[0])
        b1 = theirs(inputs_embeds=embeds, head_mask=head_mask[0])
    torch.testing.assert_close(a1.last_hidden_state, b1.last_hidden_state, **TOL)


def test_inputs_embeds_equal_input_ids_path():
    model = TransfoXLModel(tiny_transfo_xl(div_val=2)).eval()
    ids = torch.randint(0, 60, (2, 5))
    with torch.no_grad():
        via_ids = model(ids).last_hidden_state
        via_embeds = model(inputs_embeds=model.word_emb(ids)).last_hidden_state
    torch.testing.assert_close(via_ids, via_embeds, rtol=0, atol=0)


@pytest.mark.parametrize("problem", ["single", "multi", "regression"])
@pytest.mark.parametrize("padding", ["right", "left"])
def test_sequence_classification_matches_hf(problem, padding):
    num_labels = 1 if problem == "regression" else 3
    config = tiny_transfo_xl(num_labels=num_labels)
    ours, theirs = twin(TransfoXLForSequenceClassification, transformers.TransfoXLForSequenceClassification, config)
    ids = torch.randint(1, 60, (3, 6))
    if padding == "right":
        ids[0, 4:] = 0
    else:
        ids[0, :2] = 0
    labels = {"single": torch.tensor([0, 2, 1]), "multi": torch.tensor([[1.0, 0, 1], [0, 0, 0], [0, 1, 1]]),
              "regression": torch.tensor([0.5, -1.0, 2.0])}[problem]
    with torch.no_grad():
        a, b = ours(ids, labels=labels), theirs(ids, labels=labels)
    compare_outputs(a, b, ["logits", "loss", "mems"])


def test_segment_by_segment_equals_one_pass():
    config = tiny_transfo_xl(mem_len=16, n_layer=3, cutoffs=[], div_val=1)
    model = TransfoXLModel(config).eval()
    randomize(model)
    ids = torch.randint(0, 60, (2, 13))
    empty = [torch.empty(0, 2, 16)] * 3
    with torch.no_grad():
        whole = model(ids, mems=empty).last_hidden_state
        for splits in ([5, 3, 5], [1] * 13, [12, 1]):
            mems, parts = empty, []
            for chunk in ids.split(splits, dim=1):
                out = model(chunk, mems=mems)
                parts.append(out.last_hidden_state)
                mems = out.mems
            torch.testing.assert_close(torch.cat(parts, 1), whole, **TOL)


@given(mlen=st.integers(0, 6), qlen=st.integers(1, 6), mem_len=st.integers(0, 8))
def test_mems_are_detached_and_of_the_right_length(mlen, qlen, mem_len):
    model = TransfoXLModel(tiny_transfo_xl(mem_len=mem_len, cutoffs=[], div_val=1))
    mems = [torch.randn(mlen, 2, 16) for _ in range(2)]
    out = model(torch.randint(0, 60, (2, qlen)), mems=mems)
    assert all(m.shape == (min(mem_len, mlen + qlen), 2, 16) and not m.requires_grad for m in out.mems)
    out.last_hidden_state.sum().backward()  # gradients flow through the segment, not into the memory
    assert all(m.grad is None for m in mems)


def test_mem_len_zero_returns_no_memory():
    model = TransfoXLModel(tiny_transfo_xl(mem_len=0)).eval()
    assert model(torch.randint(0, 60, (1, 3))).mems is None


def test_return_dict_false_gives_the_tuple():
    model = TransfoXLLMHeadModel(tiny_transfo_xl()).eval()
    ids = torch.randint(0, 60, (1, 4))
    with torch.no_grad():
        as_tuple = model(ids, return_dict=False)
        as_output = model(ids)
    assert len(as_tuple) == len(as_output.to_tuple()) == 2
    torch.testing.assert_close(as_tuple[0], as_output.prediction_scores, rtol=0, atol=0)
    assert as_output.logits is as_output.prediction_scores


def test_training_mode_dropout_is_active_and_eval_is_deterministic():
    model = TransfoXLModel(tiny_transfo_xl(dropout=0.5))
    ids = torch.randint(0, 60, (2, 4))
    assert not torch.equal(model(ids).last_hidden_state, model(ids).last_hidden_state)
    model.eval()
    assert torch.equal(model(ids).last_hidden_state, model(ids).last_hidden_state)


# ---------------------------------------------------------------- attn_type = 2 (absolute positions)

def reference_absolute_forward(model: TransfoXLModel, ids, mems):
    "The original code's attn_type=2 forward (post-LN), written out from its definition, with the memory copied."
    c = model.config
    qlen = ids.shape[1]
    mlen = mems[0].shape[0]
    klen = mlen + qlen
    pos = PositionalEmbedding(c.d_model)(transfo_xl_pos_seq(klen, clamp_len=c.clamp_len))  # (klen, 1, d)
    h = model.word_emb(ids.T) + pos[-qlen:]
    blocked = torch.triu(torch.ones(qlen, klen, dtype=torch.bool), diagonal=1 + mlen)
    for i, layer in enumerate(model.layers):
        attn = layer.dec_attn
        m = mems[i] + pos[:mlen] if i == 0 else mems[i]
        cat = torch.cat([m, h])
        q = (h @ attn.q_net.weight.T).view(qlen, -1, c.n_head, c.d_head)
        k, v = (cat @ attn.kv_net.weight.T).chunk(2, dim=-1)
        k, v = k.view(klen, -1, c.n_head, c.d_head), v.view(klen, -1, c.n_head, c.d_head)
        score = torch.einsum("ibnd,jbnd->ijbn", q, k) / c.d_head**0.5
        prob = score.masked_fill(blocked[:, :, None, None], float("-inf")).softmax(dim=1)
        vec = torch.einsum("ijbn,jbnd->ibnd", prob, v).reshape(qlen, -1, c.n_head * c.d_head)
        h = attn.layer_norm(h + vec @ attn.o_net.weight.T)
        ff = layer.pos_ff
        h = ff.layer_norm(h + ff.CoreNet(h))
    return h.transpose(0, 1)


def test_absolute_attention_matches_its_definition_and_leaves_mems_alone():
    config = tiny_transfo_xl(attn_type=2, clamp_len=4, cutoffs=[], div_val=1)
    model = TransfoXLModel(config).eval()
    randomize(model)
    mems = [torch.randn(3, 2, 16) for _ in range(2)]
    before = [m.clone() for m in mems]
    ids = torch.randint(0, 60, (2, 4))
    with torch.no_grad():
        out = model(ids, mems=mems, output_attentions=True)
        expected = reference_absolute_forward(model, ids, mems)
    torch.testing.assert_close(out.last_hidden_state, expected, **TOL)
    assert all(torch.equal(m, b) for m, b in zip(mems, before))        # the original adds positions in place
    assert torch.all(out.attentions[0][..., :, 3 + 1 :].triu(1) == 0)  # causal


def test_absolute_attention_pre_lnorm_runs_and_differs_from_post():
    ids = torch.randint(0, 60, (1, 3))
    outs = []
    for pre in (False, True):
        torch.manual_seed(0)
        outs.append(TransfoXLModel(tiny_transfo_xl(attn_type=2, pre_lnorm=pre)).eval()(ids).last_hidden_state)
    assert not torch.allclose(*outs)


@pytest.mark.parametrize("attn_type", [1, 3])
def test_other_attention_types_are_not_implemented(attn_type):
    with pytest.raises(NotImplementedError, match="attn_type"):
        TransfoXLModel(tiny_transfo_xl(attn_type=attn_type))


def test_sample_softmax_is_not_implemented():
    with pytest.raises(NotImplementedError, match="sample_softmax"):
        TransfoXLLMHeadModel(tiny_transfo_xl(sample_softmax=8))


# ---------------------------------------------------------------- defects of transformers 4.35, pinned

def test_hf_zero_memory_default_versus_empty_memory():
    "mems=None: 4.35 (and xlref's default) attends to mem_len zero vectors; empty memories give the original's result."
    model = TransfoXLModel(tiny_transfo_xl(mem_len=4)).eval()
    randomize(model)
    ids = torch.randint(0, 60, (1, 3))
    with torch.no_grad():
        zero = model(ids, output_attentions=True)
        empty = model(ids, mems=[torch.empty(0, 1, 16)] * 2, output_attentions=True)
    assert zero.attentions[0].shape[-1] == 4 + 3 and empty.attentions[0].shape[-1] == 3
    assert not torch.allclose(zero.last_hidden_state, empty.last_hidden_state)


def test_hf_writes_into_labels_when_all_are_ignored():
    config = tiny_transfo_xl()
    ours, theirs = twin(TransfoXLLMHeadModel, transformers.TransfoXLLMHeadModel, config)
    labels = torch.full((1, 4), -100)
    theirs(torch.randint(0, 60, (1, 4)), labels=labels)
    assert labels[0, 1].item() == config.eos_token_id       # 4.35 changed the caller's tensor
    labels = torch.full((1, 4), -100)
    out = ours(torch.randint(0, 60, (1, 4)), labels=labels)
    assert torch.all(labels == -100) and out.loss.item() == 0.0 and torch.all(out.losses == 0)


def test_classifier_with_every_label_ignored_gives_zero_where_transformers_gives_nan():
    config = tiny_transfo_xl(num_labels=2)
    ours, theirs = twin(TransfoXLForSequenceClassification, transformers.TransfoXLForSequenceClassification, config)
    ids, labels = torch.randint(1, 60, (2, 4)), torch.full((2,), -100)
    assert torch.isnan(theirs(ids, labels=labels).loss)
    loss = ours(ids, labels=labels).loss
    loss.backward()
    assert loss.item() == 0.0 and all(torch.all(p.grad == 0) for p in ours.parameters() if p.grad is not None)


def test_hf_classifier_crashes_when_d_embed_differs_from_d_model():
    config = tiny_transfo_xl(d_embed=12, num_labels=2)
    theirs = quiet(transformers.TransfoXLForSequenceClassification, hf_transfo_xl_config(config)).eval()
    with pytest.raises(RuntimeError):
        theirs(torch.randint(1, 60, (2, 4)))
    ours = TransfoXLForSequenceClassification(config).eval()
    assert ours(torch.randint(1, 60, (2, 4))).logits.shape == (2, 2)


def test_hf_last_token_is_before_the_first_pad_even_inside_the_text():
    config = tiny_transfo_xl(num_labels=2)
    ours, theirs = twin(TransfoXLForSequenceClassification, transformers.TransfoXLForSequenceClassification, config)
    ids = torch.tensor([[5, 0, 7, 8, 9], [5, 6, 7, 0, 0]])   # row 0 has a pad id inside its text
    with torch.no_grad():
        a, b = ours(ids), theirs(ids)
        hidden = ours.transformer(ids).last_hidden_state
    torch.testing.assert_close(a.logits[0], ours.score(hidden[0, 4]))   # ours: last non-pad position
    torch.testing.assert_close(b.logits[0], ours.score(hidden[0, 0]), **TOL)  # 4.35: before the first pad
    torch.testing.assert_close(a.logits[1], b.logits[1], **TOL)


# ---------------------------------------------------------------- errors

@pytest.fixture(scope="module")
def lm():
    return TransfoXLLMHeadModel(tiny_transfo_xl()).eval()


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(input_ids=torch.tensor([[1, 2, 60]])), ValueError, r"\[0, 59\]"),
    (dict(input_ids=torch.tensor([[1, -2, 3]])), ValueError, r"\[0, 59\]"),
    (dict(input_ids=torch.tensor([[1.0, 2.0]])), TypeError, "integer"),
    (dict(input_ids=torch.tensor([1, 2, 3])), ValueError, "batch, length"),
    (dict(input_ids=torch.zeros(2, 0, dtype=torch.long)), ValueError, "empty"),
    (dict(input_ids=torch.ones(1, 2, dtype=torch.long), inputs_embeds=torch.zeros(1, 2, 16)), ValueError, "not both"),
    (dict(), ValueError, "got neither"),
    (dict(inputs_embeds=torch.zeros(1, 2, 15)), ValueError, "d_model=16"),
    (dict(input_ids=torch.ones(2, 3, dtype=torch.long), mems=[torch.zeros(4, 2, 16)]), ValueError, "one tensor per layer"),
    (dict(input_ids=torch.ones(2, 3, dtype=torch.long), mems=[torch.zeros(4, 3, 16)] * 2), ValueError, "batch=2"),
    (dict(input_ids=torch.ones(2, 3, dtype=torch.long), mems=[torch.zeros(4, 2, 8)] * 2), ValueError, "d_model=16"),
    (dict(input_ids=torch.ones(2, 3, dtype=torch.long), mems=[torch.zeros(4, 2, 16), torch.zeros(3, 2, 16)]), ValueError, "same length"),
    (dict(input_ids=torch.ones(2, 3, dtype=torch.long), mems=torch.zeros(2, 4, 2, 16)), TypeError, "list of tensors"),
    (dict(input_ids=torch.ones(2, 3, dtype=torch.long), head_mask=torch.ones(3)), ValueError, "head_mask"),
    (dict(input_ids=torch.ones(2, 3, dtype=torch.long), labels=torch.ones(2, 4, dtype=torch.long)), ValueError, r"labels must have shape \(2, 3\)"),
    (dict(input_ids=torch.ones(2, 3, dtype=torch.long), labels=torch.full((2, 3), 60)), ValueError, "or be -100"),
])
def test_bad_inputs_get_clear_errors(lm, kwargs, err, match):
    with pytest.raises(err, match=match):
        lm(**kwargs)


@pytest.mark.parametrize("overrides, match", [
    (dict(cutoffs=[40, 20]), "cutoffs"), (dict(cutoffs=[20, 60]), "cutoffs"), (dict(cutoffs=[0, 20]), "cutoffs"),
    (dict(n_head=0), "n_head"), (dict(d_model=-1), "d_model"), (dict(mem_len=-1), "mem_len"),
    (dict(dropout=1.0), "dropout"), (dict(dropatt=-0.1), "dropatt"), (dict(attn_type=5), "attn_type"),
    (dict(init="xavier"), "init"), (dict(div_val=0), "div_val"), (dict(tie_projs=[True]), "tie_projs"),
    (dict(same_length=True, mem_len=0), "same_length"), (dict(layer_norm_epsilon=0.0), "layer_norm_epsilon"),
    (dict(pre_lnorm="yes"), "pre_lnorm"), (dict(vocab_size=10.5), "vocab_size"), (dict(num_labels=0), "num_labels"),
    (dict(d_embed=4, div_val=4, cutoffs=[10, 20]), "div_val"), (dict(problem_type="ranking"), "problem_type"),
])
def test_invalid_config_values_are_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_transfo_xl(**overrides)


def test_classifier_errors():
    clf = TransfoXLForSequenceClassification(tiny_transfo_xl(pad_token_id=None)).eval()
    with pytest.raises(ValueError, match="pad_token_id"):
        clf(torch.randint(1, 60, (2, 3)))
    assert clf(torch.randint(1, 60, (1, 3))).logits.shape == (1, 2)
    clf = TransfoXLForSequenceClassification(tiny_transfo_xl(pad_token_id=0)).eval()
    with pytest.raises(ValueError, match="only of pad tokens"):
        clf(torch.tensor([[0, 0, 0], [1, 2, 3]]))
    with pytest.raises(TypeError, match="integer labels"):
        TransfoXLForSequenceClassification(tiny_transfo_xl(problem_type="single_label_classification"))(
            torch.randint(1, 60, (2, 3)), labels=torch.tensor([0.0, 1.0]))
    with pytest.warns(UserWarning, match="inputs_embeds"):
        clf(inputs_embeds=torch.randn(2, 3, 16))


def test_reset_memory_length():
    model = TransfoXLLMHeadModel(tiny_transfo_xl(mem_len=2)).eval()
    model.reset_memory_length(7)
    assert model.transformer.mem_len == 7 and model.init_mems(3)[0].shape == (7, 3, 16)
    with pytest.raises(ValueError, match="mem_len"):
        model.reset_memory_length(-1)


@pytest.mark.parametrize("div_val", [1, 2])
def test_mem_len_zero_matches_hf(div_val):
    config = tiny_transfo_xl(mem_len=0, div_val=div_val)
    ours, theirs = twin(TransfoXLLMHeadModel, transformers.TransfoXLLMHeadModel, config)
    theirs.crit.keep_order = True
    ids = torch.randint(0, 60, (2, 5))
    with torch.no_grad():
        a, b = ours(ids, labels=ids, output_attentions=True), theirs(ids, labels=ids, output_attentions=True)
    assert a.mems is None and b.mems is None
    compare_outputs(a, b, ["losses", "loss", "attentions"])


def test_classification_label_errors():
    clf = TransfoXLForSequenceClassification(tiny_transfo_xl(num_labels=3)).eval()
    ids = torch.randint(1, 60, (2, 3))
    with pytest.raises(ValueError, match=r"\[0, 2\] or be -100"):
        clf(ids, labels=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"got \[7\]"):
        clf(ids, labels=torch.tensor([-100, 7]))
    assert clf(ids, labels=torch.tensor([-100, 1])).loss.isfinite()
    with pytest.raises(ValueError, match="labels must have shape"):
        clf(ids, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 3\)"):
        clf(ids, labels=torch.ones(2, 2))                 # multi-label needs one float per label


def test_same_length_memory_cannot_be_reset_to_zero():
    model = TransfoXLModel(tiny_transfo_xl(same_length=True, mem_len=3))
    with pytest.raises(ValueError, match="same_length"):
        model.reset_memory_length(0)

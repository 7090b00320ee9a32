"""XLNetModel against transformers 4.35 (random tiny configs over every flag, three segments of memory,
every returned tensor, tolerance 1e-5 in float32), the invariants of two-stream attention, the
`attn_type="uni"` crash of 4.35, checkpoint exchange both ways, and the errors for bad input."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from _hf import TOL, quiet, randomize, transformers
from xlref.xlnet import XLNetConfig, XLNetModel, xlnet_can_attend, xlnet_segment_mismatch

from transformers.models.xlnet import modeling_xlnet as hf_xlnet

VOCAB = 40


def tiny_xlnet(**overrides) -> XLNetConfig:
    base = dict(vocab_size=VOCAB, d_model=16, n_layer=2, n_head=2, d_inner=24, dropout=0.0, mem_len=5,
                summary_last_dropout=0.0, pad_token_id=0)
    return XLNetConfig(**{**base, **overrides})


def hf_xlnet_config(config: XLNetConfig):
    d = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "label2id")}
    return quiet(transformers.XLNetConfig, **d)


def _fixed_create_mask(self, qlen, mlen):
    "4.35's create_mask with the device passed as a keyword (it passes it as a size): the original _create_mask."
    mask = torch.ones(qlen, qlen + mlen, device=self.device)
    if self.same_length:
        mask_lo = mask[:, :qlen].tril(-1)
        mask.triu_(mlen + 1)
        mask[:, :qlen] += mask_lo
    else:
        mask.triu_(mlen + 1)
    return mask


def xlnet_twin(ours_cls, hf_cls, config, seed=0):
    ours = ours_cls(config).eval()
    randomize(ours, seed, std=0.3)
    theirs = quiet(hf_cls, hf_xlnet_config(config)).eval()
    assert list(theirs.state_dict()) == list(ours.state_dict())
    theirs.load_state_dict(ours.state_dict())
    base = theirs.transformer if hasattr(theirs, "transformer") else theirs
    base.create_mask = _fixed_create_mask.__get__(base)  # only matters for attn_type="uni"
    return ours, theirs


def assert_same(a, b, path="out"):
    "Equal structure, every tensor equal within TOL (1e-5)."
    if a is None or b is None:
        assert a is None and b is None, path
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape, (path, getattr(b, "shape", None), a.shape)
        if a.dtype.is_floating_point:
            torch.testing.assert_close(a, b, **TOL, msg=lambda m: f"{path}: {m}")
        else:
            assert torch.equal(a, b), path
    else:
        assert type(a) in (tuple, list) and type(b) in (tuple, list) and len(a) == len(b), (path, type(a), type(b))
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{k}]")


def perm_mask_from_order(order: torch.Tensor) -> torch.Tensor:
    "(len, len) float: 1 where position i may not see position j (j is not before i in the order)."
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    return (rank[None, :] >= rank[:, None]).float()


# ------------------------------------------------------------------ parity

flags = st.fixed_dictionaries(dict(
    attn_type=st.sampled_from(["bi", "bi", "uni"]), bi_data=st.booleans(), clamp_len=st.sampled_from([-1, 2, 4]),
    same_length=st.booleans(), mem_len=st.sampled_from([None, 0, 3, 7]), reuse_len=st.sampled_from([None, 0, 2]),
    ff_activation=st.sampled_from(["gelu", "relu", "gelu_new"]),
))
inputs = st.fixed_dictionaries(dict(
    mask=st.sampled_from([None, "attention_mask", "input_mask"]), perm=st.booleans(), targets=st.sampled_from([0, 1, 3]),
    segments=st.booleans(), embeds=st.booleans(), head_mask=st.sampled_from([None, 1, 2]), train=st.booleans(),
    use_mems=st.sampled_from([None, True]), qlen=st.integers(1, 6), bsz=st.sampled_from([1, 2, 4]),
))


@settings(max_examples=25)
@given(flags=flags, inp=inputs, seed=st.integers(0, 2**16))
def test_xlnet_model_matches_transformers_over_three_segments(flags, inp, seed):
    if flags["bi_data"] and inp["bsz"] % 2:
        inp["bsz"] = 2
    if flags["attn_type"] == "uni" and (inp["mask"] or inp["perm"]):
        flags["bi_data"] = False  # compared row by row below (4.35 fails on the batch), and bi_data pairs rows
    config = tiny_xlnet(**flags)
    ours, theirs = xlnet_twin(XLNetModel, hf_xlnet.XLNetModel, config, seed)
    if inp["train"]:
        ours.train(), theirs.train()  # dropout is 0: only the use_mems_train default changes
    g = torch.Generator().manual_seed(seed)
    bsz, qlen = inp["bsz"], inp["qlen"]
    mems_o = mems_t = None
    for segment in range(3):
        ids = torch.randint(1, VOCAB, (bsz, qlen), generator=g)
        kw = dict(use_mems=inp["use_mems"], output_attentions=True, output_hidden_states=True)
        if inp["mask"]:
            keep = torch.ones(bsz, qlen)
            keep[0, : torch.randint(0, qlen, (1,), generator=g).item()] = 0   # left padding in row 0
            kw[inp["mask"]] = keep if inp["mask"] == "attention_mask" else 1 - keep
        if inp["perm"]:
            kw["perm_mask"] = (torch.rand(bsz, qlen, qlen, generator=g) < 0.4).float()
        if inp["targets"]:
            kw["target_mapping"] = F.one_hot(torch.randint(0, qlen, (bsz, inp["targets"]), generator=g), qlen).float()
        if inp["segments"]:
            kw["token_type_ids"] = torch.randint(0, 3, (bsz, qlen), generator=g)
        if inp["head_mask"] == 1:
            kw["head_mask"] = torch.tensor([1.0, 0.0])
        elif inp["head_mask"] == 2:
            kw["head_mask"] = torch.rand(2, 2, generator=g)
        args_o = dict(inputs_embeds=ours.word_embedding(ids).detach()) if inp["embeds"] else dict(input_ids=ids)
        with torch.no_grad():
            o = ours(**args_o, mems=mems_o, **kw)
            has_data_mask = "perm_mask" in kw or inp["mask"] is not None
            if flags["attn_type"] == "uni" and has_data_mask and bsz > 1:
                # 4.35 adds the data mask in place to a (qlen, klen, 1, 1) causal mask: fails for bsz > 1; go row by row
                rows = []
                for b in range(bsz):
                    kw_b = {k: (v[b:b + 1] if isinstance(v, torch.Tensor) and k != "head_mask" else v) for k, v in kw.items()}
                    args_b = {k: v[b:b + 1] for k, v in args_o.items()}
                    rows.append(theirs(**args_b, mems=None if mems_t is None else [m[:, b:b + 1] for m in mems_t], **kw_b))
                t_last = torch.cat([r.last_hidden_state for r in rows])
                torch.testing.assert_close(o.last_hidden_state, t_last, **TOL)
                t_mems = None if rows[0].mems is None else [torch.cat([r.mems[i] for r in rows], 1) for i in range(2)]
                assert_same(o.mems, t_mems, "mems")
                mems_o, mems_t = o.mems, t_mems
                continue
            t = theirs(**args_o, mems=mems_t, **kw)
        assert_same(o.to_tuple(), t.to_tuple())
        assert list(o.keys()) == list(t.keys())
        mems_o, mems_t = o.mems, t.mems


def test_return_dict_false_gives_transformers_tuple():
    ours, theirs = xlnet_twin(XLNetModel, hf_xlnet.XLNetModel, tiny_xlnet())
    ids = torch.randint(1, VOCAB, (2, 4))
    with torch.no_grad():
        assert_same(ours(ids, return_dict=False, output_hidden_states=True),
                    theirs(ids, return_dict=False, output_hidden_states=True))


# ------------------------------------------------------------------ the 4.35 crash on "uni"

def test_transformers_4_35_crashes_on_uni_and_xlref_follows_the_original_mask():
    config = tiny_xlnet(attn_type="uni")
    theirs = quiet(hf_xlnet.XLNetModel, hf_xlnet_config(config)).eval()
    with pytest.raises(TypeError):  # create_mask: torch.ones(qlen, klen, self.device)
        theirs(torch.randint(1, VOCAB, (1, 4)))
    # xlref: query i sees keys j <= mlen + i (original _create_mask); with same_length also j >= i
    _, query = xlnet_can_attend(qlen=3, mlen=2, attn_type="uni")
    assert query[0].int().tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    _, query = xlnet_can_attend(qlen=3, mlen=2, attn_type="uni", same_length=True)
    assert query[0].int().tolist() == [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1]]


def test_transformers_4_35_uni_with_a_data_mask_fails_for_batches():
    "Even with create_mask repaired, 4.35 adds the (qlen, klen, bsz) data mask in place to a (qlen, klen, 1) one."
    ours, theirs = xlnet_twin(XLNetModel, hf_xlnet.XLNetModel, tiny_xlnet(attn_type="uni"))
    ids = torch.randint(1, VOCAB, (2, 4))
    with pytest.raises(RuntimeError):
        theirs(ids, attention_mask=torch.ones(2, 4))
    assert ours(ids, attention_mask=torch.ones(2, 4)).last_hidden_state.shape == (2, 4, 16)


@settings(max_examples=10)
@given(qlen=st.integers(2, 9), n_seg=st.integers(2, 3), bi_data=st.booleans(), seed=st.integers(0, 999))
def test_uni_segments_with_memory_equal_the_full_context(qlen, n_seg, bi_data, seed):
    "With causal attention and unbounded memory, segment by segment == one pass over everything."
    model = XLNetModel(tiny_xlnet(attn_type="uni", mem_len=None, bi_data=bi_data)).eval()
    randomize(model, seed, std=0.3)
    ids = torch.randint(1, VOCAB, (2, qlen * n_seg), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        full = model(ids).last_hidden_state
        mems, parts = None, []
        for s in range(n_seg):
            out = model(ids[:, s * qlen:(s + 1) * qlen], mems=mems, use_mems=True)
            mems, parts = out.mems, parts + [out.last_hidden_state]
    torch.testing.assert_close(torch.cat(parts, 1), full, **TOL)


# ------------------------------------------------------------------ invariants

@settings(max_examples=20)
@given(qlen=st.integers(2, 7), seed=st.integers(0, 9999), mlen=st.sampled_from([0, 3]))
def test_query_stream_is_blind_to_its_target_and_later_tokens(qlen, seed, mlen):
    g = torch.Generator().manual_seed(seed)
    model = XLNetModel(tiny_xlnet(mem_len=None)).eval()
    randomize(model, seed, std=0.3)
    order = torch.randperm(qlen, generator=g)
    perm = perm_mask_from_order(order)[None]                                   # (1, qlen, qlen)
    tm = torch.eye(qlen)[None]                                                 # predict every position
    ids = torch.randint(1, VOCAB, (1, qlen), generator=g)
    mems = [torch.randn(mlen, 1, 16, generator=g) for _ in range(2)]
    k = int(torch.randint(0, qlen, (1,), generator=g))
    changed = ids.clone()
    changed[0, order[k]] = (ids[0, order[k]] % (VOCAB - 1)) + 1
    with torch.no_grad():
        a = model(ids, perm_mask=perm, target_mapping=tm, mems=mems, output_hidden_states=True)
        b = model(changed, perm_mask=perm, target_mapping=tm, mems=mems, output_hidden_states=True)
    # earlier in the order, and the target itself; without memory the first of the order sees no key at all, and a
    # row with every key blocked becomes a uniform average over all keys (as in 4.35 and the original): left out
    seen_before = order[: k + 1] if mlen else order[1: k + 1]
    torch.testing.assert_close(a.last_hidden_state[0, seen_before], b.last_hidden_state[0, seen_before], **TOL)
    content_a, content_b = a.hidden_states[-2], b.hidden_states[-2]            # last layer's content stream
    torch.testing.assert_close(content_a[0, order[:k]], content_b[0, order[:k]], **TOL)
    assert not torch.allclose(content_a[0, order[k]], content_b[0, order[k]])  # the content stream sees its token



def test_a_query_row_with_every_key_blocked_averages_all_keys_and_leaks_its_token_as_4_35():
    "The first target of an order, without memory, sees no key: uniform attention over all keys, its own included."
    ours, theirs = xlnet_twin(XLNetModel, hf_xlnet.XLNetModel, tiny_xlnet(mem_len=None))
    order = torch.tensor([2, 0, 3, 1])
    perm = perm_mask_from_order(order)[None]                                     # row 2 blocks every key
    tm = F.one_hot(torch.tensor([[2]]), 4).float()                               # predict position 2
    ids = torch.tensor([[5, 6, 7, 8]])
    changed = ids.clone(); changed[0, 2] = 9
    with torch.no_grad():
        outs = [m(x, perm_mask=perm, target_mapping=tm, output_attentions=True) for m in (ours, theirs) for x in (ids, changed)]
    assert_same(outs[0].to_tuple(), outs[2].to_tuple())
    assert_same(outs[1].to_tuple(), outs[3].to_tuple())
    query_prob = outs[0].attentions[0][1][0, :, 2]                                # layer 0, query stream, row 2
    torch.testing.assert_close(query_prob, torch.full_like(query_prob, 0.25))
    assert not torch.allclose(outs[0].last_hidden_state, outs[1].last_hidden_state)  # the token leaks


def test_masks_are_built_on_the_device_of_their_inputs():
    "The causal part follows pad/perm's device when no device is given (meta stands in for a GPU)."
    perm = torch.zeros(1, 3, 3, dtype=torch.bool, device="meta")
    content, query = xlnet_can_attend(qlen=3, mlen=2, attn_type="uni", perm=perm)
    assert content.device.type == query.device.type == "meta" and tuple(query.shape) == (1, 3, 5)

@settings(max_examples=20)
@given(qlen=st.integers(1, 6), n_pad=st.integers(1, 4), convention=st.sampled_from(["attention_mask", "input_mask"]),
       segments=st.booleans(), seed=st.integers(0, 9999))
def test_left_padding_leaves_the_real_tokens_unchanged(qlen, n_pad, convention, segments, seed):
    g = torch.Generator().manual_seed(seed)
    model = XLNetModel(tiny_xlnet(clamp_len=3)).eval()
    randomize(model, seed, std=0.3)
    ids = torch.randint(1, VOCAB, (1, qlen), generator=g)
    padded = torch.cat([torch.zeros(1, n_pad, dtype=torch.long), ids], 1)
    keep = torch.cat([torch.zeros(1, n_pad), torch.ones(1, qlen)], 1)
    tt = torch.randint(0, 2, (1, qlen), generator=g) if segments else None
    with torch.no_grad():
        plain = model(ids, token_type_ids=tt).last_hidden_state
        masked = model(padded, token_type_ids=None if tt is None else torch.cat([torch.zeros(1, n_pad, dtype=torch.long), tt], 1),
                       **{convention: keep if convention == "attention_mask" else 1 - keep}).last_hidden_state
    torch.testing.assert_close(masked[:, n_pad:], plain, **TOL)


def test_only_same_or_different_segment_matters():
    model = XLNetModel(tiny_xlnet()).eval()
    randomize(model, 1, std=0.3)
    ids = torch.randint(1, VOCAB, (2, 5))
    tt = torch.tensor([[0, 0, 1, 1, 2], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids, token_type_ids=tt).last_hidden_state,
                                   model(ids, token_type_ids=tt * 3 + 4).last_hidden_state, rtol=0, atol=0)
    assert xlnet_segment_mismatch(tt, mlen=2).shape == (2, 5, 7)


# ------------------------------------------------------------------ checkpoints and config

@pytest.mark.parametrize("safe", [True, False])
def test_checkpoints_exchange_with_transformers(tmp_path, safe):
    ours, theirs = xlnet_twin(XLNetModel, hf_xlnet.XLNetModel, tiny_xlnet(bi_data=True, clamp_len=3))
    ids = torch.randint(1, VOCAB, (2, 5))
    quiet(theirs.save_pretrained, tmp_path / "hf", safe_serialization=safe)
    loaded = XLNetModel.from_pretrained(tmp_path / "hf")
    assert loaded.config.bi_data and loaded.config.clamp_len == 3
    ours.save_pretrained(tmp_path / "ours", safe_serialization=safe)
    back = quiet(hf_xlnet.XLNetModel.from_pretrained, tmp_path / "ours").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).last_hidden_state, theirs(ids).last_hidden_state, **TOL)
        torch.testing.assert_close(back(ids).last_hidden_state, ours(ids).last_hidden_state, **TOL)


def test_config_defaults_round_trip_and_validation(tmp_path):
    hf = quiet(transformers.XLNetConfig).to_dict()
    ours = XLNetConfig()
    for key in XLNetConfig.defaults:
        assert getattr(ours, key) == hf[key], key
    assert ours.d_head == hf["d_head"] and ours.hidden_size == 1024 and ours.num_hidden_layers == 24
    config = tiny_xlnet(attn_type="uni", reuse_len=3, my_extra_key="kept")
    config.save_pretrained(tmp_path)
    assert XLNetConfig.from_pretrained(tmp_path) == config
    assert quiet(transformers.XLNetConfig.from_pretrained, tmp_path).reuse_len == 3
    for bad in [dict(attn_type="causal"), dict(d_model=30, n_head=4), dict(d_head=3), dict(mem_len=-1),
                dict(reuse_len=1.5), dict(summary_type="max"), dict(ff_activation="nope"), dict(dropout=1.0),
                dict(bi_data="yes"), dict(layer_norm_eps=0.0)]:
        with pytest.raises(ValueError, match="invalid config value"):
            tiny_xlnet(**bad)


# ------------------------------------------------------------------ errors

@pytest.fixture(scope="module")
def model():
    return XLNetModel(tiny_xlnet()).eval()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(perm_mask=torch.zeros(2, 4, 5)), ValueError, "perm_mask must have shape"),
    (dict(perm_mask=torch.full((2, 4, 4), 0.5)), ValueError, "only 0 and 1"),
    (dict(target_mapping=torch.zeros(2, 1, 5)), ValueError, "target_mapping must be"),
    (dict(target_mapping=torch.zeros(2, 0, 4)), ValueError, "target_mapping must be"),
    (dict(attention_mask=torch.ones(2, 4), input_mask=torch.zeros(2, 4)), ValueError, "not both"),
    (dict(attention_mask=torch.ones(2, 3)), ValueError, "attention_mask must have shape"),
    (dict(token_type_ids=torch.tensor([[0, 0, 1, -1]] * 2)), ValueError, "token_type_ids must be >= 0"),
    (dict(token_type_ids=torch.zeros(2, 3, dtype=torch.long)), ValueError, "token_type_ids must be an integer tensor"),
    (dict(token_type_ids=torch.zeros(2, 4)), ValueError, "token_type_ids must be an integer tensor"),
    (dict(mems=[torch.zeros(3, 2, 16)]), ValueError, "one tensor per layer"),
    (dict(mems=[torch.zeros(3, 1, 16)] * 2), ValueError, "mems\\[0\\] must be"),
    (dict(mems=[torch.zeros(3, 2, 8)] * 2), ValueError, "mems\\[0\\] must be"),
    (dict(head_mask=torch.ones(3)), ValueError, "head_mask must be"),
    (dict(labels=torch.ones(2)), TypeError, "unexpected arguments"),
])
def test_bad_input_gets_a_clear_error(model, kwargs, error, match):
    with pytest.raises(error, match=match):
        model(torch.randint(1, VOCAB, (2, 4)), **kwargs)


def test_ids_out_of_vocabulary_and_odd_batch_with_bi_data(model):
    with pytest.raises(ValueError, match="input_ids must lie in"):
        model(torch.tensor([[1, VOCAB]]))
    with pytest.raises(ValueError, match="pass exactly one"):
        model(torch.tensor([[1, 2]]), inputs_embeds=torch.zeros(1, 2, 16))
    with pytest.raises(ValueError, match="batch size must be even"):
        XLNetModel(tiny_xlnet(bi_data=True))(torch.randint(1, VOCAB, (3, 4)))


def test_use_cache_is_a_deprecated_alias(model):
    with pytest.warns(FutureWarning):
        out = model(torch.randint(1, VOCAB, (1, 3)), use_cache=False)
    assert out.mems is None
    assert model(torch.randint(1, VOCAB, (1, 3))).mems is not None  # use_mems_eval defaults to True

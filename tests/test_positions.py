"""xlref.positions (notebooks 01 and 02): sinusoid embeddings, position sequences and the
rel-shift tricks; values, error paths, property tests against the naive gather, and exact parity
with transformers 4.35."""
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from xlref.positions import (
    PositionalEmbedding,
    rel_shift,
    rel_shift_bnij,
    rel_shift_naive,
    sinusoid_embedding,
    sinusoid_inv_freq,
    transfo_xl_pos_seq,
    xlnet_pos_seq,
    xlnet_relative_positional_encoding,
)

hf_transfo_xl = pytest.importorskip("transformers.models.transfo_xl.modeling_transfo_xl")
hf_xlnet = pytest.importorskip("transformers.models.xlnet.modeling_xlnet")

exact = dict(rtol=0, atol=0)


def causal(qlen, klen):
    "(qlen, klen) bool: key j is visible to query i (j <= mlen + i)."
    return torch.arange(klen)[None, :] <= (klen - qlen) + torch.arange(qlen)[:, None]


# ---------------------------------------------------------------- sinusoid embeddings

def test_inv_freq_values():
    inv = sinusoid_inv_freq(8)
    torch.testing.assert_close(inv, torch.tensor([1.0, 10000 ** -0.25, 10000 ** -0.5, 10000 ** -0.75]))
    assert inv.dtype == torch.float32


@pytest.mark.parametrize("bad, err", [(7, ValueError), (0, ValueError), (-4, ValueError), (8.0, TypeError), (True, TypeError)])
def test_inv_freq_rejects(bad, err):
    with pytest.raises(err, match="d_model"):
        sinusoid_inv_freq(bad)


def test_embedding_layout_is_sines_then_cosines():
    pos = torch.tensor([0.0, 1.0, 5.0])
    inv = sinusoid_inv_freq(6)
    emb = sinusoid_embedding(pos, inv)
    assert emb.shape == (3, 6)
    torch.testing.assert_close(emb[:, :3], torch.sin(pos[:, None] * inv))
    torch.testing.assert_close(emb[:, 3:], torch.cos(pos[:, None] * inv))
    torch.testing.assert_close(emb[0], torch.tensor([0.0, 0, 0, 1, 1, 1]))


def test_embedding_rejects_wrong_ranks():
    with pytest.raises(ValueError, match="1-D"):
        sinusoid_embedding(torch.zeros(2, 3), sinusoid_inv_freq(4))
    with pytest.raises(ValueError, match="1-D"):
        sinusoid_embedding(torch.zeros(3), sinusoid_inv_freq(4)[None])


@given(d_model=st.integers(1, 32).map(lambda h: 2 * h), length=st.integers(1, 40), bsz=st.none() | st.integers(1, 4))
def test_positional_embedding_matches_hf(d_model, length, bsz):
    ours, theirs = PositionalEmbedding(d_model), hf_transfo_xl.PositionalEmbedding(d_model)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["inv_freq"]
    torch.testing.assert_close(ours.inv_freq, theirs.inv_freq, **exact)
    pos_seq = transfo_xl_pos_seq(length, clamp_len=length // 2)
    torch.testing.assert_close(ours(pos_seq, bsz), theirs(pos_seq, bsz), **exact)


def test_positional_embedding_rejects_bad_bsz():
    with pytest.raises(ValueError, match="bsz"):
        PositionalEmbedding(4)(torch.arange(3.0), bsz=0)


# ---------------------------------------------------------------- position sequences

def test_transfo_xl_pos_seq():
    assert transfo_xl_pos_seq(4).tolist() == [3, 2, 1, 0]
    assert transfo_xl_pos_seq(0).tolist() == []
    assert transfo_xl_pos_seq(7, clamp_len=2).tolist() == [2, 2, 2, 2, 2, 1, 0]
    assert transfo_xl_pos_seq(4, clamp_len=-1).tolist() == [3, 2, 1, 0]
    assert transfo_xl_pos_seq(4, clamp_len=0).tolist() == [3, 2, 1, 0]
    with pytest.raises(ValueError, match="klen"):
        transfo_xl_pos_seq(-1)
    with pytest.raises(TypeError, match="klen"):
        transfo_xl_pos_seq(3.0)


def test_xlnet_pos_seq():
    assert xlnet_pos_seq(2, 3).tolist() == [3, 2, 1, 0, -1]
    assert xlnet_pos_seq(2, 3, attn_type="uni").tolist() == [3, 2, 1, 0]
    assert xlnet_pos_seq(2, 3, clamp_len=1).tolist() == [1, 1, 1, 0, -1]
    with pytest.raises(ValueError, match="attn_type"):
        xlnet_pos_seq(2, 3, attn_type="both")
    with pytest.raises(ValueError, match="klen"):
        xlnet_pos_seq(4, 3)
    with pytest.raises(ValueError, match="qlen"):
        xlnet_pos_seq(-1, 3)


def hf_xlnet_encoding(qlen, klen, *, d_model, bsz, attn_type, bi_data, clamp_len):
    "Call transformers 4.35's XLNetModel.relative_positional_encoding on a stand-in `self`."
    fake_self = SimpleNamespace(d_model=d_model, attn_type=attn_type, bi_data=bi_data, clamp_len=clamp_len,
                                positional_embedding=hf_xlnet.XLNetModel.positional_embedding)
    return hf_xlnet.XLNetModel.relative_positional_encoding(fake_self, qlen, klen, bsz=bsz)


@given(qlen=st.integers(1, 8), mlen=st.integers(0, 8), d_model=st.integers(1, 16).map(lambda h: 2 * h),
       half_bsz=st.integers(1, 3), attn_type=st.sampled_from(["bi", "uni"]), bi_data=st.booleans(),
       clamp_len=st.integers(-1, 10))
def test_xlnet_encoding_matches_hf(qlen, mlen, d_model, half_bsz, attn_type, bi_data, clamp_len):
    klen, bsz = qlen + mlen, 2 * half_bsz
    kw = dict(d_model=d_model, bsz=bsz, attn_type=attn_type, bi_data=bi_data, clamp_len=clamp_len)
    ours = xlnet_relative_positional_encoding(qlen, klen, **kw)
    plen = klen + qlen if attn_type == "bi" else klen + 1
    assert ours.shape == (plen, bsz, d_model)
    torch.testing.assert_close(ours, hf_xlnet_encoding(qlen, klen, **kw), **exact)


def test_xlnet_encoding_without_bsz_broadcasts():
    ours = xlnet_relative_positional_encoding(3, 5, d_model=8)
    assert ours.shape == (8, 1, 8)
    torch.testing.assert_close(ours, hf_xlnet_encoding(3, 5, d_model=8, bsz=None, attn_type="bi", bi_data=False, clamp_len=-1), **exact)


@pytest.mark.parametrize("bsz", [None, 1, 3])
def test_xlnet_bi_data_needs_an_even_batch(bsz):
    # transformers 4.35 silently builds 2 * (bsz // 2) rows here; xlref refuses.
    with pytest.raises(ValueError, match="even batch"):
        xlnet_relative_positional_encoding(3, 5, d_model=8, bsz=bsz, bi_data=True)


def test_hf_bi_data_drops_a_row_for_odd_batches():
    "Pins the reference's behaviour that the ValueError above replaces."
    theirs = hf_xlnet_encoding(3, 5, d_model=8, bsz=3, attn_type="bi", bi_data=True, clamp_len=-1)
    assert theirs.shape[1] == 2


# ---------------------------------------------------------------- rel-shift

lengths = dict(qlen=st.integers(1, 9), mlen=st.integers(0, 9), bsz=st.integers(1, 3), n_head=st.integers(1, 3))


@given(**lengths)
def test_rel_shift_equals_naive_where_the_causal_mask_allows(qlen, mlen, bsz, n_head):
    klen = qlen + mlen
    x = torch.randn(bsz, n_head, qlen, klen)
    out = rel_shift(x)
    naive = rel_shift_naive(x, klen=klen, first_distance=klen - 1)
    allowed = causal(qlen, klen)
    assert out.shape == (bsz, n_head, qlen, klen)
    torch.testing.assert_close(out[..., allowed], naive[..., allowed], **exact)
    # and the leftovers are exactly: a zero just past the diagonal, then the next row's scores
    for i in range(qlen):
        for j in range(mlen + i + 1, klen):
            want = torch.zeros(bsz, n_head) if j == mlen + i + 1 else x[..., i + 1, j - mlen - i - 2]
            torch.testing.assert_close(out[..., i, j], want, **exact)


@given(**lengths)
def test_rel_shift_matches_hf_transfo_xl(qlen, mlen, bsz, n_head):
    klen = qlen + mlen
    x_ijbn = torch.randn(qlen, klen, bsz, n_head)  # transformers' TransfoXL layout
    theirs = hf_transfo_xl.RelPartialLearnableMultiHeadAttn._rel_shift(None, x_ijbn)
    ours = rel_shift(x_ijbn.permute(2, 3, 0, 1))  # (b, n, i, j): non-contiguous on purpose
    torch.testing.assert_close(ours, theirs.permute(2, 3, 0, 1), **exact)


@given(**lengths)
def test_rel_shift_bnij_bi_is_exact_everywhere(qlen, mlen, bsz, n_head):
    klen = qlen + mlen
    x = torch.randn(bsz, n_head, qlen, klen + qlen, dtype=torch.float64)
    out = rel_shift_bnij(x, klen=klen)
    torch.testing.assert_close(out, rel_shift_naive(x, klen=klen, first_distance=klen), **exact)
    torch.testing.assert_close(out, hf_xlnet.XLNetRelativeAttention.rel_shift_bnij(x, klen=klen), **exact)


@given(**lengths)
def test_rel_shift_bnij_uni_is_right_where_the_causal_mask_allows(qlen, mlen, bsz, n_head):
    klen = qlen + mlen
    x = torch.randn(bsz, n_head, qlen, klen + 1)
    out = rel_shift_bnij(x, klen=klen)
    naive = rel_shift_naive(x, klen=klen, first_distance=klen, fill=float("nan"))
    allowed = causal(qlen, klen)
    torch.testing.assert_close(out[..., allowed], naive[..., allowed], **exact)
    assert torch.equal((out != naive).any(0).any(0), ~allowed)
    torch.testing.assert_close(out, hf_xlnet.XLNetRelativeAttention.rel_shift_bnij(x, klen=klen), **exact)


@given(qlen=st.integers(1, 6), mlen=st.integers(0, 6))
def test_rel_shift_gradient_reaches_the_right_scores(qlen, mlen):
    klen = qlen + mlen
    allowed = causal(qlen, klen)
    weights = torch.randn(qlen, klen)
    x1 = torch.randn(2, qlen, klen, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    (rel_shift(x1) * weights)[..., allowed].sum().backward()
    (rel_shift_naive(x2, klen=klen, first_distance=klen - 1) * weights)[..., allowed].sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, **exact)


def test_naive_gather_by_hand():
    # qlen 2, mlen 1: columns hold distances 2, 1, 0
    x = torch.tensor([[10.0, 11.0, 12.0], [20.0, 21.0, 22.0]])
    # query 0 sees key 0 at distance 1 (col 1), key 1 at distance 0 (col 2); key 2 is the future
    # query 1 sees keys 0, 1, 2 at distances 2, 1, 0 (cols 0, 1, 2)
    expected = torch.tensor([[11.0, 12.0, -1.0], [20.0, 21.0, 22.0]])
    torch.testing.assert_close(rel_shift_naive(x, klen=3, first_distance=2, fill=-1.0), expected)
    torch.testing.assert_close(rel_shift(x)[causal(2, 3)], expected[causal(2, 3)])


def test_shift_errors():
    with pytest.raises(ValueError, match="at least 2 dims"):
        rel_shift(torch.zeros(5))
    with pytest.raises(ValueError, match="klen >= qlen"):
        rel_shift(torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="at least 2 dims"):
        rel_shift_bnij(torch.zeros(5), klen=3)
    with pytest.raises(ValueError, match="qlen <= klen <= P - 1"):
        rel_shift_bnij(torch.zeros(2, 3, 6), klen=6)      # klen must leave the spare column
    with pytest.raises(ValueError, match="qlen <= klen <= P - 1"):
        rel_shift_bnij(torch.zeros(2, 3, 6), klen=2)      # fewer keys than queries
    with pytest.raises(ValueError, match="klen"):
        rel_shift_bnij(torch.zeros(2, 3, 6), klen=-1)
    with pytest.raises(TypeError, match="klen"):
        rel_shift_bnij(torch.zeros(2, 3, 6), klen=4.0)
    with pytest.raises(ValueError, match="klen"):
        rel_shift_naive(torch.zeros(4, 3), klen=3, first_distance=2)
    with pytest.raises(ValueError, match="at least 2 dims"):
        rel_shift_naive(torch.zeros(3), klen=3, first_distance=2)


def test_hf_bi_data_with_a_batch_of_one_returns_an_empty_output():
    "Pinned: 4.35 XLNetModel with bi_data and one row builds zero position rows and returns (0, len, d) silently."
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import transformers
        model = transformers.XLNetModel(transformers.XLNetConfig(vocab_size=20, d_model=8, n_layer=1, n_head=2,
                                                                  d_inner=16, bi_data=True)).eval()
        out = model(torch.ones(1, 4, dtype=torch.long)).last_hidden_state
    assert tuple(out.shape) == (0, 4, 8)

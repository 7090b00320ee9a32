"""xlref.memory (notebook 03): the memory update and the causal masks, against their definitions
and transformers 4.35's mask expressions; the same_length/mem_len=0 leak of 4.35 pinned."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from _hf import hf_transfo_xl_config, quiet, tiny_transfo_xl, transformers
from xlref.memory import causal_can_attend, update_memory, update_mems


@given(mlen=st.integers(0, 7), qlen=st.integers(1, 7), mem_len=st.none() | st.integers(0, 9), bsz=st.integers(1, 3))
def test_update_memory_keeps_the_last_mem_len_positions(mlen, qlen, mem_len, bsz):
    prev = torch.randn(mlen, bsz, 4)
    hidden = torch.randn(qlen, bsz, 4, requires_grad=True)
    new = update_memory(prev, hidden, mem_len=mem_len)
    full = torch.cat([prev, hidden.detach()])
    keep = full.shape[0] if mem_len is None else min(mem_len, mlen + qlen)
    assert new.shape == (keep, bsz, 4) and not new.requires_grad
    torch.testing.assert_close(new, full[full.shape[0] - keep:], rtol=0, atol=0)


def test_update_memory_without_previous_memory():
    h = torch.arange(5.0)[:, None, None]
    assert update_memory(None, h, mem_len=3)[:, 0, 0].tolist() == [2, 3, 4]


def test_update_memory_errors():
    with pytest.raises(ValueError, match="does not fit"):
        update_memory(torch.zeros(2, 3, 4), torch.zeros(1, 2, 4), mem_len=3)   # batch differs
    with pytest.raises(ValueError, match="does not fit"):
        update_memory(torch.zeros(2, 3, 4), torch.zeros(1, 3, 5), mem_len=3)   # width differs
    with pytest.raises(ValueError, match="mem_len"):
        update_memory(None, torch.zeros(1, 3, 4), mem_len=-1)
    with pytest.raises(TypeError, match="mem_len"):
        update_memory(None, torch.zeros(1, 3, 4), mem_len=2.0)
    with pytest.raises(ValueError, match="len, bsz"):
        update_memory(None, torch.zeros(4), mem_len=2)
    with pytest.raises(ValueError, match="2 memories for 3 layers"):
        update_mems([torch.zeros(1, 1, 2)] * 3, [torch.zeros(1, 1, 2)] * 2, mem_len=2)


def hf_blocked(qlen, mlen, same_length, mem_len):
    "transformers 4.35 TransfoXLModel.forward's dec_attn_mask (True = blocked), as written there."
    klen = mlen + qlen
    all_ones = torch.ones(qlen, klen, dtype=torch.bool)
    if same_length:
        mask_len = klen - mem_len
        mask_shift_len = qlen - mask_len if mask_len > 0 else qlen
        return torch.triu(all_ones, 1 + mlen) + torch.tril(all_ones, -mask_shift_len)
    return torch.triu(all_ones, diagonal=1 + mlen)


@given(qlen=st.integers(1, 9), mlen=st.integers(0, 9), same_length=st.booleans(), mem_len=st.integers(1, 12))
def test_causal_mask_is_the_negation_of_hf(qlen, mlen, same_length, mem_len):
    ours = causal_can_attend(qlen, mlen, same_length=same_length, mem_len=mem_len)
    assert torch.equal(ours, ~hf_blocked(qlen, mlen, same_length, mem_len))
    assert ours.any(dim=1).all()  # every query sees at least itself
    if same_length:
        assert ours.sum(1).tolist() == [min(mem_len, mlen + i + 1) for i in range(qlen)]


def test_same_length_needs_a_window():
    with pytest.raises(ValueError, match="mem_len >= 1"):
        causal_can_attend(3, 0, same_length=True, mem_len=0)
    with pytest.raises(ValueError, match="mem_len >= 1"):
        causal_can_attend(3, 0, same_length=True, mem_len=None)
    with pytest.raises(ValueError, match="qlen"):
        causal_can_attend(-1, 0)


def test_hf_same_length_with_mem_len_0_attends_to_the_future():
    "4.35 masks every key of every query and then attends uniformly, future included; xlref refuses the config."
    hf_config = hf_transfo_xl_config(tiny_transfo_xl(cutoffs=[], mem_len=1))
    hf_config.same_length, hf_config.mem_len = True, 0
    model = quiet(transformers.TransfoXLModel, hf_config).eval()
    probs = model(torch.randint(0, 60, (1, 4)), output_attentions=True).attentions[0][0, 0]  # (i, j)
    assert torch.all(hf_blocked(4, 0, True, 0))
    torch.testing.assert_close(probs, torch.full((4, 4), 0.25))
    assert probs[0, 3] > 0  # the first query attends to the last token
    with pytest.raises(ValueError, match="same_length"):
        tiny_transfo_xl(same_length=True, mem_len=0)

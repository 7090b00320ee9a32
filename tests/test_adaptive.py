"""xlref.adaptive (notebook 06): adaptive embedding and projected adaptive log-softmax against
their definitions and transformers 4.35; the defects of 4.35 pinned."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from _hf import TOL, randomize
from transformers.models.transfo_xl.modeling_transfo_xl import AdaptiveEmbedding as HFEmbedding
from transformers.models.transfo_xl.modeling_transfo_xl_utilities import ProjectedAdaptiveLogSoftmax as HFCrit
from xlref.adaptive import AdaptiveEmbedding, ProjectedAdaptiveLogSoftmax

shapes = st.sampled_from([
    # n_token, d_embed, d_proj, cutoffs, div_val
    (40, 8, 8, [], 1), (40, 8, 6, [], 1), (40, 8, 8, [10, 30], 1), (40, 8, 6, [10, 30], 1),
    (40, 8, 6, [10, 30], 2), (50, 16, 12, [5, 20, 35], 2), (50, 16, 16, [5, 20, 35], 4), (30, 8, 6, [10], 2),
])


@given(shape=shapes, seed=st.integers(0, 5))
def test_adaptive_embedding_matches_hf(shape, seed):
    n_token, d_embed, d_proj, cutoffs, div_val = shape
    ours, theirs = AdaptiveEmbedding(n_token, d_embed, d_proj, cutoffs, div_val), HFEmbedding(n_token, d_embed, d_proj, cutoffs, div_val)
    randomize(ours, seed, std=1.0)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    ids = torch.randint(0, n_token, (3, 7), generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(ours(ids), theirs(ids), **TOL)


@given(shape=shapes, seed=st.integers(0, 5))
def test_log_softmax_matches_hf_and_is_normalised(shape, seed):
    n_token, d_embed, d_proj, cutoffs, div_val = shape
    ours, theirs = ProjectedAdaptiveLogSoftmax(n_token, d_embed, d_proj, cutoffs, div_val), HFCrit(n_token, d_embed, d_proj, cutoffs, div_val)
    randomize(ours, seed)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, 6, d_proj, generator=g)
    labels = torch.randint(0, n_token, (2, 6), generator=g)
    labels[0, 2] = -100
    full = ours.log_prob(hidden)                                                    # (2, 6, n_token)
    torch.testing.assert_close(full.exp().sum(-1), torch.ones(2, 6), **TOL)
    torch.testing.assert_close(ours(hidden), theirs(hidden), **TOL)                 # no labels: flattened log-probs
    nll = ours(hidden, labels)                                                      # shifted, flattened, in order
    torch.testing.assert_close(nll, theirs(hidden, labels, keep_order=True), **TOL)
    expected = -full[:, :-1].gather(-1, labels[:, 1:].clamp(min=0)[..., None]).squeeze(-1)
    expected[labels[:, 1:] == -100] = 0
    torch.testing.assert_close(nll.view(2, 5), expected, **TOL)                    # label path == full path


def test_hf_losses_come_back_grouped_by_cluster():
    "DESIGN's example: labels [100, 7, 400, 9, 150, 2], cutoffs [50, 200]; 4.35's default order is head cluster first."
    ours, theirs = ProjectedAdaptiveLogSoftmax(500, 8, 8, [50, 200]), HFCrit(500, 8, 8, [50, 200])
    randomize(ours)
    theirs.load_state_dict(ours.state_dict())
    labels = torch.tensor([[0, 100, 7, 400, 9, 150, 2]])     # targets after the shift: 100 7 400 9 150 2
    hidden = torch.randn(1, 7, 8)
    in_order = ours(hidden, labels)
    grouped = theirs(hidden, labels)
    head_first = [1, 3, 5, 0, 4, 2]                          # 7, 9, 2 (head), 100, 150 (cluster 1), 400 (cluster 2)
    torch.testing.assert_close(grouped, in_order[head_first], **TOL)
    assert not torch.allclose(grouped, in_order)


@pytest.mark.parametrize("n_rows, error", [(5, RuntimeError), (20, IndexError)])
def test_hf_log_prob_crashes_with_tail_clusters(n_rows, error):
    "(N,) added to (N, 20) fails unless N is 20 (or 1); then out[:, start, stop] (a comma for a colon) fails."
    theirs = HFCrit(40, 8, 8, [10, 30])
    with pytest.raises(error):
        theirs.log_prob(torch.randn(n_rows, 8))
    ours = ProjectedAdaptiveLogSoftmax(40, 8, 8, [10, 30])
    torch.testing.assert_close(ours.log_prob(torch.randn(5, 8)).exp().sum(-1), torch.ones(5), **TOL)


def test_hf_silently_ignores_labels_outside_the_vocabulary():
    theirs = HFCrit(40, 8, 8, [10, 30])
    loss = theirs(torch.randn(1, 3, 8), torch.tensor([[1, 2, 45]]), keep_order=True)
    assert loss[1].item() == 0.0                         # label 45 >= n_token: silently a zero loss
    ours = ProjectedAdaptiveLogSoftmax(40, 8, 8, [10, 30])
    with pytest.raises(ValueError, match=r"\[0, 39\] or be -100"):
        ours(torch.randn(1, 3, 8), torch.tensor([[1, 2, 45]]))
    with pytest.raises(ValueError, match=r"\[0, 39\] or be -100"):
        ours(torch.randn(1, 3, 8), torch.tensor([[1, 2, -5]]))


def test_shapes_are_checked():
    crit = ProjectedAdaptiveLogSoftmax(40, 8, 8, [10, 30])
    with pytest.raises(ValueError, match="must match hidden"):
        crit(torch.randn(2, 3, 8), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="nll needs"):
        crit.nll(torch.randn(3, 8), torch.zeros(2, dtype=torch.long))


def test_all_ignored_gives_zero_losses():
    crit = ProjectedAdaptiveLogSoftmax(40, 8, 8, [10, 30])
    assert torch.equal(crit.nll(torch.randn(4, 8), torch.full((4,), -100)), torch.zeros(4))

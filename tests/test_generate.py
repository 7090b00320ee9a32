"""xlref.generate (notebook 17): generate() of both language models equal to transformers 4.35's on the same
weights (greedy, beam search, seeded sampling, repetition penalty, banned words, minimum length, eos and
padding, returned scores), Transformer-XL's memory steps equal to recomputing the context, XLNet's exact
mode equal to a full forward per step, padding text and padded batches, streaming, and every refusal."""
import pytest
import torch

from _hf import quiet, randomize, tiny_transfo_xl, transformers, twin
from xlref.generate import GenerateOutput, xlnet_step_inputs
from xlref.heads import XLNetLMHeadModel
from xlref.transfo_xl import TransfoXLLMHeadModel
from xlref.xlnet import XLNetConfig


def hf_generate(model, *args, **kwargs):
    return quiet(model.generate, *args, **kwargs)


def xlnet_twin(seed=0, **overrides):
    config = XLNetConfig(**{**dict(vocab_size=40, d_model=16, n_layer=2, n_head=2, d_inner=32, mem_len=None,
                                   dropout=0.0), **overrides})
    ours = XLNetLMHeadModel(config).eval()
    randomize(ours, seed, std=0.5)
    d = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "label2id", "architectures")}
    theirs = quiet(transformers.XLNetLMHeadModel, transformers.XLNetConfig(**d)).eval()
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.fixture(scope="module", params=[dict(), dict(div_val=2, d_embed=12), dict(mem_len=3), dict(cutoffs=[], tie_projs=[False])],
                ids=["adaptive", "div_val", "short-memory", "no-clusters"])
def txl_pair(request):
    return twin(TransfoXLLMHeadModel, transformers.TransfoXLLMHeadModel, tiny_transfo_xl(**request.param), seed=3)


GREEDY_AND_BEAM = [
    dict(max_new_tokens=8),
    dict(max_length=11),
    dict(max_new_tokens=8, num_beams=3),
    dict(max_new_tokens=8, num_beams=4, num_return_sequences=3, length_penalty=0.5),
    dict(max_new_tokens=8, num_beams=2, early_stopping=True),
    dict(max_new_tokens=7, repetition_penalty=1.4, bad_words_ids=[[3], [4, 5]]),
    dict(max_new_tokens=7, min_length=10, eos_token_id=2),
]


@pytest.mark.parametrize("kwargs", GREEDY_AND_BEAM)
def test_transfo_xl_generate_equals_transformers(txl_pair, kwargs):
    ours, theirs = txl_pair
    ids = torch.randint(0, 60, (2, 4), generator=torch.Generator().manual_seed(1))
    assert torch.equal(ours.generate(ids, **kwargs), hf_generate(theirs, ids, **kwargs))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("warp", [dict(), dict(top_k=5), dict(top_p=0.8, temperature=0.7), dict(top_k=0, temperature=1.3)])
def test_seeded_sampling_equals_transformers(txl_pair, seed, warp):
    ours, theirs = txl_pair
    ids = torch.randint(0, 60, (2, 4), generator=torch.Generator().manual_seed(seed))
    kwargs = dict(do_sample=True, max_new_tokens=8, num_return_sequences=2, **warp)
    torch.manual_seed(seed)
    a = ours.generate(ids, **kwargs)
    torch.manual_seed(seed)
    assert torch.equal(a, hf_generate(theirs, ids, **kwargs))


def test_eos_stops_rows_and_pads_them_as_transformers(txl_pair):
    ours, theirs = txl_pair
    ids = torch.randint(0, 60, (3, 4), generator=torch.Generator().manual_seed(5))
    free = ours.generate(ids, max_new_tokens=10)
    eos = free[0, 6].item()                                          # a token row 0 produces: it stops there
    for kwargs in [dict(max_new_tokens=10, eos_token_id=eos, pad_token_id=1), dict(max_new_tokens=10, eos_token_id=eos),
                   dict(max_new_tokens=10, eos_token_id=eos, num_beams=3, pad_token_id=1)]:
        ours_out, theirs_out = ours.generate(ids, **kwargs), hf_generate(theirs, ids, **kwargs)
        assert torch.equal(ours_out, theirs_out), kwargs


def test_returned_scores_equal_transformers(txl_pair):
    ours, theirs = txl_pair
    ids = torch.randint(0, 60, (2, 4), generator=torch.Generator().manual_seed(2))
    for kwargs in [dict(max_new_tokens=5), dict(max_new_tokens=5, num_beams=3, num_return_sequences=2)]:
        a = ours.generate(ids, output_scores=True, return_dict_in_generate=True, **kwargs)
        b = hf_generate(theirs, ids, output_scores=True, return_dict_in_generate=True, **kwargs)
        assert isinstance(a, GenerateOutput) and torch.equal(a.sequences, b.sequences) and len(a.scores) == len(b.scores)
        for x, y in zip(a.scores, b.scores):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)
        if "num_beams" in kwargs:
            torch.testing.assert_close(a.sequences_scores, b.sequences_scores, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- Transformer-XL: memory = recomputation

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_memory_steps_equal_recomputing_the_context(seed):
    "With an empty start and mem_len >= the text, each one-token step equals a forward over everything so far."
    model = TransfoXLLMHeadModel(tiny_transfo_xl(mem_len=40)).eval()
    randomize(model, seed)
    ids = torch.randint(0, 60, (2, 5), generator=torch.Generator().manual_seed(seed))
    empty = [torch.empty(0, 2, 16)] * 2
    out = model.generate(ids, max_new_tokens=12, mems=empty)
    again = ids
    with torch.no_grad():
        for _ in range(12):
            again = torch.cat([again, model(again, mems=empty).prediction_scores[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, again)
    g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)   # sampling, one generator each
    sampled = model.generate(ids, max_new_tokens=12, mems=empty, do_sample=True, top_k=0, generator=g1)
    again = ids
    with torch.no_grad():
        for _ in range(12):
            probs = model(again, mems=empty).prediction_scores[:, -1].softmax(-1)
            again = torch.cat([again, torch.multinomial(probs, 1, generator=g2)], dim=1)
    assert torch.equal(sampled, again)


def test_a_longer_memory_at_generation_time():
    model = TransfoXLLMHeadModel(tiny_transfo_xl(mem_len=2)).eval()
    randomize(model, 4)
    ids = torch.randint(0, 60, (1, 5), generator=torch.Generator().manual_seed(4))
    empty = [torch.empty(0, 1, 16)] * 2
    scored = dict(max_new_tokens=10, mems=empty, output_scores=True, return_dict_in_generate=True)
    short = model.generate(ids, **scored)
    model.reset_memory_length(30)
    long = model.generate(ids, **scored)
    with torch.no_grad():
        full = model(long.sequences[:, :-1], mems=empty).prediction_scores[0, 4:]     # every step at once
    torch.testing.assert_close(torch.stack([s[0] for s in long.scores]), full, rtol=1e-5, atol=1e-5)
    assert max((a - b).abs().max().item() for a, b in zip(short.scores, long.scores)) > 1e-3


# ---------------------------------------------------------------- XLNet

@pytest.mark.parametrize("overrides", [dict(), dict(mem_len=6), dict(n_layer=3, clamp_len=3)])
@pytest.mark.parametrize("kwargs", [dict(max_new_tokens=7), dict(max_new_tokens=7, use_mems=False),
                                    dict(max_new_tokens=7, num_beams=3), dict(max_new_tokens=7, num_beams=3, use_mems=False),
                                    dict(max_new_tokens=6, repetition_penalty=1.3, bad_words_ids=[[7]])])
def test_xlnet_generate_equals_transformers(overrides, kwargs):
    ours, theirs = xlnet_twin(**overrides)
    ids = torch.randint(6, 40, (2, 5), generator=torch.Generator().manual_seed(3))
    assert torch.equal(ours.generate(ids, **kwargs), hf_generate(theirs, ids, **kwargs))


@pytest.mark.parametrize("seed", [0, 1])
def test_xlnet_sampling_and_padding_text_equal_transformers(seed):
    ours, theirs = xlnet_twin(seed)
    ids = torch.randint(6, 40, (2, 4), generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    a = ours.generate(ids, do_sample=True, max_new_tokens=6, top_k=10)
    torch.manual_seed(seed)
    assert torch.equal(a, hf_generate(theirs, ids, do_sample=True, max_new_tokens=6, top_k=10))
    padding = torch.randint(6, 40, (9,), generator=torch.Generator().manual_seed(seed + 10)).tolist()
    for kwargs in [dict(max_new_tokens=5), dict(max_length=8, min_length=7, eos_token_id=9)]:
        ours_out = ours.generate(ids, padding_text=padding, **kwargs)
        shifted = {k: v + len(padding) if k in ("max_length", "min_length") else v for k, v in kwargs.items()}
        theirs_out = hf_generate(theirs, torch.cat([torch.tensor(padding).expand(2, -1), ids], 1), **shifted)
        assert torch.equal(ours_out, theirs_out[:, len(padding):]), kwargs
        assert torch.equal(ours_out[:, :4], ids)                     # the padding text is not in the output


def test_xlnet_exact_mode_is_a_full_forward_per_step():
    ours, _ = xlnet_twin(2)
    ids = torch.randint(6, 40, (2, 5), generator=torch.Generator().manual_seed(2))
    out = ours.generate(ids, max_new_tokens=6, use_mems=False)
    again = ids
    with torch.no_grad():
        for _ in range(6):
            n = again.shape[1] + 1
            placeholder = torch.cat([again, torch.zeros(2, 1, dtype=torch.long)], dim=1)
            perm = torch.zeros(2, n, n)
            perm[:, :, -1] = 1
            target = torch.zeros(2, 1, n)
            target[:, 0, -1] = 1
            logits = ours(placeholder, perm_mask=perm, target_mapping=target, use_mems=False).logits[:, 0]
            again = torch.cat([again, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, again)


def test_the_step_inputs_hide_the_placeholder():
    inputs = xlnet_step_inputs(torch.tensor([[4, 5, 6]]), cached=False)
    assert inputs["input_ids"].tolist() == [[4, 5, 6, 0]]
    assert inputs["perm_mask"][0].tolist() == [[0, 0, 0, 1]] * 4 and inputs["target_mapping"][0].tolist() == [[0, 0, 0, 1]]
    cached = xlnet_step_inputs(torch.tensor([[4, 5, 6, 7]]), cached=True)
    assert cached["input_ids"].tolist() == [[6, 7, 0]]              # the newest two and the placeholder


def test_a_padded_xlnet_batch_continues_as_each_prompt_alone_and_4_35_reads_the_padding():
    ours, theirs = xlnet_twin(1)
    short = torch.randint(6, 40, (1, 3), generator=torch.Generator().manual_seed(1))
    batch = torch.cat([torch.tensor([[5, 5]]), short], dim=1)
    mask = torch.tensor([[0, 0, 1, 1, 1]])
    scored = dict(max_new_tokens=5, use_mems=False, output_scores=True, return_dict_in_generate=True)
    alone = ours.generate(short, **scored)
    padded = ours.generate(batch, attention_mask=mask, **scored)
    assert torch.equal(padded.sequences[:, 2:], alone.sequences)
    torch.testing.assert_close(padded.scores[0], alone.scores[0], rtol=1e-5, atol=1e-5)
    theirs_padded = hf_generate(theirs, batch, attention_mask=mask, **scored)        # 4.35 drops the mask
    theirs_unmasked = hf_generate(theirs, batch, **scored)
    assert torch.equal(theirs_padded.scores[0], theirs_unmasked.scores[0])
    assert (theirs_padded.scores[0] - alone.scores[0]).abs().max() > 1e-3


# ---------------------------------------------------------------- streaming, modes, refusals

class _Recorder:
    def __init__(self):
        self.puts, self.ended = [], False

    def put(self, ids):
        self.puts.append(ids.tolist())

    def end(self):
        self.ended = True


def test_streamers_see_every_token_as_it_comes(txl_pair):
    ours, _ = txl_pair
    ids = torch.randint(0, 60, (1, 4), generator=torch.Generator().manual_seed(0))
    seen = []
    out = ours.generate(ids, max_new_tokens=6, streamer=seen.extend)
    assert seen == out[0, 4:].tolist()
    recorder = _Recorder()
    ours.generate(ids, max_new_tokens=6, streamer=recorder)
    assert recorder.puts[0] == ids.tolist() and [p[0] for p in recorder.puts[1:]] == out[0, 4:].tolist() and recorder.ended


def test_generate_leaves_the_training_mode_as_it_was(txl_pair):
    ours, _ = txl_pair
    ours.train()
    ours.generate(torch.ones(1, 3, dtype=torch.long), max_new_tokens=2)
    assert ours.training
    ours.eval()


TXL_REFUSALS = [
    (dict(input_ids=torch.ones(2, 0, dtype=torch.long)), ValueError, "non-empty"),
    (dict(input_ids=torch.ones(4, dtype=torch.long)), ValueError, "add a batch axis"),
    (dict(input_ids=[[1, 2]]), TypeError, "must be a \\(batch, length\\) tensor"),
    (dict(input_ids=torch.ones(1, 3)), TypeError, "integer token ids"),
    (dict(input_ids=torch.full((1, 3), 60)), ValueError, r"must lie in \[0, 59\]"),
    (dict(max_new_tokens=0), ValueError, "max_new_tokens must be a positive int"),
    (dict(max_new_tokens=2, max_length=9), ValueError, "not both"),
    (dict(max_length=3, max_new_tokens=None), ValueError, "must exceed the prompt's length"),
    (dict(do_sample=True, top_p=0.0), ValueError, r"top_p must be in \(0, 1\]"),
    (dict(do_sample=True, top_p=1.5), ValueError, r"top_p must be in \(0, 1\]"),
    (dict(top_k=-1), ValueError, "top_k must be an int >= 0"),
    (dict(do_sample=True, temperature=0), ValueError, "temperature must be a number > 0"),
    (dict(num_return_sequences=2), ValueError, "cannot exceed num_beams"),
    (dict(num_beams=0), ValueError, "num_beams must be a positive int"),
    (dict(do_sample=True, num_beams=2), ValueError, "beam sampling"),
    (dict(repetition_penalty=0), ValueError, "repetition_penalty must be a number > 0"),
    (dict(bad_words_ids=[[99]]), ValueError, "bad_words_ids must be a list"),
    (dict(bad_words_ids=[[]]), ValueError, "bad_words_ids must be a list"),
    (dict(eos_token_id=60), ValueError, "eos_token_id must be None or token ids"),
    (dict(early_stopping="sometimes", num_beams=2), ValueError, "early_stopping"),
    (dict(no_repeat_ngram_size=2), ValueError, "not supported by xlref"),
    (dict(typical_p=0.5), ValueError, "not supported by xlref"),
    (dict(temprature=0.5), TypeError, "unexpected keyword argument 'temprature'"),
    (dict(attention_mask=torch.tensor([[0, 1, 1]])), ValueError, "Transformer-XL has no padding mask"),
    (dict(use_mems=False), ValueError, "use_mems is XLNet's"),
    (dict(padding_text=[1, 2]), ValueError, "padding_text is XLNet's"),
    (dict(generator=3, do_sample=True), TypeError, "torch.Generator"),
    (dict(streamer=print, num_beams=2), ValueError, "a streamer follows one sequence"),
    (dict(do_sample="yes"), TypeError, "do_sample must be True or False"),
]


@pytest.mark.parametrize("kwargs, error, match", TXL_REFUSALS)
def test_transfo_xl_bad_arguments_are_refused_by_name(txl_pair, kwargs, error, match):
    ours, _ = txl_pair
    kwargs = {"input_ids": torch.ones(1, 3, dtype=torch.long), "max_new_tokens": 4, **kwargs}
    if kwargs["max_new_tokens"] is None:
        del kwargs["max_new_tokens"]
    with pytest.raises(error, match=match):
        ours.generate(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(attention_mask=torch.tensor([[0, 1, 1]])), "needs use_mems=False"),
    (dict(attention_mask=torch.tensor([[2, 1, 1]]), use_mems=False), "0/1 tensor"),
    (dict(mems=[torch.zeros(1, 1, 16)] * 2), "builds its own memory"),
    (dict(padding_text=[]), "non-empty list"),
    (dict(padding_text=[[1, 2]]), "non-empty list"),
    (dict(padding_text=[1, 99]), r"must lie in \[0, 39\]"),
])
def test_xlnet_bad_arguments_are_refused_by_name(kwargs, match):
    ours, _ = xlnet_twin()
    with pytest.raises(ValueError, match=match):
        ours.generate(torch.tensor([[7, 8, 9]]), max_new_tokens=3, **kwargs)


def test_sampling_scores_are_recorded_after_the_warpers_as_in_transformers(txl_pair):
    ours, theirs = txl_pair
    ids = torch.randint(0, 60, (2, 4), generator=torch.Generator().manual_seed(8))
    kwargs = dict(do_sample=True, max_new_tokens=5, top_k=4, temperature=0.7, output_scores=True,
                  return_dict_in_generate=True)
    torch.manual_seed(8)
    a = ours.generate(ids, **kwargs)
    torch.manual_seed(8)
    b = hf_generate(theirs, ids, **kwargs)
    assert torch.equal(a.sequences, b.sequences)
    for x, y in zip(a.scores, b.scores):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)
        assert x.isinf().sum(-1).tolist() == [60 - 4] * 2                   # top-k applied to what is recorded


def test_a_ban_whose_prefix_is_the_whole_row_applies_where_4_35_skips_it(txl_pair):
    ours, theirs = txl_pair
    ids = torch.tensor([[7]])
    kwargs = dict(max_new_tokens=1, output_scores=True, return_dict_in_generate=True, bad_words_ids=[[7, 9]])
    assert ours.generate(ids, **kwargs).scores[0][0, 9] == -float("inf")
    assert hf_generate(theirs, ids, **kwargs).scores[0][0, 9] > -float("inf")     # 4.35: len(ban) > len(row), skipped


def test_right_padding_is_refused():
    ours, _ = xlnet_twin()
    with pytest.raises(ValueError, match="must pad on the left"):
        ours.generate(torch.tensor([[7, 8, 9]]), attention_mask=torch.tensor([[1, 1, 0]]), use_mems=False, max_new_tokens=2)


def test_use_cache_is_xlnets_old_name_for_use_mems():
    ours, _ = xlnet_twin()
    ids = torch.tensor([[7, 8, 9]])
    with pytest.warns(FutureWarning, match="use_cache is deprecated"):
        a = ours.generate(ids, max_new_tokens=3, use_cache=False)
    assert torch.equal(a, ours.generate(ids, max_new_tokens=3, use_mems=False))


def test_unsupported_settings_in_the_config_are_refused_not_ignored(txl_pair):
    ours, _ = txl_pair
    ours.config.no_repeat_ngram_size = 3                                    # transformers would apply it
    try:
        with pytest.raises(ValueError, match="config: no_repeat_ngram_size=3 is not supported"):
            ours.generate(torch.ones(1, 3, dtype=torch.long), max_new_tokens=2)
        ours.config.no_repeat_ngram_size = 0                                 # the neutral value is fine
        ours.generate(torch.ones(1, 3, dtype=torch.long), max_new_tokens=2, logits_processor=None, constraints=[])
    finally:
        del ours.config.no_repeat_ngram_size

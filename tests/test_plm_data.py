"""XLNet's pretraining samples (xlref.data, notebook 15): equal to a statement-by-statement transcription of
zihangdai/xlnet's data_utils.py (tests/_xlnet_original.py) on fixed seeds, their properties, query-stream
blindness at depth on xlref.XLNetModel, the differences of transformers 4.35's
DataCollatorForPermutationLanguageModeling, and bad arguments."""
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import _xlnet_original as orig
import xlref.data as plm_data

CLS, SEP, PAD, MASK, EOD = 3, 4, 5, 6, 7       # the original's special_symbols
VOCAB = 64
FIELDS = ("input_ids", "token_type_ids", "perm_mask", "target_mapping", "target_mask", "labels", "input_q",
          "is_masked", "is_next")


def make_lines(seed: int, n_tokens: int, *, max_line: int = 10, p_blank: float = 0.1):
    "Random corpus lines of ids in [9, VOCAB), some blank (document ends), n_tokens at least."
    r = np.random.RandomState(seed)
    lines, total = [], 0
    while total < n_tokens:
        if r.rand() < p_blank:
            lines.append([])
            continue
        line = r.randint(9, VOCAB, size=r.randint(1, max_line + 1)).tolist()
        lines.append(line)
        total += len(line)
    return lines


def stream(seed, n_tokens, **kw):
    return plm_data.corpus_stream(make_lines(seed, n_tokens, **kw), eod_id=EOD)


def build(ids, sents, cfg, **kw):
    return list(plm_data.pretraining_samples(ids, sents, sep_id=SEP, cls_id=CLS, **cfg, **kw))


def transcribed(ids, sents, cfg, *, py_random, np_random, perm_random, is_start_piece=lambda i: True):
    "The original's batches: create_tfrecords, then the parser on each record, in the builder's layout."
    keys = ("seq_len", "reuse_len", "num_predict", "mask_alpha", "mask_beta")
    records = orig.create_tfrecords([ids, sents], cfg["bsz"], bi_data=cfg["bi_data"], sep_id=SEP, cls_id=CLS,
                                    is_start_piece=is_start_piece, py_random=py_random, np_random=np_random,
                                    **{k: cfg[k] for k in keys})
    for features in records:                                           # lazily: the parser runs after each batch
        rows = []
        for f in features:
            p = orig.parser(f, cfg["seq_len"], cfg["reuse_len"], cfg["perm_size"], cfg["num_predict"], SEP, CLS,
                            perm_random)
            rows.append(dict(input_ids=p["input_k"], token_type_ids=p["seg_id"], perm_mask=p["perm_mask"],
                             target_mapping=p["target_mapping"], target_mask=p["target_mask"],
                             labels=np.where(p["target_mask"] > 0, p["target"], -100), input_q=p["input_q"],
                             is_masked=f["is_masked"].astype(bool), is_next=p["label"][0]))
        yield {k: np.stack([r[k] for r in rows]) for k in FIELDS}


def assert_same(got, want):
    assert len(got) == len(want) and len(got) > 0
    for g, w in zip(got, want):
        for k in FIELDS:
            np.testing.assert_array_equal(g[k].numpy(), w[k], err_msg=k)


START_TABLE = np.ones(VOCAB, dtype=bool)
START_TABLE[np.random.RandomState(5).rand(VOCAB) < 0.4] = False          # ~40% of the ids continue a word
START_TABLE[:9] = True

CONFIGS = [
    dict(seq_len=16, reuse_len=8, num_predict=5, bsz=2, bi_data=False, mask_alpha=6, mask_beta=1, perm_size=4),
    dict(seq_len=20, reuse_len=10, num_predict=6, bsz=4, bi_data=True, mask_alpha=3, mask_beta=1, perm_size=5),
    dict(seq_len=24, reuse_len=8, num_predict=7, bsz=2, bi_data=True, mask_alpha=4, mask_beta=2, perm_size=8),
    dict(seq_len=12, reuse_len=6, num_predict=12, bsz=1, bi_data=False, mask_alpha=2, mask_beta=1, perm_size=3),
    dict(seq_len=14, reuse_len=7, num_predict=4, bsz=3, bi_data=False, mask_alpha=6, mask_beta=1, perm_size=7),
]


# ------------------------------------------------------------------------- (a) equal to the transcription
@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("with_table", [False, True])
def test_equals_transcription_three_streams(cfg, seed, with_table):
    ids, sents = stream(seed, 60 * cfg["bsz"] + 200)
    kw = dict(is_start=START_TABLE) if with_table else {}
    got = build(ids, sents, cfg, rng=np.random.RandomState(seed + 1), split_rng=random.Random(seed),
                perm_rng=np.random.RandomState(seed + 2), **kw)
    want = list(transcribed(ids, sents, cfg, py_random=random.Random(seed), np_random=np.random.RandomState(seed + 1),
                            perm_random=np.random.RandomState(seed + 2),
                            **(dict(is_start_piece=lambda i: bool(START_TABLE[i])) if with_table else {})))
    assert_same(got, want)


@pytest.mark.parametrize("cfg", CONFIGS[:3])
def test_equals_transcription_one_stream(cfg):
    "Only rng: per batch every row's split and spans, then every row's order, all from one RandomState."
    ids, sents = stream(7, 60 * cfg["bsz"] + 200)
    got = build(ids, sents, cfg, rng=np.random.RandomState(3))
    r = np.random.RandomState(3)
    want = list(transcribed(ids, sents, cfg, py_random=plm_data._PyRandomFromNumpy(r), np_random=r, perm_random=r))
    assert_same(got, want)
    again = build(ids, sents, cfg, rng=np.random.RandomState(3))
    assert_same(again, [{k: b[k].numpy() for k in FIELDS} for b in got])


def test_corpus_stream_equals_transcription():
    lines = make_lines(3, 200, p_blank=0.3) + [[], []]
    for eod in (None, EOD):
        ids, sents = plm_data.corpus_stream(lines, eod_id=eod)
        want_ids, want_sents = orig.lines_to_stream(lines, eod is not None, eod)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(sents, want_sents)
    ids, sents = plm_data.corpus_stream([[10, 11], [], [12]], eod_id=EOD)
    assert ids.tolist() == [10, 11, EOD, 12] and sents.tolist() == [True, True, True, False]   # <eod> ends sentence 1


@given(seed=st.integers(0, 2**31 - 1), begin=st.integers(0, 40), tot_len=st.integers(1, 30),
       extend=st.booleans(), sent_p=st.floats(0.0, 0.6))
def test_split_equals_transcription(seed, begin, tot_len, extend, sent_p):
    r = np.random.RandomState(seed)
    n = int(r.randint(2, 70))
    data = r.randint(9, VOCAB, size=n)
    sents = np.cumsum(r.rand(n) < sent_p) % 2 == 0
    got = plm_data.split_a_and_b(data, sents, begin_idx=begin, tot_len=tot_len, extend_target=extend,
                                 rng=random.Random(seed))
    want = orig.split_a_and_b(data, sents, begin, tot_len, random.Random(seed), extend_target=extend)
    if want is None:
        assert got is None
        return
    assert got is not None
    got = [x for x in got if x is not None]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@given(a=st.integers(0, 60), b=st.integers(0, 60), tot=st.integers(1, 60))
def test_trim_closed_form_equals_the_loop(a, b, tot):
    want_a, want_b = a, b
    while want_a + want_b > tot:
        if want_a > want_b:
            want_a -= 1
        else:
            want_b -= 1
    assert plm_data._trim(a, b, tot) == (want_a, want_b)


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40), alpha=st.integers(1, 7), beta=st.integers(1, 3),
       max_gram=st.integers(1, 6), reverse=st.booleans(), table=st.booleans(), data=st.data())
def test_sample_mask_equals_transcription_and_spans(seed, n, alpha, beta, max_gram, reverse, table, data):
    alpha = max(alpha, beta)
    goal = data.draw(st.one_of(st.none(), st.integers(0, n)))
    seg = np.random.RandomState(seed).randint(9, VOCAB, size=n)
    kw = dict(goal_num_predict=goal, mask_alpha=alpha, mask_beta=beta, reverse=reverse, max_gram=max_gram,
              is_start=START_TABLE if table else None)
    got = plm_data.sample_mask(seg, rng=np.random.RandomState(seed), **kw)
    want = orig.sample_mask((lambda i: bool(START_TABLE[i])) if table else (lambda i: True), seg, alpha, beta,
                            np.random.RandomState(seed), reverse=reverse, max_gram=max_gram, goal_num_predict=goal)
    np.testing.assert_array_equal(got, want)
    spans, extra = plm_data.sample_spans(seg, rng=np.random.RandomState(seed), **kw)
    if goal is not None:
        assert got.sum() == goal                                              # exactly goal_num_predict
    walk = spans if not reverse else [(n - e, n - b) for b, e in spans]       # in walking coordinates
    prev_end = -1
    for b, e in walk:
        assert 1 <= e - b <= max_gram and e < n                               # never the walk's last token
        assert b > prev_end                                                   # disjoint, >= 1 token apart
        prev_end = e
        if table:
            assert START_TABLE[(seg[::-1] if reverse else seg)[b]]            # starts at a word start
    mask = np.zeros(n, dtype=bool)
    for b, e in spans:
        assert not mask[b:e].any()
        mask[b:e] = True                                                      # contiguous runs
    assert not mask[extra].any() and len(set(extra)) == len(extra)
    mask[extra] = True
    np.testing.assert_array_equal(mask, got)


@given(seed=st.integers(0, 2**31 - 1), perm_size=st.integers(1, 5), blocks=st.integers(1, 4), p=st.floats(0, 1))
def test_local_perm_equals_transcription(seed, perm_size, blocks, p):
    r = np.random.RandomState(seed)
    n = perm_size * blocks
    inputs = r.choice([SEP, CLS] + list(range(9, 20)), size=n)
    targets = r.randint(9, VOCAB, size=n)
    is_masked = r.rand(n) < p
    got = plm_data.local_perm(inputs, targets, is_masked, perm_size=perm_size, sep_id=SEP, cls_id=CLS,
                              rng=np.random.RandomState(seed))
    want = orig.local_perm(inputs, targets, is_masked, perm_size, n, SEP, CLS, np.random.RandomState(seed))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@given(seed=st.integers(0, 2**31 - 1), perm_size=st.integers(1, 6), blocks=st.integers(1, 4))
def test_local_perm_one_offset_permutation_shared_by_all_blocks(seed, perm_size, blocks):
    n = perm_size * blocks
    out = plm_data.local_perm(np.arange(10, 10 + n), np.arange(n), np.ones(n, dtype=bool), perm_size=perm_size,
                              sep_id=SEP, cls_id=CLS, rng=np.random.RandomState(seed))
    rank = out.perm_mask.shape[0] - out.perm_mask.sum(1)                     # all targets: i sees rank_i keys
    rank = rank.astype(int)
    assert sorted(rank) == list(range(n))
    per_block = rank.reshape(blocks, perm_size) - perm_size * np.arange(blocks)[:, None]
    assert (per_block == per_block[0]).all()                                 # the same offsets' order everywhere
    np.testing.assert_array_equal(out.perm_mask, (rank[None, :] >= rank[:, None]).astype(np.float32))


# ------------------------------------------------------------------------- (b) properties of whole batches
@st.composite
def setups(draw):
    perm_size = draw(st.integers(1, 4))
    reuse_len = perm_size * draw(st.integers(1, 3))
    rest = perm_size * draw(st.integers(-(-4 // perm_size), 4))              # >= 4: A <sep> B <sep> <cls>
    num_predict = draw(st.integers(1, min(2 * reuse_len, 2 * rest + 1)))
    bi_data = draw(st.booleans())
    bsz = draw(st.sampled_from([2, 4])) if bi_data else draw(st.integers(1, 3))
    mask_beta = draw(st.integers(1, 2))
    cfg = dict(seq_len=reuse_len + rest, reuse_len=reuse_len, num_predict=num_predict, bsz=bsz, bi_data=bi_data,
               mask_alpha=draw(st.integers(mask_beta, 6)), mask_beta=mask_beta, perm_size=perm_size)
    return cfg, draw(st.integers(0, 2**31 - 1))


def reach(can: np.ndarray, start: np.ndarray) -> np.ndarray:
    "Positions reachable from `start` (bool (L,)) along can[i, j] (i sees j), start included."
    seen = start.copy()
    while True:
        nxt = seen | (can[seen].any(0) if seen.any() else seen)
        if (nxt == seen).all():
            return seen
        seen = nxt


@given(setups())
def test_batch_properties(setup):
    cfg, seed = setup
    L, R, P, B = cfg["seq_len"], cfg["reuse_len"], cfg["num_predict"], cfg["bsz"]
    n_rows = B // 2 if cfg["bi_data"] else B
    ids, sents = stream(seed, n_rows * (3 * L + 10))
    row_len = len(ids) // n_rows
    rows = ids[:n_rows * row_len].reshape(n_rows, row_len)
    batches = list(plm_data.pretraining_samples(ids, sents, sep_id=SEP, cls_id=CLS, rng=np.random.RandomState(seed),
                                                **cfg))
    assert len(batches) >= 1
    for k, batch in enumerate(batches):
        shapes = dict(input_ids=(B, L), token_type_ids=(B, L), perm_mask=(B, L, L), target_mapping=(B, P, L),
                      target_mask=(B, P), labels=(B, P), input_q=(B, L), is_masked=(B, L), is_next=(B,), row=(B,),
                      reversed=(B,), offset=(B,))
        for name, shape in shapes.items():
            assert tuple(batch[name].shape) == shape, name
        assert batch["input_ids"].dtype == batch["labels"].dtype == batch["token_type_ids"].dtype == torch.long
        assert batch["perm_mask"].dtype == batch["target_mapping"].dtype == batch["target_mask"].dtype == torch.float
        assert (batch["offset"] == k * R).all()                               # batch k + 1 continues batch k
        for b in range(B):
            x = batch["input_ids"][b].numpy()
            seg = batch["token_type_ids"][b].numpy()
            perm = batch["perm_mask"][b].numpy() > 0
            tm = batch["target_mapping"][b].numpy()
            chosen = batch["is_masked"][b].numpy()
            row = rows[batch["row"][b]]
            row = row[::-1] if batch["reversed"][b] else row
            assert bool(batch["reversed"][b]) == (cfg["bi_data"] and b >= B // 2)
            np.testing.assert_array_equal(x[:R], row[k * R:(k + 1) * R])     # the stream, continued
            # layout: reuse, A, <sep>, B, <sep>, <cls> with segments 0..0 1..1 2
            a_len = int((seg[R:] == plm_data.SEG_A).sum()) - 1
            assert a_len >= 1 and (np.diff(seg) >= 0).all() and seg[-1] == plm_data.SEG_CLS
            assert (seg == plm_data.SEG_CLS).sum() == 1 and seg[:R + a_len + 1].max() == plm_data.SEG_A
            func = np.zeros(L, dtype=bool)
            func[[R + a_len, L - 2, L - 1]] = True
            assert (x[func] == [SEP, SEP, CLS]).all() and not np.isin(x[~func], [SEP, CLS]).any()
            np.testing.assert_array_equal(x[R:R + a_len], row[(k + 1) * R:(k + 1) * R + a_len])  # A follows
            # exactly num_predict chosen, ceil half in the reused part; functional tokens never targets
            assert chosen.sum() == P and chosen[:R].sum() == P - P // 2
            target = chosen & ~func
            np.testing.assert_array_equal(batch["input_q"][b].numpy() > 0, target)
            n_t = int(target.sum())
            assert batch["target_mask"][b].tolist() == [1.0] * n_t + [0.0] * (P - n_t)
            # target_mapping: one-hot rows at the targets in increasing position, then zero rows
            assert set(np.unique(tm)) <= {0.0, 1.0} and (tm[:n_t].sum(1) == 1).all() and (tm[n_t:] == 0).all()
            pos = tm[:n_t].argmax(1)
            np.testing.assert_array_equal(pos, np.flatnonzero(target))
            assert batch["labels"][b, :n_t].tolist() == x[pos].tolist()
            assert (batch["labels"][b, n_t:] == -100).all()
            # the reused part never sees the rest; the rest sees all of the reused part
            assert perm[:R, R:].all() and not perm[R:, :R].any()
            # one order per part, block by block, with one offset permutation shared by the blocks
            for lo, hi in ((0, R), (R, L)):
                part = slice(lo, hi)
                p_ = perm[part, part]
                ctx = ~chosen[part] & ~func[part]
                m = np.flatnonzero(~ctx)
                for i in np.flatnonzero(ctx):
                    np.testing.assert_array_equal(~p_[i], ctx)              # context sees exactly the context
                assert all(p_[i, i] == (not func[lo + i]) for i in m)        # targets blind to themselves
                sub = ~p_[np.ix_(m, m)]
                np.fill_diagonal(sub, False)
                assert ((sub ^ sub.T) | np.eye(len(m), dtype=bool)).all()   # a strict total order on m
                rank = sub.sum(1)
                assert sorted(rank) == list(range(len(m)))
                np.testing.assert_array_equal(sub, rank[None, :] < rank[:, None])
                blocks, offs = m // cfg["perm_size"], m % cfg["perm_size"]
                assert (np.diff(blocks[np.argsort(rank)]) >= 0).all()       # blocks in order
                before = {}
                for i in range(len(m)):
                    for j in range(len(m)):
                        if blocks[i] == blocks[j] and offs[i] != offs[j]:
                            key = (offs[i], offs[j])
                            assert before.setdefault(key, rank[i] < rank[j]) == (rank[i] < rank[j])
            # at any depth: no key a target may see has itself (through any chain) seen the target
            content = ~perm | np.eye(L, dtype=bool)                          # the content stream sees itself
            for t in np.flatnonzero(target):
                assert perm[t, t]
                assert not reach(content, ~perm[t])[t]


# ------------------------------------------------------------------------- (c) blindness at depth, on the model
def tiny_model(n_layer: int, *, reuse_len: int, bi_data: bool):
    import xlref
    config = xlref.XLNetConfig(vocab_size=VOCAB, d_model=16, n_layer=n_layer, n_head=2, d_inner=32, dropout=0.0,
                               mem_len=reuse_len, reuse_len=reuse_len, bi_data=bi_data)
    torch.manual_seed(n_layer)
    model = xlref.XLNetModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)                                              # scaled up: leaks would show
    return model


def query_out(model, batch, input_ids, mems=None, perm_mask=None):
    with torch.no_grad():
        return model(input_ids, perm_mask=batch["perm_mask"] if perm_mask is None else perm_mask,
                     target_mapping=batch["target_mapping"], token_type_ids=batch["token_type_ids"], mems=mems,
                     use_mems=True)


@pytest.mark.parametrize("n_layer", [2, 3])
def test_query_stream_blind_to_its_target_at_depth(n_layer):
    cfg = dict(seq_len=16, reuse_len=8, num_predict=6, bsz=2, bi_data=True, mask_alpha=6, mask_beta=1, perm_size=4)
    ids, sents = stream(11, 200)
    batches = build(ids, sents, cfg, rng=np.random.RandomState(0))[:2]
    model = tiny_model(n_layer, reuse_len=8, bi_data=True)
    mems, checked = None, 0
    for batch in batches:                                                    # batch 2 with batch 1's memory
        base = query_out(model, batch, batch["input_ids"], mems)
        for b in range(cfg["bsz"]):
            for k in range(int(batch["target_mask"][b].sum())):
                pos = int(batch["target_mapping"][b, k].argmax())
                changed = batch["input_ids"].clone()
                changed[b, pos] = 9 + (changed[b, pos] - 9 + 17) % (VOCAB - 9)
                out = query_out(model, batch, changed, mems)
                assert torch.equal(out.last_hidden_state[b, k], base.last_hidden_state[b, k]), (b, k, pos)
                # the content stream at that position does change: the token matters elsewhere
                with torch.no_grad():
                    h = [model(x, perm_mask=batch["perm_mask"], token_type_ids=batch["token_type_ids"],
                               mems=mems).last_hidden_state[b, pos] for x in (batch["input_ids"], changed)]
                assert not torch.equal(h[0], h[1])
                checked += 1
        mems = base.mems
    assert checked >= 2 * 2 * 3


@pytest.mark.parametrize("n_layer", [1, 2, 3])
def test_a_leak_two_hops_away_shows_only_at_depth(n_layer):
    "Open perm_mask[j, t] for a key j that target t sees: layer 1 is still blind, layer 2 is not."
    cfg = dict(seq_len=16, reuse_len=8, num_predict=6, bsz=2, bi_data=True, mask_alpha=6, mask_beta=1, perm_size=4)
    ids, sents = stream(11, 200)
    batch = build(ids, sents, cfg, rng=np.random.RandomState(0))[0]
    model = tiny_model(n_layer, reuse_len=8, bi_data=True)
    b, k = 0, 0
    t = int(batch["target_mapping"][b, k].argmax())
    j = int(np.flatnonzero(batch["perm_mask"][b, t].numpy() == 0)[0])      # a key t may see
    leaky = batch["perm_mask"].clone()
    leaky[b, j, t] = 0.0                                                     # ... which now sees t
    changed = batch["input_ids"].clone()
    changed[b, t] = 9 + (changed[b, t] - 9 + 17) % (VOCAB - 9)
    base = query_out(model, batch, batch["input_ids"], perm_mask=leaky)
    out = query_out(model, batch, changed, perm_mask=leaky)
    same = torch.equal(out.last_hidden_state[b, k], base.last_hidden_state[b, k])
    assert same == (n_layer == 1)


# ------------------------------------------------------------------------- (d) transformers' collator differs
class TinyTokenizer:
    "What DataCollatorForPermutationLanguageModeling reads from a tokenizer, with the original's special ids."
    mask_token, mask_token_id = "<mask>", MASK
    _pad_token, pad_token_id = "<pad>", PAD

    def get_special_tokens_mask(self, ids, already_has_special_tokens=False):
        return [int(i in (SEP, CLS)) for i in ids]


def test_transformers_collator_differences():
    from transformers import DataCollatorForPermutationLanguageModeling
    cfg = dict(seq_len=16, reuse_len=8, num_predict=6, bsz=4, bi_data=False, mask_alpha=6, mask_beta=1, perm_size=8)
    ids, sents = stream(2, 400)
    ours = build(ids, sents, cfg, rng=np.random.RandomState(1))[0]
    L, B = cfg["seq_len"], cfg["bsz"]
    collator = DataCollatorForPermutationLanguageModeling(tokenizer=TinyTokenizer())
    torch.manual_seed(0)
    hf = collator([row.tolist() for row in ours["input_ids"]])
    # 1. no segment ids, no target mask, no stream bookkeeping
    assert set(hf) == {"input_ids", "perm_mask", "target_mapping", "labels"}
    # 2. the collator replaces the chosen tokens by <mask> in the input; the original keeps real tokens
    chosen = hf["labels"] != -100
    assert chosen.any() and (hf["input_ids"][chosen] == MASK).all()
    assert torch.equal(hf["input_ids"][~chosen], ours["input_ids"][~chosen])
    assert not (ours["input_ids"] == MASK).any()
    # 3. target_mapping is the identity (L rows, labels -100 elsewhere); ours is compact in position order
    assert torch.equal(hf["target_mapping"], torch.eye(L).expand(B, L, L))
    assert hf["labels"].shape == (B, L) and ours["labels"].shape == (B, cfg["num_predict"])
    # 4. <sep>/<cls> keys are visible to every query in the collator; the original hides them from
    #    every query before them in the order (here: from the context tokens of the rest)
    func = (ours["input_ids"] == SEP) | (ours["input_ids"] == CLS)
    assert (hf["perm_mask"].transpose(1, 2)[func] == 0).all()
    assert (ours["perm_mask"].transpose(1, 2)[func] == 1).any(-1).all()
    # 5. no reuse separation: the collator's first half sees the second half's unchosen tokens
    assert (hf["perm_mask"][:, :L // 2, L // 2:] == 0).any()
    assert (ours["perm_mask"][:, :cfg["reuse_len"], cfg["reuse_len"]:] == 1).all()
    # 6. the number of targets is not fixed there; ours always chooses num_predict
    assert (ours["is_masked"].sum(1) == cfg["num_predict"]).all()
    # 7. odd lengths are refused
    with pytest.raises(ValueError, match="even"):
        collator([row[:L - 1].tolist() for row in ours["input_ids"]])


# ------------------------------------------------------------------------- (e) bad arguments
BASE = dict(seq_len=16, reuse_len=8, num_predict=6, bsz=2, bi_data=False, mask_alpha=6, mask_beta=1, perm_size=4,
            sep_id=SEP, cls_id=CLS)


@pytest.mark.parametrize("override, error, match", [
    (dict(seq_len="16"), TypeError, "seq_len must be an int"),
    (dict(seq_len=16.0), TypeError, "seq_len must be an int"),
    (dict(reuse_len=True), TypeError, "reuse_len must be an int"),
    (dict(seq_len=8), ValueError, "must exceed reuse_len"),
    (dict(seq_len=11), ValueError, "must exceed reuse_len"),
    (dict(reuse_len=0), ValueError, "reuse_len must be >= 1"),
    (dict(num_predict=0), ValueError, "num_predict must be >= 1"),
    (dict(num_predict=17), ValueError, "num_predict=17 is too large"),
    (dict(perm_size=3), ValueError, "perm_size=3 must divide"),
    (dict(perm_size=16), ValueError, "perm_size=16 must divide"),
    (dict(perm_size=0), ValueError, "perm_size must be >= 1"),
    (dict(bsz=0), ValueError, "bsz must be >= 1"),
    (dict(bsz=3, bi_data=True), ValueError, "even bsz"),
    (dict(bi_data=1), TypeError, "bi_data must be a bool"),
    (dict(mask_alpha=1, mask_beta=2), ValueError, "mask_alpha .* must be >= mask_beta"),
    (dict(mask_beta=0), ValueError, "mask_beta must be >= 1"),
    (dict(max_gram=0), ValueError, "max_gram must be >= 1"),
    (dict(sep_id=CLS), ValueError, "must differ"),
    (dict(sep_id=-1), ValueError, "sep_id must be >= 0"),
    (dict(rng=np.random.default_rng(0)), TypeError, "RandomState"),
    (dict(rng=None), TypeError, "RandomState"),
    (dict(split_rng="x"), TypeError, "split_rng must be"),
    (dict(perm_rng=random.Random(0)), TypeError, "perm_rng must be"),
    (dict(is_start="abc"), TypeError, "is_start must be"),
    (dict(ids=[]), ValueError, "ids is empty"),
    (dict(ids=np.zeros(300)), TypeError, "ids must hold integers"),
    (dict(ids=np.zeros((2, 150), dtype=int)), ValueError, "ids must be 1-D"),
    (dict(ids="abc"), TypeError, "ids must be a 1-D sequence"),
    (dict(ids=-np.ones(300, dtype=int)), ValueError, "ids must be >= 0"),
    (dict(sent_ids=np.zeros(5, dtype=bool)), ValueError, "sent_ids must have the shape"),
    (dict(sent_ids=np.zeros(300)), TypeError, "sent_ids must be bool or int"),
    (dict(ids=np.arange(9, 39), sent_ids=np.zeros(30, dtype=bool)), ValueError, "fewer than seq_len"),
])
def test_bad_arguments_are_refused_before_iterating(override, error, match):
    ids, sents = np.arange(300) % 50 + 9, (np.arange(300) // 7) % 2 == 0
    args = dict(BASE, rng=np.random.RandomState(0))
    args.update(override)
    ids, sents = args.pop("ids", ids), args.pop("sent_ids", sents)
    if "ids" in override and "sent_ids" not in override:
        sents = np.zeros(np.shape(ids)[:1] if not isinstance(ids, str) else 0, dtype=bool)
    with pytest.raises(error, match=match):
        plm_data.pretraining_samples(ids, sents, **args)                    # raises eagerly, no next() needed


def test_bad_arguments_of_the_parts():
    rng = np.random.RandomState(0)
    with pytest.raises(ValueError, match="loop forever"):
        plm_data.sample_mask([9, 10], goal_num_predict=3, mask_alpha=6, mask_beta=1, rng=rng)
    with pytest.raises(TypeError, match="goal_num_predict must be an int"):
        plm_data.sample_mask([9, 10], goal_num_predict=1.0, mask_alpha=6, mask_beta=1, rng=rng)
    with pytest.raises(ValueError, match="must divide the length"):
        plm_data.local_perm([9] * 6, [9] * 6, np.ones(6, bool), perm_size=4, sep_id=SEP, cls_id=CLS, rng=rng)
    with pytest.raises(TypeError, match="is_masked must be a bool"):
        plm_data.local_perm([9] * 4, [9] * 4, np.ones(4), perm_size=4, sep_id=SEP, cls_id=CLS, rng=rng)
    with pytest.raises(ValueError, match="one shape"):
        plm_data.local_perm([9] * 4, [9] * 3, np.ones(4, bool), perm_size=4, sep_id=SEP, cls_id=CLS, rng=rng)
    with pytest.raises(ValueError, match="tot_len must be >= 1"):
        plm_data.split_a_and_b([9] * 5, [True] * 5, begin_idx=0, tot_len=0, rng=rng)
    with pytest.raises(TypeError, match="rng must be a random.Random"):
        plm_data.split_a_and_b([9] * 5, [True] * 5, begin_idx=0, tot_len=2, rng=0)
    with pytest.raises(ValueError, match="corpus is empty"):
        plm_data.corpus_stream([[], []], eod_id=None)
    with pytest.raises(TypeError, match="eod_id must be an int"):
        plm_data.corpus_stream([[9]], eod_id="7")

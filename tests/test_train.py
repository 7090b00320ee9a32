"""xlref.data (notebook 15) and xlref.train (notebook 16): ordered streams, the speaker task, the config's checks,
the schedule and the parameter groups, exact resume, atomic saves, SIGINT, the command line, and every bad input
refused before an update runs."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import given, strategies as st

import xlref.train as train_module
from xlref.data import LMOrderedBatches, corpus_ids, lm_tokenizer, speaker_task, speeches
from xlref.train import TrainConfig, Trainer, lr_factor, parameter_groups

TINY_TXL = dict(d_model=16, d_embed=16, n_head=2, d_head=8, d_inner=32, n_layer=2, mem_len=8, cutoffs=[], div_val=1,
                dropout=0.1, clamp_len=-1, same_length=False)
TINY_XLNET = dict(d_model=16, n_head=2, d_inner=32, n_layer=2, dropout=0.1)


def lm_config(**overrides):
    return TrainConfig.from_dict({**dict(task="lm", model=TINY_TXL, steps=6, warmup_steps=2, bsz=4, tgt_len=8,
                                         log_every=1, eval_batches=2), **overrides})


# ---------------------------------------------------------------- data

@given(n=st.integers(2, 300), bsz=st.integers(1, 6), tgt_len=st.integers(1, 20))
def test_ordered_batches_read_each_stream_once_in_order(n, bsz, tgt_len):
    ids = torch.arange(n)
    if n // bsz < 2:
        with pytest.raises(ValueError, match="cannot make"):
            LMOrderedBatches(ids, bsz=bsz, tgt_len=tgt_len)
        return
    batches = LMOrderedBatches(ids, bsz=bsz, tgt_len=tgt_len)
    per = n // bsz
    inputs = torch.cat([inp for inp, _ in batches], dim=1)
    assert torch.equal(inputs, torch.arange(bsz * per).view(bsz, per)[:, :-1])   # every input once, in order
    for inp, tgt in batches:
        assert torch.equal(tgt, inp + 1) and inp.shape[1] <= tgt_len


def test_ordered_batches_refuse_bad_arguments():
    for bad in [dict(ids=torch.zeros(3, 4, dtype=torch.long)), dict(ids=torch.zeros(10)), dict(ids=[1, 2, 3])]:
        with pytest.raises(TypeError, match="1-D integer tensor"):
            LMOrderedBatches(bad["ids"], bsz=1, tgt_len=2)
    with pytest.raises(ValueError, match="bsz must be a positive int"):
        LMOrderedBatches(torch.arange(10), bsz=0, tgt_len=2)
    with pytest.raises(IndexError, match="out of range"):
        LMOrderedBatches(torch.arange(10), bsz=1, tgt_len=3)[5]


def test_char_corpus_round_trip():
    text = "ab c\nde\n"
    tok = lm_tokenizer(text, level="char")
    ids = corpus_ids(text, tok)
    assert tok.convert_ids_to_tokens(ids.tolist()) == ["a", "b", " ", "c", "<eos>", "d", "e", "<eos>"]
    with pytest.raises(ValueError, match="'char' or 'word'"):
        lm_tokenizer(text, level="byte")


def test_speeches_and_the_speaker_task():
    text = "A:\nhello there\nfriend\n\nB:\nno\n\nA:\nyes\n\nC:\nmaybe\n\nA:\nfine\n\nB:\nbye\n"
    assert speeches(text)[0] == ("A", "hello there friend")
    labels, train, held = speaker_task(text, n_speakers=2, eval_every=2)
    assert labels == ["A", "B"]
    assert held == [("yes", 0), ("bye", 1)] and ("hello there friend", 0) in train and all(l in (0, 1) for _, l in train)
    with pytest.raises(ValueError, match="fewer than n_speakers"):
        speaker_task(text, n_speakers=5)


# ---------------------------------------------------------------- config, schedule, groups

def test_config_refuses_typos_bad_values_and_missing_keys():
    with pytest.raises(ValueError, match="did you mean 'steps'"):
        TrainConfig.from_dict(dict(task="lm", model={}, stpes=3))
    with pytest.raises(ValueError, match="needs \\['model'\\]"):
        TrainConfig.from_dict(dict(task="lm"))
    for key, value in [("lr", 0), ("bsz", 0), ("schedule", "step"), ("clip", -1), ("bf16", "yes"),
                       ("lr_layer_decay", 1.5), ("warmup_steps", 99)]:
        with pytest.raises(ValueError, match=f"invalid training config {key}="):
            lm_config(**{key: value})
    with pytest.raises(ValueError, match="not a JSON file"):
        path = train_module.Path(os.environ.get("TMPDIR", "/tmp")) / "xlref_not_json.json"
        path.write_text("{task")
        try:
            TrainConfig.from_json_file(path)
        finally:
            path.unlink()


def test_lr_factor_warms_up_then_decays_to_the_floor():
    f = lambda u, s: lr_factor(u, steps=10, warmup_steps=2, schedule=s, min_lr_ratio=0.2)
    assert [f(0, "cosine"), f(1, "cosine")] == [0.5, 1.0]
    assert math.isclose(f(9, "linear"), 0.2 + 0.8 * (1 - 7 / 8)) and f(5, "constant") == 1.0
    assert all(f(u, "cosine") >= f(u + 1, "cosine") for u in range(1, 9))


def test_parameter_groups_scale_layers_and_spare_biases_and_norms():
    from xlref import XLNetConfig, XLNetForSequenceClassification
    model = XLNetForSequenceClassification(XLNetConfig(vocab_size=20, **TINY_XLNET, num_labels=2))
    groups = parameter_groups(model, lr=1.0, weight_decay=0.1, lr_layer_decay=0.5)
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert by_param[id(named["transformer.layer.0.ff.layer_1.weight"])]["lr"] == 0.5
    assert by_param[id(named["transformer.layer.1.ff.layer_1.weight"])]["lr"] == 1.0
    assert by_param[id(named["transformer.word_embedding.weight"])]["lr"] == 1.0
    assert by_param[id(named["transformer.layer.0.rel_attn.layer_norm.weight"])]["weight_decay"] == 0.0
    assert by_param[id(named["transformer.layer.0.ff.layer_1.bias"])]["weight_decay"] == 0.0
    assert by_param[id(named["transformer.layer.0.ff.layer_1.weight"])]["weight_decay"] == 0.1
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_the_originals_gradient_scaling_is_cancelled_by_adam():
    "zihangdai/xlnet scales a layer's gradient by rate ** depth before Adam, which divides the scale away."
    def moved(scale):
        w = torch.nn.Parameter(torch.zeros(4))
        opt = torch.optim.Adam([w], lr=0.01)
        for s in range(3):
            w.grad = scale * torch.tensor([1.0, -2.0, 0.5, 3.0]) * (s + 1)
            opt.step()
        return w.detach()
    torch.testing.assert_close(moved(0.75 ** 11), moved(1.0), rtol=1e-4, atol=0)


# ---------------------------------------------------------------- training, resume, saving

def losses(rows):
    return [r["loss"] for r in rows if "loss" in r]


def task_config(task):
    if task == "lm":
        return lm_config()
    if task == "plm":
        return TrainConfig.from_dict(dict(task="plm", model={**TINY_XLNET, "mem_len": 16}, steps=6, warmup_steps=2,
                                          bsz=4, seq_len=32, reuse_len=16, num_predict=6, perm_size=16, log_every=1,
                                          spiece_vocab_size=300, eval_batches=1))
    return TrainConfig.from_dict(dict(task="classify", model=TINY_XLNET, steps=6, warmup_steps=2, bsz=8, log_every=1,
                                      spiece_vocab_size=200, max_length=24, eval_batches=1))


@pytest.mark.parametrize("task", ["lm", "plm", "classify"])
def test_stop_and_resume_equals_one_run(task, tmp_path):
    "N updates straight == k updates, save, resume, N - k updates: the same losses and weights, bit for bit."
    config = task_config(task)
    straight = Trainer(config, tmp_path / "a", progress=False)
    straight.train()
    first = Trainer(config, tmp_path / "b", progress=False)
    first.train(until=2)
    resumed = Trainer.resume(tmp_path / "b", progress=False)
    assert resumed.step == 2
    resumed.train()
    assert losses(straight.history) == losses(resumed.history) and len(losses(resumed.history)) == 6
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    written = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert written == resumed.history                    # the log holds each row once, across the stop


def test_lm_loss_counts_the_boundary_target_and_memory_carries(tmp_path):
    trainer = Trainer(lm_config(), tmp_path, progress=False)
    loss, n = trainer.task.loss(trainer.model, trainer.device)
    assert n == 4 * 8 and trainer.task.mems is not None and trainer.task.mems[0].shape == (8, 4, 16)
    assert torch.isfinite(loss)


def test_a_failed_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    trainer = Trainer(lm_config(), tmp_path, progress=False)
    trainer.train(until=2)
    before = (tmp_path / "train_state.pt").read_bytes()

    def full_disk(folder, files, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(train_module, "write_files_atomically", full_disk)
    with pytest.raises(OSError, match="No space left"):
        trainer.train(until=4)
    assert (tmp_path / "train_state.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_resume_refuses_another_config_or_a_missing_run(tmp_path):
    Trainer(lm_config(), tmp_path / "run", progress=False).train(until=1)
    with pytest.raises(ValueError, match=r"another config: \['lr'\] differ"):
        Trainer.resume(tmp_path / "run", config=lm_config(lr=0.5))
    assert Trainer.resume(tmp_path / "run", config=lm_config(steps=8), progress=False).config.steps == 8
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        Trainer.resume(tmp_path / "empty")
    with pytest.raises(FileExistsError, match="already holds a run"):
        Trainer(lm_config(), tmp_path / "run")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train_state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        Trainer.resume(tmp_path / "bad")


def test_bad_data_or_model_fields_fail_before_any_update(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus"):
        Trainer(lm_config(corpus="no_such_corpus"), tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="smaller than the tokenizer's"):
        Trainer(lm_config(model={**TINY_TXL, "vocab_size": 10}), tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="unknown TransfoXLConfig fields"):
        Trainer(lm_config(model={**TINY_TXL, "d_modle": 16}), tmp_path / "c", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_bf16_autocast_trains(tmp_path):
    trainer = Trainer(lm_config(bf16=True, steps=2, warmup_steps=1), tmp_path, progress=False)
    rows = trainer.train()
    assert all(math.isfinite(l) for l in losses(rows)) and trainer.task.mems[0].dtype == torch.float32


def test_evaluation_with_a_longer_memory_and_same_length(tmp_path):
    trainer = Trainer(lm_config(eval_mem_len=16, eval_same_length=True), tmp_path, progress=False)
    result = trainer.evaluate()
    assert set(result) == {"eval_loss", "eval_bpc"} and trainer.model.transformer.mem_len == 8
    assert trainer.model.transformer.same_length is False


# ---------------------------------------------------------------- the command line

def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "xlref.train", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_trains_refuses_and_resumes(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps(lm_config(steps=2, warmup_steps=1).to_dict()))
    ok = run_cli(config, "--out", tmp_path / "run", "--no-progress")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.splitlines()[-1])["step"] == 2
    again = run_cli(config, "--out", tmp_path / "run")
    assert again.returncode == 2 and "already holds a run" in again.stderr
    config.write_text(json.dumps({**lm_config(steps=3, warmup_steps=1).to_dict()}))
    more = run_cli(config, "--out", tmp_path / "run", "--resume", "--no-progress")
    assert more.returncode == 0, more.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"task": "lm", "model": {}, "stpes": 1}))
    refused = run_cli(bad, "--out", tmp_path / "other")
    assert refused.returncode == 2 and "did you mean 'steps'" in refused.stderr and not (tmp_path / "other").exists()


@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="needs POSIX signals")
def test_sigint_saves_a_resumable_checkpoint(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps(lm_config(steps=100000, warmup_steps=1, log_every=1).to_dict()))
    proc = subprocess.Popen([sys.executable, "-m", "xlref.train", str(config), "--out", str(tmp_path / "run"),
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / "metrics.jsonl").exists():
            assert time.monotonic() < deadline and proc.poll() is None, "the run did not start"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    resumed = Trainer.resume(tmp_path / "run", progress=False)
    assert 0 < resumed.step < 100000 and "resume with --resume" in err


# ---------------------------------------------------------------- several processes

def test_rank_rows_share_the_batch():
    from xlref.train import rank_rows
    assert [rank_rows(8, r, 2).tolist() for r in range(2)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [rank_rows(8, r, 2, bi_data=True).tolist() for r in range(2)] == [[0, 1, 4, 5], [2, 3, 6, 7]]
    with pytest.raises(ValueError, match="does not divide evenly"):
        rank_rows(6, 0, 4)
    with pytest.raises(ValueError, match="each half"):
        rank_rows(6, 0, 2, bi_data=True)


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
    "torchrun with 2 processes (gloo) == 1 process with the same global batch; tail clusters without targets included."
    from safetensors.torch import load_file
    config = tmp_path / "c.json"
    model = {**TINY_TXL, "dropout": 0.0, "cutoffs": [10, 30]}    # dropout off: 2 processes draw other masks
    config.write_text(json.dumps(lm_config(model=model, steps=5, warmup_steps=1).to_dict()))
    one = run_cli(config, "--out", tmp_path / "one", "--no-progress")
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "xlref.train", str(config), "--out", str(tmp_path / "two"), "--no-progress"],
                         capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stdout + two.stderr
    assert len(two.stdout.strip().splitlines()) == 1                 # one process reports
    rows = lambda d: [json.loads(line) for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
    a, b = losses(rows("one")), losses(rows("two"))
    assert len(a) == len(b) == 5
    assert all(math.isclose(x, y, rel_tol=1e-5) for x, y in zip(a, b)), (a, b)
    w1, w2 = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    for key in w1:
        torch.testing.assert_close(w1[key], w2[key], rtol=1e-4, atol=1e-6)
    assert (tmp_path / "two" / "train_state.rank1.pt").is_file()


# ---------------------------------------------------------------- gradient checkpointing

def _grads(model, **inputs):
    torch.manual_seed(1)                                        # the same dropout masks for both passes
    model.zero_grad()
    model(**inputs).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_gives_the_same_gradients_for_both_models():
    from xlref import TransfoXLConfig, TransfoXLLMHeadModel, XLNetConfig, XLNetLMHeadModel
    torch.manual_seed(0)
    ids = torch.randint(0, 50, (2, 6))
    txl = TransfoXLLMHeadModel(TransfoXLConfig(vocab_size=50, cutoffs=[20], d_model=16, d_embed=16, n_head=2, d_head=8,
                                               d_inner=32, n_layer=3, mem_len=4, dropout=0.2, div_val=1)).train()
    perm = torch.zeros(2, 6, 6)
    perm[:, :, -1] = 1
    target = torch.zeros(2, 1, 6)
    target[:, 0, -1] = 1
    xlnet = XLNetLMHeadModel(XLNetConfig(vocab_size=50, d_model=16, n_head=2, d_inner=32, n_layer=3, mem_len=4,
                                         dropout=0.2)).train()
    cases = [(txl, dict(input_ids=ids, labels=ids)),
             (xlnet, dict(input_ids=ids, perm_mask=perm, target_mapping=target, labels=ids[:, -1:],
                          token_type_ids=torch.zeros_like(ids)))]
    for model, inputs in cases:
        plain = _grads(model, **inputs)
        model.gradient_checkpointing_enable()
        assert model.is_gradient_checkpointing
        checkpointed = _grads(model, **inputs)
        assert plain.keys() == checkpointed.keys() and len(plain) > 10
        for name in plain:
            assert torch.equal(plain[name], checkpointed[name]), name
        model.gradient_checkpointing_disable()
        assert not model.is_gradient_checkpointing
    with pytest.raises(ValueError, match="takes only use_reentrant"):
        txl.gradient_checkpointing_enable({"preserve": True})


def test_training_with_gradient_checkpointing_equals_training_without(tmp_path):
    a = Trainer(lm_config(steps=3, warmup_steps=1), tmp_path / "a", progress=False)
    plain = losses(a.train())                                   # each run draws from the generators its seed set
    b = Trainer(lm_config(steps=3, warmup_steps=1, gradient_checkpointing=True), tmp_path / "b", progress=False)
    assert b.model.is_gradient_checkpointing and not a.model.is_gradient_checkpointing
    assert losses(b.train()) == plain


# ---------------------------------------------------------------- TensorBoard

class _RecordingWriter:
    "Stands in for torch.utils.tensorboard.SummaryWriter: records what the trainer writes."
    made = []

    def __init__(self, log_dir):
        self.log_dir, self.scalars = log_dir, []
        _RecordingWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        pass


def test_metrics_go_to_tensorboard_when_it_is_there(tmp_path, monkeypatch):
    import types
    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = _RecordingWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    _RecordingWriter.made.clear()
    Trainer(lm_config(steps=2, warmup_steps=1), tmp_path / "a", progress=False).train()
    (writer,) = _RecordingWriter.made
    assert writer.log_dir == str(tmp_path / "a" / "tensorboard")
    assert ("loss", pytest.approx(writer.scalars[0][1]), 1) in writer.scalars
    assert {tag for tag, _, _ in writer.scalars} == {"loss", "lr", "tokens_per_s", "eval_loss", "eval_bpc"}
    Trainer(lm_config(steps=2, warmup_steps=1, tensorboard=False), tmp_path / "b", progress=False).train()
    assert len(_RecordingWriter.made) == 1                      # tensorboard=False: none


def test_tensorboard_asked_for_but_missing_is_an_error_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)      # import fails: not installed
    with pytest.raises(ValueError, match="pip install tensorboard"):
        Trainer(lm_config(tensorboard=True), tmp_path / "a", progress=False)
    rows = Trainer(lm_config(steps=1, warmup_steps=1), tmp_path / "b", progress=False).train()   # None: silently without
    assert losses(rows)


def test_fine_tuning_starts_from_a_pretrained_run(tmp_path):
    "init_from: the classifier starts from the pretraining run's network and tokenizer (its head new), as a recipe does."
    from safetensors.torch import load_file
    pre = task_config("plm")
    Trainer(TrainConfig.from_dict(dict(pre.to_dict(), steps=2)), tmp_path / "pre", progress=False).train()
    fine = TrainConfig.from_dict(dict(task="classify", model={"dropout": 0.0}, init_from=str(tmp_path / "pre"), steps=1,
                                      warmup_steps=1, bsz=8, max_length=24, eval_batches=1))
    with pytest.warns(UserWarning, match="missing keys"):
        trainer = Trainer(fine, tmp_path / "fine", progress=False)
    saved = load_file(tmp_path / "pre" / "model.safetensors")
    own = trainer.model.state_dict()
    shared = [k for k in saved if k.startswith("transformer.")]
    assert shared and all(torch.equal(saved[k], own[k]) for k in shared)
    assert trainer.task.tokenizer.convert_ids_to_tokens(list(range(len(trainer.task.tokenizer)))) == \
        trainer.task.tokenizer.__class__.from_pretrained(tmp_path / "pre").convert_ids_to_tokens(
            list(range(len(trainer.task.tokenizer))))
    assert trainer.model.config.num_labels == 4
    trainer.train()


def test_the_remaining_refusals(tmp_path):
    with pytest.raises(TypeError, match="must be a TrainConfig"):
        Trainer({"task": "lm"}, tmp_path / "a")
    with pytest.raises(ValueError, match="no such CUDA device"):
        Trainer(lm_config(device="cuda:7"), tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="is not a device"):
        Trainer(lm_config(device="gpu"), tmp_path / "c", progress=False)
    trainer = Trainer(lm_config(), tmp_path / "d", progress=False)
    for bad in (99, -1, 2.5, True):
        with pytest.raises(ValueError, match="until must be an int"):
            trainer.train(until=bad)
    (tmp_path / "e").mkdir()
    torch.save({"config": lm_config().to_dict(), "step": 1}, tmp_path / "e" / "train_state.pt")
    with pytest.raises(ValueError, match="lacks"):
        Trainer.resume(tmp_path / "e")
    assert not any((tmp_path / name).exists() for name in ("a", "b", "c"))


def test_a_checkpoint_whose_weights_do_not_fit_is_refused(tmp_path):
    Trainer(lm_config(), tmp_path / "run", progress=False).train(until=1)
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)
    state["model"].pop(next(iter(state["model"])))                       # a weight missing: not this model's
    torch.save(state, tmp_path / "run" / "train_state.pt")
    with pytest.raises(ValueError, match="weights do not fit this model"):
        Trainer.resume(tmp_path / "run", progress=False)

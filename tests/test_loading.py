"""Loading and saving that never hang, never half-write and never ignore an argument (xlref.hub, notebook
14; the input checks of notebook 04, xlref.base): the hub behind a silent server, offline mode and a fake hub on
127.0.0.1 serving checkpoints made here; FIFOs; every from_pretrained argument of transformers 4.35,
honoured or refused; typos; saves that fail on a full disk or a read-only directory; file modes;
booleans in tokenizer files; and the inputs that must be refused by name."""
import errno
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

import xlref.base
import xlref.hub as hub
from _hf import tiny_transfo_xl, transformers
from _net import SilentServer, returns_within
from xlref.heads import XLNetForQuestionAnswering, XLNetForQuestionAnsweringSimple, XLNetForSequenceClassification
from xlref.tokenization import XLNetTokenizer
from xlref.transfo_xl import TransfoXLConfig, TransfoXLForSequenceClassification, TransfoXLModel
from xlref.xlnet import XLNetConfig, XLNetModel

REPO = Path(__file__).resolve().parents[1]


def tiny_xlnet(**kw):
    return XLNetConfig(**{**dict(vocab_size=40, d_model=16, n_layer=2, n_head=2, d_inner=32, mem_len=None), **kw})


@pytest.fixture
def saved(tmp_path):
    "A Transformer-XL checkpoint saved here; returns (model, folder)."
    model = TransfoXLModel(tiny_transfo_xl()).eval()
    model.save_pretrained(tmp_path / "ckpt")
    return model, tmp_path / "ckpt"


@pytest.fixture(autouse=True)
def _clean_hub_environment(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_HUB_ETAG_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)


def _weights_equal(a, b):
    "Same keys, same values (xlref and transformers name their keys alike)."
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- the hub: bounded, offline, and real on a local hub

@pytest.fixture
def silent():
    with SilentServer() as s:
        yield s


def test_a_hub_that_never_answers_fails_within_the_timeout(silent, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", silent.url)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "0.5")
    start = time.perf_counter()
    with pytest.raises(OSError, match=r"could not load 'xlnet/xlnet-base-cased'.*the hub could not provide it from the hub"):
        XLNetModel.from_pretrained("xlnet/xlnet-base-cased", cache_dir=tmp_path)
    assert time.perf_counter() - start < 10 and silent.accepted >= 1


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "local_files_only"])
def test_offline_mode_never_touches_the_network(silent, monkeypatch, tmp_path, how):
    monkeypatch.setenv("HF_ENDPOINT", silent.url)
    kwargs = {"local_files_only": True} if how == "local_files_only" else {}
    if how != "local_files_only":
        monkeypatch.setenv(how, "1")
    start = time.perf_counter()
    with pytest.raises(OSError, match="in the local hub cache"):
        XLNetModel.from_pretrained("xlnet/xlnet-base-cased", cache_dir=tmp_path, **kwargs)
    with pytest.raises(OSError, match="in the local hub cache"):
        XLNetConfig.from_pretrained("xlnet/xlnet-base-cased", cache_dir=tmp_path, **kwargs)
    assert time.perf_counter() - start < 2 and silent.accepted == 0


def test_a_bad_timeout_setting_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "soon")
    with pytest.raises(OSError, match="HF_HUB_ETAG_TIMEOUT='soon' must be a positive number"):
        XLNetModel.from_pretrained("someone/model", cache_dir=tmp_path)


class _FakeHub:
    "A hub on 127.0.0.1 serving {repo: {revision: folder}} as huggingface_hub expects (HEAD and GET .../resolve/...)."
    def __init__(self, repos):
        self.repos, self.requests = repos, []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self, body):
                fake.requests.append((self.command, self.path))
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.path.split("?")[0])
                folder = m and fake.repos.get(m.group(1), {}).get(m.group(2))
                f = folder and Path(folder) / m.group(3)
                if not f or not f.is_file():
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound" if folder else "RepoNotFound")
                    self.end_headers()
                    return
                data = f.read_bytes()
                self.send_response(200)
                self.send_header("X-Repo-Commit", hashlib.sha1(f"{m.group(1)}@{m.group(2)}".encode()).hexdigest())
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self):
                self._serve(False)

            def do_GET(self):
                self._serve(True)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_real_hub_path_on_a_local_hub(tmp_path, monkeypatch, saved):
    "hf_hub_download against a hub on this machine: revision, subfolder, cache_dir, the .bin fallback, then offline."
    model, folder = saved
    bin_only = tmp_path / "bin_only" / "sub"
    model.save_pretrained(bin_only, safe_serialization=False)
    fake = _FakeHub({"someone/tiny": {"main": folder, "v1": folder}, "someone/old": {"main": bin_only.parent}})
    try:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        cache = tmp_path / "cache"
        got = TransfoXLModel.from_pretrained("someone/tiny", cache_dir=cache, revision="v1")
        assert _weights_equal(got, model)
        assert ("GET", "/someone/tiny/resolve/v1/model.safetensors") in fake.requests
        old = TransfoXLModel.from_pretrained("someone/old", cache_dir=cache, subfolder="sub")   # no safetensors: .bin
        assert _weights_equal(old, model)
        assert ("GET", "/someone/old/resolve/main/sub/pytorch_model.bin") in fake.requests
        with pytest.raises(OSError, match="the repo has none of"):
            TransfoXLModel.from_pretrained("someone/tiny", cache_dir=cache, use_safetensors=False)
        with pytest.raises(OSError, match="hub could not provide it"):
            TransfoXLModel.from_pretrained("someone/missing", cache_dir=cache)
        assert TransfoXLConfig.from_pretrained("someone/tiny", cache_dir=cache, revision="v1") == \
            TransfoXLConfig.from_pretrained(folder)
    finally:
        fake.close()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")                     # the server is gone: the cache still serves
    assert _weights_equal(TransfoXLModel.from_pretrained("someone/tiny", cache_dir=cache, revision="v1"), model)


# ---------------------------------------------------------------- files that are not what they seem

@pytest.mark.parametrize("name", [hub.SAFE_WEIGHTS_NAME, hub.WEIGHTS_NAME, hub.CONFIG_NAME])
def test_a_fifo_in_a_checkpoint_is_refused_without_blocking(saved, name):
    model, folder = saved
    if name == hub.WEIGHTS_NAME:
        (folder / hub.SAFE_WEIGHTS_NAME).unlink()
    else:
        (folder / name).unlink()
    os.mkfifo(folder / name)
    with pytest.raises(OSError, match="not a regular file"):
        returns_within(10, lambda: TransfoXLModel.from_pretrained(folder))


@pytest.mark.parametrize("content, match", [(b"\xff\xfe{}", "not UTF-8"), (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
                                            (b"{not json", "not valid JSON")])
def test_config_files_that_cannot_be_configs_name_the_file(tmp_path, content, match):
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path / 'config.json'))}.*{match}|{match}"):
        TransfoXLConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize("key", ["validate", "__dict__", "to_json_string", "use_return_dict", "to_dict", "defaults"])
def test_config_keys_that_hide_methods_are_refused_by_name(saved, key):
    _, folder = saved
    d = json.loads((folder / "config.json").read_text())
    d[key] = 1
    (folder / "config.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=rf"config key '{re.escape(key)}' would hide"):
        TransfoXLModel.from_pretrained(folder)


def test_an_xlnet_config_without_model_type_is_not_read_as_transformer_xl(tmp_path):
    d = tiny_xlnet().to_dict()
    del d["model_type"]
    (tmp_path / "config.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="looks like a 'xlnet' config"):
        TransfoXLConfig.from_pretrained(tmp_path)
    assert XLNetConfig.from_pretrained(tmp_path).d_model == 16                 # the right class reads it


def test_a_checkpoint_of_another_model_is_an_error_not_a_random_model(tmp_path):
    XLNetModel(tiny_xlnet()).save_pretrained(tmp_path / "x")
    with pytest.raises(ValueError, match="shares no key with TransfoXLModel"):
        TransfoXLModel.from_pretrained(tmp_path / "x", config=tiny_transfo_xl())


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_non_float_weights_where_floats_belong_are_refused(saved, dtype):
    model, folder = saved
    from safetensors.torch import load_file, save_file
    sd = load_file(folder / hub.SAFE_WEIGHTS_NAME)
    key = "word_emb.emb_layers.0.weight"
    sd[key] = torch.ones_like(sd[key]).to(dtype)
    save_file(sd, folder / hub.SAFE_WEIGHTS_NAME)
    with pytest.raises(ValueError, match=rf"{re.escape(key)} holds {dtype} values.*refusing to cast"):
        TransfoXLModel.from_pretrained(folder)


# ---------------------------------------------------------------- transformers' from_pretrained arguments

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, "float16", "torch.bfloat16"])
def test_torch_dtype_converts_the_model(saved, dtype):
    model, folder = saved
    got = TransfoXLModel.from_pretrained(folder, torch_dtype=dtype)
    expected = getattr(torch, dtype.removeprefix("torch.")) if isinstance(dtype, str) else dtype
    assert all(p.dtype == expected for p in got.parameters()) and got.config.torch_dtype == str(expected)[6:]
    theirs = transformers.TransfoXLModel.from_pretrained(folder, torch_dtype=expected)   # as 4.35 does
    assert next(theirs.parameters()).dtype == expected


def test_a_bf16_checkpoint_keeps_its_dtype_with_auto(tmp_path):
    model = TransfoXLModel(tiny_transfo_xl()).to(torch.bfloat16).eval()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert TransfoXLModel.from_pretrained(tmp_path).dtype == torch.float32             # the default, as 4.35
    again = TransfoXLModel.from_pretrained(tmp_path, torch_dtype="auto")
    assert again.dtype == torch.bfloat16 and _weights_equal(again, model)


@pytest.mark.parametrize("bad", [torch.int64, "float17", "int8", 3, torch.bool])
def test_torch_dtype_must_be_a_float_dtype(saved, bad):
    with pytest.raises(ValueError, match="torch_dtype must be None, 'auto' or a floating-point"):
        TransfoXLModel.from_pretrained(saved[1], torch_dtype=bad)


def test_device_map_puts_the_model_on_one_device(saved):
    for device_map in ["cpu", torch.device("cpu"), {"": "cpu"}]:
        assert TransfoXLModel.from_pretrained(saved[1], device_map=device_map).device == torch.device("cpu")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for bad, match in [(f"cuda:{n + 6}", "CUDA device"), (n + 6, "CUDA device"), ("auto", "spreads a model"),
                       ({"transformer": "cpu", "lm_head": "cpu"}, "one device"), ("gpu!", "not a device")]:
        with pytest.raises(ValueError, match=match):
            TransfoXLModel.from_pretrained(saved[1], device_map=bad)


@pytest.mark.parametrize("key, value", [("low_cpu_mem_usage", True), ("trust_remote_code", True), ("from_tf", True),
                                        ("load_in_8bit", True), ("variant", "fp16"), ("max_memory", {0: "1GB"}),
                                        ("quantization_config", {"bits": 4}), ("offload_folder", "/tmp")])
def test_unsupported_arguments_are_refused_with_the_reason(saved, key, value):
    with pytest.raises(ValueError, match=rf"from_pretrained\({key}=.*is not supported: "):
        TransfoXLModel.from_pretrained(saved[1], **{key: value})
    TransfoXLModel.from_pretrained(saved[1], **{key: None})                # the do-nothing value passes


@pytest.mark.parametrize("typo, hint", [("d_modle", "d_model"), ("n_layers", "n_layer"), ("dropuot", "dropout"),
                                        ("mem_lenn", "mem_len")])
def test_a_misspelt_field_is_a_type_error_in_code(saved, typo, hint):
    with pytest.raises(TypeError, match=rf"did you mean '{hint}'"):
        TransfoXLModel.from_pretrained(saved[1], **{typo: 12})
    with pytest.raises(TypeError, match=rf"did you mean .*'{hint}'"):
        tiny_transfo_xl(**{typo: 12})
    with pytest.raises(TypeError):                                          # what transformers 4.35 does too
        transformers.TransfoXLModel.from_pretrained(saved[1], **{typo: 12})


def test_unknown_keywords_that_are_no_typo_are_refused_by_from_pretrained(saved):
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['completely_unknown'\]"):
        TransfoXLModel.from_pretrained(saved[1], completely_unknown=1)
    with pytest.raises(TypeError, match="positional"):
        TransfoXLModel.from_pretrained(saved[1], tiny_transfo_xl())


def test_a_typo_is_not_written_into_the_next_config(saved, tmp_path):
    with pytest.raises(TypeError):
        TransfoXLModel.from_pretrained(saved[1], d_modle=64)
    written = TransfoXLModel.from_pretrained(saved[1], mem_len=7)           # a real field is an override
    written.save_pretrained(tmp_path / "again")
    d = json.loads((tmp_path / "again" / "config.json").read_text())
    assert d["mem_len"] == 7 and "d_modle" not in d


def test_transformers_aliases_read_and_write_the_real_fields():
    config = XLNetConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=3, n_token=50)
    assert (config.d_model, config.n_head, config.n_layer, config.vocab_size, config.d_head) == (32, 4, 3, 50, 8)
    assert config.hidden_size == 32 and "hidden_size" not in config.to_dict()
    config.num_hidden_layers = 5
    assert config.n_layer == 5
    theirs = transformers.XLNetConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=3, n_token=50)
    assert (theirs.d_model, theirs.n_head, theirs.n_layer, theirs.vocab_size) == (32, 4, 3, 50)
    with pytest.raises(TypeError, match="name the same field"):
        XLNetConfig(hidden_size=32, d_model=32)


def test_every_generic_transformers_config_field_is_accepted():
    generic = set(transformers.PretrainedConfig().to_dict())
    assert generic <= TransfoXLConfig.known_fields() and generic <= XLNetConfig.known_fields()
    assert TransfoXLConfig(max_length=30, num_beams=2, is_decoder=False).num_beams == 2


def test_hub_arguments_and_the_other_honoured_ones(saved, tmp_path):
    model, folder = saved
    got, info = TransfoXLModel.from_pretrained(folder, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
    assert _weights_equal(TransfoXLModel.from_pretrained(folder, state_dict=model.state_dict()), model)
    with pytest.raises(FileNotFoundError, match="no pytorch_model.bin"):
        TransfoXLModel.from_pretrained(folder, use_safetensors=False)
    model.save_pretrained(tmp_path / "bin", safe_serialization=False)
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        TransfoXLModel.from_pretrained(tmp_path / "bin", use_safetensors=True)
    with pytest.warns(UserWarning, match="mismatched keys"):
        bigger, info = TransfoXLModel.from_pretrained(folder, d_inner=40, ignore_mismatched_sizes=True,
                                                      output_loading_info=True)
    assert info["mismatched_keys"] and all(k.endswith(("CoreNet.0.weight", "CoreNet.0.bias", "CoreNet.3.weight"))
                                           for k, _, _ in info["mismatched_keys"])
    with pytest.raises(ValueError, match="does not match the weights"):
        TransfoXLModel.from_pretrained(folder, d_inner=40)
    assert TransfoXLModel.from_pretrained(folder, config=folder).config == TransfoXLConfig.from_pretrained(folder)
    with pytest.raises(ValueError, match="token= .* not both"):
        TransfoXLModel.from_pretrained(folder, token="a", use_auth_token="b")
    with pytest.raises(ValueError, match="subfolder"):
        TransfoXLModel.from_pretrained(folder, subfolder="../elsewhere")


# ---------------------------------------------------------------- saving: whole or not at all

def _files(folder):
    return {p.name: p.read_bytes() for p in Path(folder).iterdir()}


_DROP_ROOT = """
import os, safetensors.torch, torch, xlref, xlref.transfo_xl, _hf   # import first: ~root may be closed to others
if os.geteuid() == 0:                                              # root ignores permissions: become nobody
    os.setgid(65534)
    os.setuid(65534)
"""


def _child(code: str, *, unprivileged: bool = False):
    "Run python code in a child process (resource limits, an unprivileged user), with this repo importable."
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    code = (_DROP_ROOT if unprivileged else "") + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def open_tmp():
    "A scratch folder any user may enter (pytest's own are private to their owner)."
    import shutil
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix="xlref_perm_"))
    os.chmod(folder, 0o755)
    yield folder
    for p in [folder, *folder.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    shutil.rmtree(folder)


def test_a_full_disk_leaves_the_previous_checkpoint_intact(saved):
    "RLIMIT_FSIZE stops any write past 20 kB (the weights are bigger): the save fails, the old files stay."
    model, folder = saved
    before = _files(folder)
    result = _child(f"""
        import resource, signal, torch
        from _hf import tiny_transfo_xl
        from xlref.transfo_xl import TransfoXLModel
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)        # the write fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        other = TransfoXLModel(tiny_transfo_xl(d_inner=40))
        try:
            other.save_pretrained({str(folder)!r})
        except OSError as e:
            print("refused", e.errno, e)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"refused {errno.EFBIG}") and "what was there is unchanged" in result.stdout
    assert _files(folder) == before                                          # same names, same bytes, no temporaries
    assert _weights_equal(TransfoXLModel.from_pretrained(folder), model)


def test_a_read_only_directory_is_a_permission_error_and_changes_nothing(open_tmp):
    folder = open_tmp / "ckpt"
    TransfoXLModel(tiny_transfo_xl()).save_pretrained(folder)
    before = _files(folder)
    os.chmod(folder, 0o555)
    try:
        code = f"""
            from _hf import tiny_transfo_xl
            from xlref.transfo_xl import TransfoXLModel
            try:
                TransfoXLModel(tiny_transfo_xl()).save_pretrained({str(folder)!r})
            except PermissionError as e:
                print("PermissionError", e)
        """
        result = _child(code, unprivileged=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("PermissionError") and "Permission denied" in result.stdout, result.stdout
    finally:
        os.chmod(folder, 0o755)
    assert _files(folder) == before


def test_saved_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        TransfoXLModel(tiny_transfo_xl()).save_pretrained(tmp_path / "a")
        TransfoXLModel(tiny_transfo_xl()).save_pretrained(tmp_path / "b", safe_serialization=False)
    finally:
        os.umask(old)
    for f in [*(tmp_path / "a").iterdir(), *(tmp_path / "b").iterdir()]:
        assert f.stat().st_mode & 0o777 == 0o644, (f.name, oct(f.stat().st_mode))


def test_an_unreadable_weight_file_says_permission_denied(open_tmp):
    folder = open_tmp / "ckpt"
    TransfoXLModel(tiny_transfo_xl()).save_pretrained(folder)
    os.chmod(folder / hub.SAFE_WEIGHTS_NAME, 0o600)
    result = _child(f"""
        from xlref.transfo_xl import TransfoXLModel
        try:
            TransfoXLModel.from_pretrained({str(folder)!r})
        except PermissionError as e:
            print("PermissionError", e)
    """, unprivileged=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("PermissionError permission denied"), result.stdout


def test_a_save_in_the_other_format_removes_the_stale_weights(saved):
    "Saving .bin over a safetensors checkpoint must not leave the old safetensors, which loading prefers."
    model, folder = saved
    other = TransfoXLModel(tiny_transfo_xl()).eval()
    other.save_pretrained(folder, safe_serialization=False)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "pytorch_model.bin"]
    assert _weights_equal(TransfoXLModel.from_pretrained(folder), other)


def test_transformers_4_35_loads_stale_safetensors_after_a_bin_save(saved, tmp_path):
    "4.35 leaves the old model.safetensors beside a new pytorch_model.bin, and loads the old weights."
    import warnings
    model, folder = saved
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = transformers.TransfoXLModel.from_pretrained(folder)
        torch.manual_seed(1)
        fresh = transformers.TransfoXLModel(theirs.config)
        fresh.save_pretrained(folder, safe_serialization=False)
        names = sorted(p.name for p in folder.iterdir())
        loaded = transformers.TransfoXLModel.from_pretrained(folder)
    assert names == ["config.json", "model.safetensors", "pytorch_model.bin"]
    assert _weights_equal(loaded, model) and not _weights_equal(loaded, fresh)   # the old weights came back


# ---------------------------------------------------------------- booleans from files, huge paddings

@pytest.fixture(scope="module")
def spiece(tmp_path_factory):
    from xlref.datasets import path as corpus_path
    from xlref.tokenization import train_xlnet_spiece
    return train_xlnet_spiece(corpus_path("wikitext2_valid"), tmp_path_factory.mktemp("sp") / "sp", vocab_size=300,
                              max_lines=400)


@pytest.mark.parametrize("value", ["false", "False", 0, 1, None, "true"])
def test_booleans_in_tokenizer_files_must_be_booleans(spiece, tmp_path, value):
    tok = XLNetTokenizer(spiece)
    tok.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    cfg["do_lower_case"] = value
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"tokenizer_config.json: do_lower_case must be true or false"):
        XLNetTokenizer.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="do_lower_case must be True or False"):
        XLNetTokenizer(spiece, do_lower_case=value)


def test_padding_that_cannot_fit_in_memory_is_refused_before_allocating(spiece):
    tok = XLNetTokenizer(spiece)
    with pytest.raises(ValueError, match=r"padding 2 sequence\(s\) to 1,000,000,000,000 ids needs about"):
        tok(["a b", "c"], padding="max_length", max_length=10**12)
    assert len(tok(["a b"], padding="max_length", max_length=50)["input_ids"][0]) == 50


# ---------------------------------------------------------------- inputs refused by name

@pytest.fixture(scope="module")
def xlnet():
    torch.manual_seed(0)
    return XLNetModel(tiny_xlnet()).eval()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.float32, torch.bool])
def test_ids_of_other_dtypes_are_refused(xlnet, dtype):
    with pytest.raises(TypeError, match="input_ids must be an integer tensor, int64 \\(or int32\\)"):
        xlnet(torch.ones(1, 3, dtype=dtype))
    xlnet(torch.ones(1, 3, dtype=torch.int32))                               # int32, as nn.Embedding takes


def test_mems_of_another_dtype_are_refused(xlnet):
    ids = torch.ones(2, 3, dtype=torch.long)
    mems = [torch.zeros(4, 2, 16, dtype=torch.float64)] * 2
    with pytest.raises(TypeError, match="mems must have the model's dtype torch.float32"):
        xlnet(ids, mems=mems)
    txl = TransfoXLModel(tiny_transfo_xl()).eval()
    with pytest.raises(TypeError, match="mems must have the model's dtype"):
        txl(ids, mems=[torch.zeros(4, 2, 16, dtype=torch.float16)] * 2)


@pytest.mark.parametrize("value", [0.5, 2.0, -1.0])
def test_target_mapping_must_be_zeros_and_ones(xlnet, value):
    tm = torch.zeros(1, 1, 3)
    tm[0, 0, 1] = value
    with pytest.raises(ValueError, match="target_mapping must hold only 0 and 1"):
        xlnet(torch.ones(1, 3, dtype=torch.long), target_mapping=tm)


def test_float_labels_where_class_indices_belong_are_refused():
    torch.manual_seed(0)
    ids = torch.ones(2, 3, dtype=torch.long)
    clf = XLNetForSequenceClassification(tiny_xlnet(num_labels=3, problem_type="single_label_classification")).eval()
    with pytest.raises(TypeError, match="needs integer labels"):
        clf(ids, labels=torch.tensor([0.0, 2.0]))
    txl = TransfoXLForSequenceClassification(tiny_transfo_xl(num_labels=3, problem_type="single_label_classification"))
    with pytest.raises(TypeError, match="needs integer labels"):
        txl(ids, labels=torch.tensor([1.0, 0.0]))
    from xlref.heads import XLNetForTokenClassification
    tagger = XLNetForTokenClassification(tiny_xlnet(num_labels=3)).eval()
    with pytest.raises(TypeError, match="labels must hold class indices"):
        tagger(ids, labels=torch.zeros(2, 3))


@pytest.mark.parametrize("cls", [XLNetForQuestionAnsweringSimple, XLNetForQuestionAnswering])
def test_one_qa_position_without_the_other_is_refused(cls):
    torch.manual_seed(0)
    model = cls(tiny_xlnet(start_n_top=2, end_n_top=2)).eval()
    ids = torch.ones(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="start_positions without end_positions"):
        model(ids, start_positions=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="end_positions without start_positions"):
        model(ids, end_positions=torch.tensor([1, 2]))


def test_is_impossible_without_cls_index_is_refused_where_4_35_drops_that_loss():
    torch.manual_seed(0)
    config = tiny_xlnet(start_n_top=2, end_n_top=2)
    ours = XLNetForQuestionAnswering(config).eval()
    pos = dict(start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([2, 3]))
    ids = torch.ones(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="is_impossible needs cls_index"):
        ours(ids, is_impossible=torch.tensor([1.0, 0.0]), **pos)
    from _hf import quiet
    theirs = quiet(transformers.XLNetForQuestionAnswering, transformers.XLNetConfig(**{
        k: v for k, v in config.to_dict().items() if k not in ("architectures",)})).eval()
    with torch.no_grad():
        a = theirs(ids, is_impossible=torch.tensor([1.0, 0.0]), **pos).loss
        b = theirs(ids, is_impossible=torch.tensor([0.0, 1.0]), **pos).loss
    assert torch.equal(a, b)                                                  # 4.35: is_impossible had no effect


def test_an_attention_that_cannot_fit_is_refused_before_allocating(xlnet, monkeypatch):
    monkeypatch.setattr(xlref.base, "_free_memory", lambda device: 100)
    with pytest.raises(MemoryError, match=r"XLNetModel: attention over 8 queries x 8 keys x 2 heads x batch 1 needs about"):
        xlnet(torch.ones(1, 8, dtype=torch.long))
    txl = TransfoXLModel(tiny_transfo_xl()).eval()
    with pytest.raises(MemoryError, match="TransfoXLModel: attention over"):
        txl(torch.ones(1, 40, dtype=torch.long))


def test_a_huge_input_is_refused_by_the_real_memory_check(xlnet):
    "300,000 tokens: 4 x 2 heads x 300k x 300k float32 scores would need ~2.6 TB; refused before any of it."
    with pytest.raises(MemoryError, match="needs about"):
        xlnet(torch.ones(1, 300_000, dtype=torch.long))


def test_xlnet_keeps_attention_probabilities_only_when_asked(xlnet):
    "Without output_attentions no layer's (b, n, i, j) probabilities outlive the forward."
    import gc
    import weakref
    kept = []
    original = type(xlnet.layer[0].rel_attn).rel_attn_core

    def spy(self, *args, **kwargs):
        vec, prob = original(self, *args, **kwargs)
        kept.append(weakref.ref(prob))
        return vec, prob
    with torch.no_grad(), pytest.MonkeyPatch.context() as m:
        m.setattr(type(xlnet.layer[0].rel_attn), "rel_attn_core", spy)
        out = xlnet(torch.ones(1, 6, dtype=torch.long))
        gc.collect()
        assert kept and all(r() is None for r in kept)                       # none survives
        out_att = xlnet(torch.ones(1, 6, dtype=torch.long), output_attentions=True)
    assert len(out_att.attentions) == 2 and out.attentions is None


_PEAK = """
import resource, sys, warnings, torch
warnings.simplefilter("ignore")
torch.manual_seed(0)
kw = dict(vocab_size=100, d_model=64, n_layer=2, n_head=4, d_inner=128, mem_len=None)
if sys.argv[1] == "transformers":
    import transformers
    model = transformers.XLNetModel(transformers.XLNetConfig(**kw)).eval()
else:
    from xlref import XLNetConfig, XLNetModel
    model = XLNetModel(XLNetConfig(**kw)).eval()
ids = torch.randint(0, 100, (1, int(sys.argv[2])))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.no_grad():
    model(ids, use_mems=False)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


@pytest.mark.slow
def test_a_long_xlnet_input_needs_no_more_memory_than_in_transformers():
    "4,000 tokens (each score tensor 256 MB): the forward's peak memory is at most transformers 4.35's."
    peaks = {}
    for which in ("transformers", "xlref"):
        run = subprocess.run([sys.executable, "-c", _PEAK, which, "4000"], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr
        peaks[which] = int(run.stdout.split()[-1])
    print({k: f"{v / 2**20:.0f} MiB" for k, v in peaks.items()})
    assert peaks["xlref"] <= 1.05 * peaks["transformers"], peaks


@pytest.mark.parametrize("which", ["transfo_xl", "xlnet"])
def test_float64_models_run_with_masks(which):
    "A float64 model (torch_dtype=torch.float64 is accepted) must run where a mask blocks keys, and agree with float32."
    torch.manual_seed(0)
    if which == "transfo_xl":
        model = TransfoXLModel(tiny_transfo_xl()).eval()
        kwargs = dict(mems=None)
    else:
        model = XLNetModel(tiny_xlnet()).eval()
        kwargs = dict(attention_mask=torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]))
    ids = torch.randint(1, 40, (2, 4))
    with torch.no_grad():
        single = model(ids, **kwargs).last_hidden_state
        double = model.double()(ids, **kwargs).last_hidden_state
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), single, rtol=1e-4, atol=1e-5)


def test_xlnet_untie_r_false_is_accepted_with_a_warning_not_in_silence():
    with pytest.warns(UserWarning, match="untie_r=False is not implemented"):
        config = tiny_xlnet(untie_r=False)
    assert sum(k.endswith("rel_attn.r_w_bias") for k in XLNetModel(config).state_dict()) == 2   # per layer, as 4.35


def test_the_remaining_refusals_of_from_pretrained_and_save_pretrained(saved, tmp_path):
    model, folder = saved
    with pytest.raises(ValueError, match="use_safetensors must be None, True or False"):
        TransfoXLModel.from_pretrained(folder, use_safetensors="yes")
    with pytest.raises(TypeError, match="config must be a TransfoXLConfig or a path"):
        TransfoXLModel.from_pretrained(folder, config=tiny_xlnet())
    with pytest.raises(TypeError, match="pass either config= or config overrides"):
        TransfoXLModel.from_pretrained(folder, config=model.config, mem_len=3)
    with pytest.raises(ValueError, match="is not a valid attribute name"):
        TransfoXLConfig.from_dict({**model.config.to_dict(), "not a name": 1})
    with pytest.raises(FileNotFoundError, match="no config.json"):
        TransfoXLConfig.from_json_file(tmp_path / "config.json")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="exists and is not a directory"):
        model.save_pretrained(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "x"

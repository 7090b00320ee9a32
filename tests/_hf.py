"""Shared helpers for the parity tests: transformers 4.35 imported quietly, twin models with
identical weights, random tiny configurations."""
import warnings

import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import transformers  # noqa: F401  (4.35 emits a FutureWarning under torch 2.13)

from xlref.transfo_xl import TransfoXLConfig

TOL = dict(rtol=1e-5, atol=1e-5)  # float32 parity tolerance used throughout


def hf_transfo_xl_config(config: TransfoXLConfig) -> "transformers.TransfoXLConfig":
    "The transformers 4.35 config with the same fields (tie_projs passed through, as config.json does)."
    d = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "label2id")}
    return transformers.TransfoXLConfig(**d)


def quiet(fn, *args, **kwargs):
    "Call fn with warnings silenced (4.35 warns about its v5 output format on every LM head)."
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.2) -> None:
    "Overwrite every parameter with N(0, std) (layer-norm weights around 1) so every term of the model matters."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * std
            p.copy_(1 + noise if name.endswith("layer_norm.weight") else noise)


def twin(ours_cls, hf_cls, config: TransfoXLConfig, seed: int = 0):
    "An xlref model with random weights and the transformers 4.35 model holding the same state dict, both in eval mode."
    ours = ours_cls(config).eval()
    randomize(ours, seed)
    theirs = quiet(hf_cls, hf_transfo_xl_config(config)).eval()
    assert set(theirs.state_dict()) == set(ours.state_dict())
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def tiny_transfo_xl(**overrides) -> TransfoXLConfig:
    base = dict(vocab_size=60, cutoffs=[20, 40], d_model=16, d_embed=16, n_head=2, d_head=8, d_inner=24, n_layer=2,
                mem_len=5, clamp_len=-1, same_length=False, dropout=0.0, div_val=1, pad_token_id=0)
    return TransfoXLConfig(**{**base, **overrides})

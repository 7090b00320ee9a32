"""A verified, notebook-driven reference implementation of Transformer-XL and XLNet in PyTorch.

Modules:

- `xlref.adaptive`: Words grouped into clusters by frequency, smaller vectors for rarer words, projections to the model width, and a softmax that pays for a rare cluster only when it is needed; with its cost against a full softmax.
- `xlref.hub`: Configurations that round-trip through `config.json`, state-dict keys identical to Hugging Face's, and `from_pretrained` / `save_pretrained` that exchange checkpoints with `transformers==4.35.0` in both directions.
- `xlref.memory`: Memory as cached hidden states: the update rule, the stop-gradient, the causal mask with memory and with `same_length`, the receptive field growing one segment per layer, and why evaluation with memory is cheap.
- `xlref.positions`: Sinusoid embeddings, why absolute positions fail under segment recurrence, the four terms of the relative attention score, and the position sequences of Transformer-XL and XLNet.
- `xlref.tokenization`: XLNet's SentencePiece tokenizer and Transformer-XL's word-level tokenizer, rebuilt, checked against transformers 4.35, and a vocabulary loader that cannot run code.
- `xlref.transfo_xl`: Relative multi-head attention, the position-wise feed-forward network, the decoder layer and `TransfoXLModel` with memory in and out, checked against Hugging Face's `transformers==4.35.0`."""

__version__ = "0.1.0"

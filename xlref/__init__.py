"""A verified, notebook-driven reference implementation of Transformer-XL and XLNet in PyTorch.

Modules:

- `xlref.positions`: Sinusoid embeddings, why absolute positions fail under segment recurrence, the four terms of the relative attention score, and the position sequences of Transformer-XL and XLNet."""

__version__ = "0.1.0"

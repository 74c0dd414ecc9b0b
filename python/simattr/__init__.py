"""simattr: why does a sentence encoder find two texts similar?

Token-by-token attributions of a Siamese sentence encoder's similarity score by the integrated
Jacobians of Moeller, Nikolaev and Padó (EMNLP 2023, EACL 2024), computed by a Rust engine::

    import simattr
    explainer = simattr.Explainer("all-mpnet-base-v2")
    explanation = explainer.explain("A man plays a guitar.", "Someone is making music.")
    explanation.attributions      # numpy array, tokens of a × tokens of b
    explanation.plot()            # matplotlib heatmap

Distributed runs on Ray: :mod:`simattr.ray` (imported on its own; needs ``ray[data]``).
"""

from ._native import SimattrError, __version__
from .explainer import Explainer
from .explanation import Explanation

__all__ = ["Explainer", "Explanation", "SimattrError", "__version__"]

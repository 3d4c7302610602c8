"""Every contact with transformers' XMOD model: adapter dispatch, the compiled layers, the language API patch.

Owns :mod:`.adapters` (each layer runs only the adapters present in a batch, and refuses an
out-of-range adapter id), :mod:`.compiled_layers` (``compile()``: each XMOD layer one graph, its
adapters included) and :mod:`.language_api` (finding the XMOD model inside a wrapper, and
``set_default_language`` that resolves what people type). Private transformers names are reached
through :mod:`xm_integrations.compat.transformers` only. May import torch, transformers,
:mod:`xm_integrations.errors` and :mod:`xm_integrations.languages.resolution`; nothing above.
"""

"""FlagEmbedding (extra ``flag``): ``XMFlagReranker`` (a ``FlagReranker``), ``XMColBERTReranker``, the auto-registration.

Owns :mod:`.reranker` (Mono-XM as FlagEmbedding's ``FlagReranker``), :mod:`.late_interaction`
(ColBERT-XM scoring pairs behind ``FlagReranker``'s API), :mod:`.registration` (so that
``FlagAutoReranker.from_finetuned("…/mono-xm")`` gives an ``XMFlagReranker``) and :mod:`.pool`
(one pool worker that reports every error). Imports FlagEmbedding only in :mod:`.reranker`.
"""

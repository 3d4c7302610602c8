"""The model classes: ``MonoXM`` (a sentence-transformers ``CrossEncoder``) and ``ColBERTXM`` (a ``MultiVectorEncoder``).

Owns the wrapper core every class shares (:mod:`.core`: attaching to the XMOD model, the fast-path
gate, pool workers that report errors), checkpoint discovery and validation (:mod:`.checkpoints`),
the pair rules of the rerankers (:mod:`.reranking`), :mod:`.mono_xm` and :mod:`.colbert_xm` (model,
colbert-ai tokenization, checkpoint layout, document head). May import every layer below it
(``languages``, ``xmod``, ``engine``, ``scoring``, ``compat``, ``errors``); the FlagEmbedding
classes live in :mod:`xm_integrations.integrations`, on top of these.
"""

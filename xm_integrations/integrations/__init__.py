"""Integrations with other libraries than sentence-transformers; today FlagEmbedding (:mod:`.flagembedding`).

Each integration is an optional extra: nothing here is imported by ``import xm_integrations`` except
the FlagEmbedding registration hook, which imports nothing from FlagEmbedding.
"""

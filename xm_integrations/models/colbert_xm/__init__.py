"""ColBERT-XM as a sentence-transformers ``MultiVectorEncoder`` that encodes exactly as colbert-ai 0.2.22.

:mod:`.model` is the class; :mod:`.tokenization` colbert-ai's query and document tokenization;
:mod:`.checkpoint` the colbert-ai ``HF_ColBERT`` layout and its validation; :mod:`.head` the fast
document head (projection, normalisation, skiplist). Imported on first use of ``ColBERTXM``.
"""

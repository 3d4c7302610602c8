"""Every private or undocumented name of the libraries we extend, in one module per library.

:mod:`.sentence_transformers`, :mod:`.transformers` and :mod:`.tokenizers` read, override or patch
upstream internals, each with a comment saying why and which versions were checked;
``tests/compat/test_contract.py`` asserts that each still exists with the expected signature, so an
upgrade fails in one named test that says what moved. :mod:`.log_filters` drops upstream log lines
that are expected for our models. Nothing outside this package names an upstream private attribute.
"""

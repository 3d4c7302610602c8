"""Push validation compares like with like and says which inputs differ, with advice only where it applies.

The premise is checked first: on a text holding a piece that does not round-trip (an ``<unk>``),
stock FlagReranker (which decodes ids and tokenizes the pair again) and MonoXM (one-pass pair
tokenization) give different scores for the same folder, so a validation comparing those two would
refuse a valid folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.hub.hub_fixtures import mono_xm_small  # noqa: F401 - fixture
from xm_integrations.errors import ValidationError
from xm_integrations.hub import validate
from xm_integrations.hub.validate import validate_model_folder

#: A French pair whose snowman and snowflake are <unk> in the tiny vocabulary.
UNK_PAIR = ("Quand ☃ ?", "La tour ☃ Eiffel  a été ❄ construite.")


def test_flag_reranker_and_mono_xm_differ_on_unk_pieces(mono_xm_small: Path) -> None:
    from FlagEmbedding import FlagReranker

    from xm_integrations import MonoXM, XMFlagReranker

    stock_flag = FlagReranker(str(mono_xm_small), devices="cpu", use_fp16=False)
    flag_score = stock_flag.compute_score([list(UNK_PAIR)], normalize=True)[0]
    mono_score = float(MonoXM(str(mono_xm_small), device="cpu").predict([UNK_PAIR])[0])
    assert abs(flag_score - mono_score) > 1e-3  # why comparing these two was wrong
    ours = XMFlagReranker(str(mono_xm_small), devices="cpu").compute_score([UNK_PAIR], normalize=True)[0]
    assert ours == pytest.approx(flag_score, abs=1e-6)  # the subclass reproduces its own stock class


def test_a_valid_folder_with_unk_pieces_passes(mono_xm_small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(validate._PROBES, "fr", UNK_PAIR)
    report = validate_model_folder(mono_xm_small)
    assert report.passed
    assert any("FlagReranker" in check.name and "XMFlagReranker" in check.name for check in report.checks)


def test_a_mismatch_names_the_inputs_and_gives_no_unrelated_advice(mono_xm_small: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from xm_integrations import XMFlagReranker

    original = XMFlagReranker.compute_score

    def drifting(self, pairs, **kwargs):
        scores = np.asarray(original(self, pairs, **kwargs))
        return list(scores + np.where(np.arange(len(scores)) == 0, 1e-2, 0.0))  # only the first input drifts

    monkeypatch.setattr(XMFlagReranker, "compute_score", drifting)
    with pytest.raises(ValidationError) as error:
        validate_model_folder(mono_xm_small)
    message = str(error.value)
    assert "MISMATCH FlagEmbedding FlagReranker" in message
    differing = [line for line in message.splitlines() if "differs:" in line]
    assert len(differing) == 1 and "fr_XX" in differing[0]
    assert "Save it with a default language" not in message  # the folder has one: that advice would not apply
    assert "score the inputs listed above differently" in message


def test_missing_default_language_gets_the_default_language_advice(tiny_mono_xm: Path) -> None:
    with pytest.raises(ValidationError, match="Save it with a default language first"):
        validate_model_folder(tiny_mono_xm)

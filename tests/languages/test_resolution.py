"""Language resolution: what people type, against the adapters a checkpoint has."""

from __future__ import annotations

import locale

import pytest

from xm_integrations import XMOD_LANGUAGE_CODES, XMOD_LANGUAGES, UnknownLanguageError, resolve_language
from xm_integrations.languages.resolution import DEFAULT_CHINESE, language_to_iso

# facebook/xmod-base's config.languages, written out independently of our table.
XMOD_BASE_LANGUAGES = (
    "en_XX id_ID vi_VN ru_RU fa_IR sv_SE ja_XX fr_XX de_DE ro_RO ko_KR hu_HU es_XX fi_FI uk_UA da_DK pt_XX no_XX "
    "th_TH pl_PL bg_BG nl_XX zh_CN he_IL el_GR it_IT sk_SK hr_HR tr_TR ar_AR cs_CZ lt_LT hi_IN zh_TW ca_ES ms_MY "
    "sl_SI lv_LV ta_IN bn_IN et_EE az_AZ sq_AL sr_RS kk_KZ ka_GE tl_XX ur_PK is_IS hy_AM ml_IN mk_MK be_BY la_VA "
    "te_IN eu_ES gl_ES mn_MN kn_IN ne_NP sw_KE si_LK mr_IN af_ZA gu_IN cy_GB eo_EO km_KH ky_KG uz_UZ ps_AF pa_IN "
    "ga_IE ha_NG am_ET lo_LA ku_TR so_SO my_MM or_IN sa_IN"
).split()


def test_table_is_xmod_base():
    assert len(XMOD_BASE_LANGUAGES) == 81
    assert XMOD_LANGUAGE_CODES == tuple(XMOD_BASE_LANGUAGES)


def test_iso_codes_and_names_agree_with_the_standard_library():
    """Our ISO codes and English names against an independent table: CPython's ``locale.locale_alias``.

    It maps English names (``"french"``), ISO 639-1 and several 639-2/3 codes to POSIX locales whose
    language part is ISO 639-1 (``fr_FR.ISO8859-1``). It knows about 66 of the 81 XMOD languages.
    """
    checked: set[str] = set()
    for lang in XMOD_LANGUAGES:
        for key in (lang.iso1, *lang.iso3, lang.name.lower()):
            posix = locale.locale_alias.get(key)
            if posix is not None:
                assert posix.split(".")[0].split("_")[0] == lang.iso1, (lang.code, key, posix)
                checked.add(lang.code)
    assert len(checked) >= 60, "the reference must cover most of the table, or this test proves little"


@pytest.mark.parametrize("code", XMOD_BASE_LANGUAGES)
def test_every_code_resolves_to_itself(code):
    assert resolve_language(code) == code
    assert resolve_language(code, XMOD_BASE_LANGUAGES) == code


@pytest.mark.parametrize("lang", XMOD_LANGUAGES, ids=lambda lang: lang.code)
def test_iso_codes_and_names_resolve(lang):
    expected = DEFAULT_CHINESE if lang.iso1 == "zh" else lang.code
    for spelling in (lang.iso1, lang.iso1.upper(), lang.iso3[0]):
        assert resolve_language(spelling) == expected, spelling
    assert resolve_language(lang.name.lower()) == lang.code  # names are specific: "Traditional Chinese"


@pytest.mark.parametrize(
    "typed, expected",
    [
        ("fr", "fr_XX"), ("FR", "fr_XX"), ("fr-FR", "fr_XX"), ("fr_FR", "fr_XX"), ("fr-CA", "fr_XX"),
        ("French", "fr_XX"), ("fra", "fr_XX"), ("fre", "fr_XX"), ("  french ", "fr_XX"), ("FR-xx", "fr_XX"),
        ("zh-TW", "zh_TW"), ("zh-Hant", "zh_TW"), ("zh-HK", "zh_TW"), ("zh_Hant_TW", "zh_TW"), ("zh-MO", "zh_TW"),
        ("zh-CN", "zh_CN"), ("zh-Hans", "zh_CN"), ("zh-SG", "zh_CN"), ("zh", "zh_CN"), ("Chinese", "zh_CN"),
        ("Traditional Chinese", "zh_TW"), ("Chinese (Traditional)", "zh_TW"), ("cmn-Hant", "zh_TW"),
        ("pt-BR", "pt_XX"), ("pt-PT", "pt_XX"), ("Portuguese", "pt_XX"),
        ("nb", "no_XX"), ("nn", "no_XX"), ("no", "no_XX"), ("nb-NO", "no_XX"), ("Norwegian Bokmål", "no_XX"),
        ("ar", "ar_AR"), ("ar-EG", "ar_AR"), ("de-AT", "de_DE"), ("es-MX", "es_XX"), ("en-US", "en_XX"),
        ("fil", "tl_XX"), ("Filipino", "tl_XX"), ("iw", "he_IL"), ("Farsi", "fa_IR"), ("sr-Latn-RS", "sr_RS"),
    ],
)
def test_aliases(typed, expected):
    assert resolve_language(typed, XMOD_BASE_LANGUAGES) == expected


def test_exact_member_wins_over_aliases():
    # A fine-tuned checkpoint with codes of its own: exact names win, aliases still reach them.
    available = ["fr", "en", "zh-Hant"]
    assert resolve_language("fr", available) == "fr"
    assert resolve_language("fr_XX", available) == "fr"
    assert resolve_language("French", available) == "fr"
    assert resolve_language("zh-TW", available) == "zh-Hant"
    assert resolve_language("zh", available) == "zh-Hant"  # the only Chinese adapter


def test_subset_checkpoint_picks_remaining_chinese_adapter():
    assert resolve_language("zh", ["en_XX", "zh_TW"]) == "zh_TW"
    assert resolve_language("zh-Hans", ["en_XX", "zh_TW"]) == "zh_TW"


def test_regional_variants_choose_by_region_then_xmod_code():
    available = ["de_DE", "de_CH", "en_XX"]
    assert resolve_language("de-CH", available) == "de_CH"
    assert resolve_language("de", available) == "de_DE"


def test_unknown_code_suggests_closest():
    with pytest.raises(UnknownLanguageError) as caught:
        resolve_language("frr_XX", XMOD_BASE_LANGUAGES)
    error = caught.value
    assert isinstance(error, ValueError)
    assert "fr_XX" in error.suggestions
    assert "'frr_XX'" in str(error) and "fr_XX" in str(error)
    assert "Xmod" not in str(error) and len(str(error)) < 1200  # a short message, never a model repr


def test_misspelled_name_suggests_language():
    with pytest.raises(UnknownLanguageError) as caught:
        resolve_language("Frnech")
    assert caught.value.suggestions[0] == "fr_XX"


def test_language_missing_from_checkpoint():
    with pytest.raises(UnknownLanguageError) as caught:
        resolve_language("sw", ["en_XX", "fr_XX", "de_DE"])
    error = caught.value
    assert "Swahili" in str(error) and "no adapter" in str(error)
    assert error.available == ("en_XX", "fr_XX", "de_DE")
    assert error.suggestions and set(error.suggestions) <= {"en_XX", "fr_XX", "de_DE"}
    assert "en_XX, fr_XX, de_DE" in str(error)


@pytest.mark.parametrize("typed, name", [("zh-TW", "Chinese"), ("pt-BR", "Portuguese"), ("nb", "Norwegian")])
def test_tags_of_languages_missing_from_checkpoint(typed, name):
    """Region and script tags of a language the checkpoint lacks fail like the bare code, naming the language."""
    with pytest.raises(UnknownLanguageError) as caught:
        resolve_language(typed, ["en_XX", "fr_XX", "de_DE"])
    assert f"{name} is an XMOD language but this checkpoint has no adapter" in str(caught.value)
    assert caught.value.suggestions and set(caught.value.suggestions) <= {"en_XX", "fr_XX", "de_DE"}


@pytest.mark.parametrize("bad", ["", "  ", "xx-YY", "klingon"])
def test_unknown_inputs_raise(bad):
    with pytest.raises(UnknownLanguageError):
        resolve_language(bad)


def test_non_string_raises():
    with pytest.raises(UnknownLanguageError, match="must be a string"):
        resolve_language(None)  # type: ignore[arg-type]


def test_ambiguous_custom_adapters_raise_with_candidates():
    with pytest.raises(UnknownLanguageError) as caught:
        resolve_language("de", ["de-1", "de-2"])
    assert set(caught.value.suggestions) == {"de-1", "de-2"}


def test_language_to_iso():
    assert language_to_iso("zh_TW") == "zh"
    assert language_to_iso("no_XX") == "no"
    assert language_to_iso("gsw_CH") == "gsw"

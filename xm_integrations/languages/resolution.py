"""The XMOD language table and the resolution of what people type to an adapter code.

XMOD checkpoints name their adapters with fairseq-style codes (``fr_XX``, ``zh_TW``, ``ar_AR``,
``no_XX``) that almost nobody types. Users write ``fr``, ``fr-FR``, ``French``, ``fra``,
``zh-Hant`` or ``nb``. :func:`resolve_language` maps any of those to the one adapter that the
*loaded* checkpoint actually has, so fine-tuned checkpoints that carry a subset of the 81
languages (or codes of their own) work too.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from xm_integrations.errors import ArgumentTypeError, UnknownLanguageError

__all__ = [
    "DEFAULT_CHINESE",
    "XMOD_LANGUAGES",
    "XMOD_LANGUAGE_CODES",
    "UnknownLanguageError",
    "XmodLanguage",
    "language_to_iso",
    "resolve_language",
]


@dataclass(frozen=True)
class XmodLanguage:
    """One row of the XMOD language table.

    Attributes:
        code: The adapter name as the checkpoints spell it (``fr_XX``).
        iso1: ISO 639-1 code (``fr``).
        iso3: ISO 639-3 codes, the first one canonical (``fra``); ISO 639-2/B variants follow.
        name: English name (``French``).
        aliases: Other English names and codes that mean this language.
    """

    code: str
    iso1: str
    iso3: tuple[str, ...]
    name: str
    aliases: tuple[str, ...] = ()


def _row(code: str, iso3: str, name: str, *aliases: str) -> XmodLanguage:
    codes = tuple(iso3.split())
    return XmodLanguage(code=code, iso1=code.split("_")[0], iso3=codes, name=name, aliases=aliases)


#: The 81 languages of ``facebook/xmod-base``, in the order of its ``config.languages``.
XMOD_LANGUAGES: tuple[XmodLanguage, ...] = (
    _row("en_XX", "eng", "English"),
    _row("id_ID", "ind", "Indonesian", "in", "Bahasa Indonesia"),
    _row("vi_VN", "vie", "Vietnamese"),
    _row("ru_RU", "rus", "Russian"),
    _row("fa_IR", "fas per pes", "Persian", "Farsi"),
    _row("sv_SE", "swe", "Swedish"),
    _row("ja_XX", "jpn", "Japanese"),
    _row("fr_XX", "fra fre", "French"),
    _row("de_DE", "deu ger", "German"),
    _row("ro_RO", "ron rum", "Romanian", "Moldavian", "mo"),
    _row("ko_KR", "kor", "Korean"),
    _row("hu_HU", "hun", "Hungarian"),
    _row("es_XX", "spa", "Spanish", "Castilian"),
    _row("fi_FI", "fin", "Finnish"),
    _row("uk_UA", "ukr", "Ukrainian"),
    _row("da_DK", "dan", "Danish"),
    _row("pt_XX", "por", "Portuguese"),
    _row("no_XX", "nor nob nno", "Norwegian", "nb", "nn", "Norwegian Bokmal", "Norwegian Nynorsk",
         "Bokmal", "Nynorsk"),
    _row("th_TH", "tha", "Thai"),
    _row("pl_PL", "pol", "Polish"),
    _row("bg_BG", "bul", "Bulgarian"),
    _row("nl_XX", "nld dut", "Dutch", "Flemish"),
    _row("zh_CN", "zho chi cmn", "Chinese", "Simplified Chinese", "Chinese Simplified",
         "Mandarin"),
    _row("he_IL", "heb", "Hebrew", "iw"),
    _row("el_GR", "ell gre", "Greek", "Modern Greek"),
    _row("it_IT", "ita", "Italian"),
    _row("sk_SK", "slk slo", "Slovak"),
    _row("hr_HR", "hrv", "Croatian"),
    _row("tr_TR", "tur", "Turkish"),
    _row("ar_AR", "ara arb", "Arabic"),
    _row("cs_CZ", "ces cze", "Czech"),
    _row("lt_LT", "lit", "Lithuanian"),
    _row("hi_IN", "hin", "Hindi"),
    _row("zh_TW", "zho chi cmn", "Traditional Chinese", "Chinese Traditional"),
    _row("ca_ES", "cat", "Catalan", "Valencian"),
    _row("ms_MY", "msa may zsm", "Malay"),
    _row("sl_SI", "slv", "Slovenian", "Slovene"),
    _row("lv_LV", "lav lvs", "Latvian"),
    _row("ta_IN", "tam", "Tamil"),
    _row("bn_IN", "ben", "Bengali", "Bangla"),
    _row("et_EE", "est ekk", "Estonian"),
    _row("az_AZ", "aze azj", "Azerbaijani", "Azeri"),
    _row("sq_AL", "sqi alb", "Albanian"),
    _row("sr_RS", "srp", "Serbian"),
    _row("kk_KZ", "kaz", "Kazakh"),
    _row("ka_GE", "kat geo", "Georgian"),
    _row("tl_XX", "tgl fil", "Tagalog", "Filipino", "fil"),
    _row("ur_PK", "urd", "Urdu"),
    _row("is_IS", "isl ice", "Icelandic"),
    _row("hy_AM", "hye arm", "Armenian"),
    _row("ml_IN", "mal", "Malayalam"),
    _row("mk_MK", "mkd mac", "Macedonian"),
    _row("be_BY", "bel", "Belarusian", "Belarusan"),
    _row("la_VA", "lat", "Latin"),
    _row("te_IN", "tel", "Telugu"),
    _row("eu_ES", "eus baq", "Basque"),
    _row("gl_ES", "glg", "Galician"),
    _row("mn_MN", "mon khk", "Mongolian"),
    _row("kn_IN", "kan", "Kannada"),
    _row("ne_NP", "nep npi", "Nepali", "Nepalese"),
    _row("sw_KE", "swa swh", "Swahili", "Kiswahili"),
    _row("si_LK", "sin", "Sinhala", "Sinhalese"),
    _row("mr_IN", "mar", "Marathi"),
    _row("af_ZA", "afr", "Afrikaans"),
    _row("gu_IN", "guj", "Gujarati"),
    _row("cy_GB", "cym wel", "Welsh"),
    _row("eo_EO", "epo", "Esperanto"),
    _row("km_KH", "khm", "Khmer", "Cambodian"),
    _row("ky_KG", "kir", "Kyrgyz", "Kirghiz"),
    _row("uz_UZ", "uzb uzn", "Uzbek"),
    _row("ps_AF", "pus pbt", "Pashto", "Pushto"),
    _row("pa_IN", "pan", "Punjabi", "Panjabi"),
    _row("ga_IE", "gle", "Irish", "Irish Gaelic"),
    _row("ha_NG", "hau", "Hausa"),
    _row("am_ET", "amh", "Amharic"),
    _row("lo_LA", "lao", "Lao", "Laotian"),
    _row("ku_TR", "kur kmr", "Kurdish", "Kurmanji"),
    _row("so_SO", "som", "Somali"),
    _row("my_MM", "mya bur", "Burmese", "Myanmar"),
    _row("or_IN", "ori ory", "Odia", "Oriya"),
    _row("sa_IN", "san", "Sanskrit"),
)

#: The adapter codes of ``facebook/xmod-base``, in its order.
XMOD_LANGUAGE_CODES: tuple[str, ...] = tuple(lang.code for lang in XMOD_LANGUAGES)

#: A bare ``zh`` (or ``Chinese``) means Simplified Chinese, the script of most Chinese text on the
#: web and of the training data of the Chinese retrieval sets (mMARCO-zh, MIRACL-zh).
DEFAULT_CHINESE = "zh_CN"

# Chinese is the one language with two adapters; a script or region subtag picks one of them.
_CHINESE_BY_SUBTAG = {
    "hant": "zh_TW", "tw": "zh_TW", "hk": "zh_TW", "mo": "zh_TW",
    "hans": "zh_CN", "cn": "zh_CN", "sg": "zh_CN", "my": "zh_CN",
}

_BY_CODE = {lang.code: lang for lang in XMOD_LANGUAGES}


def _fold(text: str) -> str:
    """Lower-case, strip accents and unify separators, so ``Bokmål``, ``fr-FR`` and ``FR_fr`` compare."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _build_base_index() -> dict[str, str]:
    """Map every folded ISO code, name and alias to the ISO 639-1 code of its base language."""
    index: dict[str, str] = {}
    for lang in XMOD_LANGUAGES:
        for key in (lang.iso1, *lang.iso3, lang.name, *lang.aliases):
            index.setdefault(_fold(key), lang.iso1)
    return index


_BASE_OF = _build_base_index()

# Full English names that already pick one of the two Chinese adapters.
_NAMED_CODES = {
    _fold(name): lang.code
    for lang in XMOD_LANGUAGES
    if lang.iso1 == "zh"
    for name in (lang.name, *lang.aliases)
    if name not in ("Chinese", "Mandarin")
}


def _base_of_code(code: str) -> str | None:
    """The ISO 639-1 base of an adapter code; works for codes outside the XMOD table (``fr``, ``de-CH``)."""
    if code in _BY_CODE:
        return _BY_CODE[code].iso1
    return _BASE_OF.get(_fold(code).split("_")[0])


def _suggest(language: str, available: Sequence[str], limit: int = 3) -> list[str]:
    """Closest adapters by spelling of their code, ISO codes and names."""
    keys: dict[str, str] = {}
    for code in available:
        keys.setdefault(_fold(code), code)
        lang = _BY_CODE.get(code)
        if lang is not None:
            for key in (lang.iso1, *lang.iso3, lang.name, *lang.aliases):
                keys.setdefault(_fold(key), code)
    folded = _fold(language)
    candidates = [folded, folded.split("_")[0]] if folded else []
    suggestions: list[str] = []
    for candidate in candidates:
        for match in difflib.get_close_matches(candidate, list(keys), n=limit * 3, cutoff=0.5):
            if keys[match] not in suggestions:
                suggestions.append(keys[match])
    if not suggestions and candidates:
        ranked = sorted(keys, key=lambda key: -difflib.SequenceMatcher(None, candidates[0], key).ratio())
        suggestions = list(dict.fromkeys(keys[key] for key in ranked))
    return suggestions[:limit]


def _pick_chinese(candidates: list[str], subtags: list[str]) -> str | None:
    """Choose between ``zh_CN`` and ``zh_TW`` from script or region subtags, else the default."""
    for subtag in subtags:
        wanted = _CHINESE_BY_SUBTAG.get(subtag)
        if wanted in candidates:
            return wanted
    return DEFAULT_CHINESE if DEFAULT_CHINESE in candidates else None


def _pick_by_region(candidates: list[str], subtags: list[str]) -> str | None:
    """Among several adapters of one base language, the one whose region subtag was asked for."""
    for subtag in subtags:
        for code in candidates:
            if _fold(code).split("_")[1:2] == [subtag]:
                return code
    return None


def resolve_language(language: str, available: Sequence[str] | None = None) -> str:
    """Resolve what a person types to one adapter code of the loaded checkpoint.

    Accepted forms, in order of precedence:

    1. an exact member of ``available`` (always wins, so custom codes keep working);
    2. a member of ``available`` in another case or with ``-`` for ``_`` (``FR-xx``);
    3. an ISO 639-1 or 639-3 code, an English name, or a BCP-47 tag with script and region
       subtags (``fr``, ``fra``, ``French``, ``fr-CA``, ``pt-BR``, ``nb``, ``zh-Hant-TW``).
       The region never has to match (``fr-CA`` gives ``fr_XX``), except to choose between
       several adapters of one language: for Chinese, ``Hant``, ``TW``, ``HK`` and ``MO`` pick
       ``zh_TW``, ``Hans``, ``CN``, ``SG`` and ``MY`` pick ``zh_CN``, and a bare ``zh`` picks
       :data:`DEFAULT_CHINESE` (``zh_CN``).

    Args:
        language: What the user typed.
        available: The checkpoint's adapters (``model.config.languages``); all 81 XMOD codes
            when omitted.

    Returns:
        The adapter code, a member of ``available``.

    Raises:
        UnknownLanguageError: the language is unknown, the checkpoint has no adapter for it, or it
            is ``"auto"`` (detection is per call, never one adapter). The message lists the
            closest codes and every adapter the checkpoint has.
        ArgumentTypeError: ``available`` is a single string rather than a list of codes.
    """
    if isinstance(available, (str, bytes)):
        raise ArgumentTypeError(
            f"available must be a list of adapter codes (e.g. model.languages), not the {type(available).__name__} "
            f"{available!r}; for one code write [{available!r}]."
        )
    available = list(XMOD_LANGUAGE_CODES if available is None else available)
    if not isinstance(language, str):
        raise UnknownLanguageError(language, available, [], "a language must be a string")
    if language in available:
        return language
    if language.strip().lower() == "auto":
        raise UnknownLanguageError(
            language, available, [],
            "'auto' is not one adapter: it asks predict/encode/rank/compute_score to detect each input's language "
            "(language='auto' per call); a default language, a saved language or a converted checkpoint needs one "
            "code such as 'fr'",
        )

    folded = _fold(language)
    for code in available:
        if _fold(code) == folded:
            return code
    if folded in _NAMED_CODES and _NAMED_CODES[folded] in available:
        return _NAMED_CODES[folded]

    base = _BASE_OF.get(folded)
    subtags: list[str] = []
    if base is None:
        primary, *subtags = folded.split("_") if folded else [""]
        base = _BASE_OF.get(primary)
    if base is None:
        return _raise(language, available, "not a language code, tag or English name known to XMOD")

    candidates = [code for code in available if _base_of_code(code) == base]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        chosen = _pick_chinese(candidates, subtags) if base == "zh" else None
        chosen = chosen or _pick_by_region(candidates, subtags) or _only_xmod_code(candidates)
        if chosen is not None:
            return chosen
        return _raise(language, available, f"several adapters match ({', '.join(candidates)}); name one",
                      suggestions=candidates)
    name = _name_of_base(base)
    return _raise(language, available, f"{name} is an XMOD language but this checkpoint has no adapter for it")


def _only_xmod_code(candidates: list[str]) -> str | None:
    """When a fine-tuned checkpoint adds regional variants, the one XMOD code among them is the default."""
    known = [code for code in candidates if code in _BY_CODE]
    return known[0] if len(known) == 1 else None


def _name_of_base(base: str) -> str:
    """English name of a base language, for error messages."""
    return next(lang.name for lang in XMOD_LANGUAGES if lang.iso1 == base)


def _raise(language: str, available: Sequence[str], reason: str, suggestions: Sequence[str] | None = None):
    raise UnknownLanguageError(
        language, available, _suggest(language, available) if suggestions is None else suggestions, reason
    )


def language_to_iso(code: str) -> str:
    """The ISO 639-1 code of an adapter (``zh_TW`` gives ``zh``), for model-card metadata.

    Codes outside the XMOD table fall back to their first subtag (``gsw_CH`` gives ``gsw``).
    """
    return _base_of_code(code) or _fold(code).split("_")[0]

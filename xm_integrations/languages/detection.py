"""Automatic language detection: choose the XMOD adapter for a text.

XMOD routes every input through the adapter of its language, so each query and passage needs a
language code. When the caller does not know it (mixed-language corpora, user queries), this
module guesses it with `py3langid <https://github.com/adbar/py3langid>`_, a naive-Bayes n-gram
identifier whose model ships inside its wheel (no download at run time) and whose 140 labels
cover all 81 XMOD languages. The choice was made by measurement on a hand-written held-out sample
of all 81 languages; see ``docs/language_detection.md`` and ``benchmarks/bench_language_detection.py``.

What this module adds on top of the library, and why:

* **Adapter codes, not ISO codes.** Labels are resolved with
  :func:`xm_integrations.languages.resolution.resolve_language` against the adapters the checkpoint actually
  has (``available``), so fine-tuned checkpoints with a subset of languages work.
* **Simplified vs Traditional Chinese.** The identifier only says ``zh``; XMOD has ``zh_CN`` and
  ``zh_TW``. :func:`chinese_script` counts characters that exist in only one of the two scripts.
* **A fallback instead of exceptions.** Empty text, digits or punctuation only, low confidence and
  languages without an adapter all get the fallback adapter, so one odd text never breaks a batch.
* **Laziness.** ``py3langid`` (and numpy) is imported and its model decompressed (~1 s) on the
  first call only, once per process, behind a lock; ``import xm_integrations`` stays fast.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, overload

from xm_integrations.errors import ArgumentTypeError, InvalidArgumentError, MissingExtraError
from xm_integrations.languages.resolution import XMOD_LANGUAGE_CODES, UnknownLanguageError, resolve_language

if TYPE_CHECKING:
    from py3langid.langid import LanguageIdentifier

__all__ = [
    "DEFAULT_MIN_CONFIDENCE",
    "MAX_DETECTION_CHARS",
    "chinese_script",
    "detect_language",
]

logger = logging.getLogger(__name__)

#: Below this probability the guess is treated as "unknown" and the fallback is used. py3langid's
#: probabilities are a softmax at temperature sqrt(bytes), so short texts get low values even when
#: right: on the sample of ``docs/language_detection.md`` the lowest right answer on a real query is
#: 0.155 ("ilm Tartus homme"), while names, codes and fragments ("FAQ", "Mozart", "hmm") that would
#: be sent to a wrong adapter all score below 0.1. Wrong guesses on real text are near neighbours
#: (Macedonian/Serbian, Malay/Indonesian) whose adapter still beats the fallback, so a higher
#: threshold only hurts: 0.5 would send 28 of 328 correct queries to English.
DEFAULT_MIN_CONFIDENCE = 0.1

#: Only the first characters of a text are looked at: the language of a passage is evident long
#: before its end, and this bounds the cost of very long documents (the identifier is linear in
#: the text length).
MAX_DETECTION_CHARS = 1000

# Identifier labels that are varieties, older stages or other scripts of a language that has an
# XMOD adapter, mapped to that language. The nearest adapter serves these texts better than the
# fallback (usually English) would.
_LABEL_ALIASES: dict[str, str] = {
    "arz": "ar",  # Egyptian Arabic
    "ary": "ar",  # Moroccan Arabic
    "bs": "hr",  # Bosnian (Latin script), closest to the Croatian adapter
    "sh": "hr",  # Serbo-Croatian in Latin script
    "hbo": "he",  # Biblical Hebrew
    "grc": "el",  # Ancient Greek
    "ltg": "lv",  # Latgalian
    "sdh": "ku",  # Southern Kurdish
    "ckb": "ku",  # Central Kurdish (Sorani)
    "uzs": "uz",  # Southern Uzbek (Arabic script)
    "azb": "az",  # South Azerbaijani
    "pnb": "pa",  # Western Punjabi (Shahmukhi script)
    "nb": "no",
    "nn": "no",
}

# Labels that mean "some Chinese": the script decides between zh_CN and zh_TW.
_CHINESE_LABELS = frozenset({"zh", "cmn", "yue", "wuu"})

# Labels that mean "not a language".
_NO_LANGUAGE_LABELS = frozenset({"", "und", "zxx", "un", "xxx"})

# Frequent characters that occur in only one of the two Chinese scripts, checked against the
# OpenCC character tables: a simplified form here never stands for itself in Traditional text
# (so 后, 里, 面, 台, 干, 只, 系 are left out), and a traditional form never in Simplified text.
_SIMPLIFIED_ONLY = frozenset(
    "这们国说时学与为会个来对过还没么样经现发开问间关门东车长书马鸟鱼龙见觉认让话语请读谁调论该错"
    "钱银铁电号机动场点热无爱买卖实写听头图团园远运进边连选办务业专两严临举义乐习乡乱亚产亲亿仅从"
    "优传伤储儿兴军农冻净处夺奋妇妈宁宝宽寻导将尔层岁岛币师带帮应庆库废张弹归当录彻忆态总战扩执扫"
    "扬护报担拥择换摄敌数断旧显条杨构标树桥检欢毕气汉汤沟济浅测满灯灵烧爷状独猪环画疗盐监码礼称积"
    "穷笔简类级纪约红纸线组细终结给绝统续维综网罗职联脑脸节艺药营蓝虑虽补装观规视计订讨训议记讲许"
    "设访证评识诉试诗诚详误课谈谢负贡财责败货质购贵费资赛轻较输辆达迁递释钟钢锅键闭闻阳阴队际陆险"
    "随难鸡页顶项顺须顾预领题颜风飞饭饮馆验鲜麦黄齐龄卫员圆坏块坚声备够奖孙宫审尽帅庄庙怀恶惊惯忧"
    "戏抢损摆暂杀权杂枪档梦楼欧残毁汇决泪洁涨渐温湾湿灾犹献畅疯盖矿离竞签粮紧练织绍继绩编罚聪肤胆"
    "舰苏荣获虾袭览触词询谊谋谱贝贴贸赶跃轮软转辞迟邮邻针铅链锁镜闹阅陈韩驾骑鸭龟乌壮吗脚尝厅区医"
    "华单卢压县参双变并复历术"
)
_TRADITIONAL_ONLY = frozenset(
    "這們國說時學與為會個來對過還沒麼樣經現發開問間關門東車長書馬鳥魚龍見覺認讓話語請讀誰調論該錯"
    "錢銀鐵電號機動場點熱無愛買賣實寫聽頭圖團園遠運進邊連選辦務萬業專兩嚴臨舉義樂習鄉亂亞產親億僅從"
    "優傳傷價儲兒興軍農凍淨處奪奮婦媽寧寶寬尋導將爾層歲島幣師帶幫廣應慶庫廢張彈歸當錄徹憶態總戰擴執"
    "掃揚護報擔擁擇換據攝敵數斷舊顯條楊極構標樹橋檢歡畢氣漢湯溝濟淺測滿燈靈燒爺狀獨豬環畫療鹽監碼確"
    "禮種稱積窮筆簡類級紀約紅紙線組細終結給絕統續維綜網羅職聯腦臉節藝藥營藍慮雖補裝觀規視計訂討訓議"
    "記講許設訪證評識訴試詩誠詳誤課談謝負貢財責敗貨質購貴費資賽輕較輸輛達遷遞釋鐘鋼鍋鍵閉聞陽陰隊際"
    "陸險隨難雞頁頂項順須顧預領題顏風飛飯飲館驗鮮麥黃齊齡衛員圓壞塊堅聲備夠獎孫宮審盡帥莊廟懷惡驚慣"
    "願憂戲搶損擺暫殺權雜槍檔夢樓歐殘毀匯決淚潔漲漸溫灣濕災猶獻暢瘋蓋礦離競築簽糧緊練織紹繼績編罰聰"
    "膚勝膽艦蘇榮獲蝦襲覽觸詞詢誼謀譜貝貼貿趕躍輪軟轉辭遲郵鄰針鉛鏈鎖鏡鬧閱陳韓駕騎鴨龜烏壯嗎腳嘗廳"
    "廠區醫華單盧壓縣參雙變葉後裡麵臺並隻幾係髮復歷術鬆範鍾豐雲餘爲溼裏麪"
)


def chinese_script(text: str) -> Literal["Hans", "Hant"] | None:
    """Tell Simplified (``"Hans"``) from Traditional (``"Hant"``) Chinese by its characters.

    Counts the characters of ``text`` that exist in only one of the two scripts (about 430 of the
    most frequent ones each way) and returns the script with more of them, or ``None`` when
    neither wins (no such character, a tie, or no Chinese at all). Short queries often hold one
    or two telling characters only, which is why any strict majority decides.
    """
    simplified = traditional = 0
    for char in text:
        if char in _SIMPLIFIED_ONLY:
            simplified += 1
        elif char in _TRADITIONAL_ONLY:
            traditional += 1
    if simplified > traditional:
        return "Hans"
    if traditional > simplified:
        return "Hant"
    return None


def _label_to_tag(label: str, text: str) -> str | None:
    """Turn an identifier label into a tag that :func:`resolve_language` understands.

    Returns ``None`` for labels that mean "no language". Chinese becomes ``zh-Hans`` or
    ``zh-Hant`` after the script check (plain ``zh``, i.e. the Simplified default, when the script
    check cannot tell); labels that already name a script or region (``zh-Hant``, ``zh-tw``) keep it.
    """
    label = label.strip()
    if label.lower() in _NO_LANGUAGE_LABELS:
        return None
    base = label.replace("_", "-").split("-")[0].lower()
    if base in _CHINESE_LABELS:
        if "-" in label.replace("_", "-"):
            return "zh-" + label.replace("_", "-").split("-", 1)[1]
        script = chinese_script(text)
        return f"zh-{script}" if script else "zh"
    return _LABEL_ALIASES.get(label, label)


def _has_letters(text: str) -> bool:
    """Whether the text holds anything to identify: digits, punctuation and symbols do not count."""
    return any(char.isalpha() for char in text)


class _Identifier:
    """The py3langid model, loaded once per process on first use.

    Loading is guarded by a lock so that threads calling :func:`detect_language` concurrently do
    not decompress the model twice; afterwards ``classify`` only reads the model (fresh numpy
    arrays per call), so it needs no lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._model: LanguageIdentifier | None = None

    def get(self) -> LanguageIdentifier:
        model = self._model
        if model is None:
            with self._lock:
                model = self._model
                if model is None:
                    model = self._load()
                    self._model = model
        return model

    @staticmethod
    def _load() -> LanguageIdentifier:
        try:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise MissingExtraError(
                "Automatic language detection needs py3langid: pip install 'py3langid>=0.4,<0.5'"
            ) from error
        # norm_probs=True gives probabilities in [0, 1], needed for the confidence threshold.
        return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def classify(self, text: str) -> tuple[str, float]:
        label, probability = self.get().classify(text)
        return str(label), float(probability)


_IDENTIFIER = _Identifier()


def _default_fallback(available: Sequence[str]) -> str:
    """English when the checkpoint has it (the language most retrieval text is in), else the first adapter."""
    try:
        return resolve_language("en", available)
    except UnknownLanguageError:
        return available[0]


@overload
def detect_language(  # type: ignore[overload-overlap]  # a str is also a Sequence[str]
    texts: str,
    available: Sequence[str] | None = None,
    *,
    fallback: str | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> str: ...


@overload
def detect_language(
    texts: Sequence[str],
    available: Sequence[str] | None = None,
    *,
    fallback: str | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> list[str]: ...


def detect_language(
    texts: str | Sequence[str],
    available: Sequence[str] | None = None,
    *,
    fallback: str | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> str | list[str]:
    """Guess the XMOD adapter for one text or for each text of a list.

    Args:
        texts: One text, or a sequence of texts. A single ``str`` gives a single code; a sequence
            gives a list of the same length and order.
        available: The checkpoint's adapters (``model.config.languages``); all 81 XMOD codes when
            omitted. Every returned code is a member of it.
        fallback: The adapter for texts whose language cannot be used (see below); any form that
            :func:`~xm_integrations.languages.resolution.resolve_language` accepts (``"de"``, ``"German"``).
            Defaults to English (``en_XX``, or whatever ``"en"`` resolves to in ``available``),
            or to ``available[0]`` when the checkpoint has no English adapter.
        min_confidence: Guesses with a lower probability count as unidentified. ``0`` keeps every
            guess.

    Returns:
        An adapter code, or a list of them.

    A text gets the fallback adapter, never an exception, when it is not a string, is empty or
    holds no letters (digits, punctuation, emoji), when the guess is below ``min_confidence``,
    or when the guessed language has no adapter in ``available``. Chinese is split into ``zh_TW``
    and ``zh_CN`` by :func:`chinese_script`; undecided Chinese counts as Simplified (``zh_CN``,
    as :func:`resolve_language` does for a bare ``zh``), and with one Chinese adapter only, all
    Chinese goes to it.

    Raises:
        ValueError: ``available`` is empty.
        UnknownLanguageError: ``fallback`` matches no adapter in ``available``. Both are checked
            before any text is looked at.
        TypeError: ``texts`` is neither a string nor a sequence (``bytes`` included: decode first).
    """
    adapters = list(available) if available is not None else None
    if adapters is not None and not adapters:
        raise InvalidArgumentError("available must name at least one adapter")
    candidates: Sequence[str] = adapters if adapters is not None else XMOD_LANGUAGE_CODES
    fallback_code = resolve_language(fallback, adapters) if fallback is not None else _default_fallback(candidates)

    single = isinstance(texts, str)
    if not single and (not isinstance(texts, Sequence) or isinstance(texts, (bytes, bytearray))):
        raise ArgumentTypeError(f"texts must be a string or a sequence of strings, not {type(texts).__name__}")
    batch: Sequence[object] = [texts] if single else texts
    samples = [text[:MAX_DETECTION_CHARS] if isinstance(text, str) else None for text in batch]
    if any(sample is not None and _has_letters(sample) for sample in samples):
        _IDENTIFIER.get()  # load (or fail to import) before the first text, not in the middle
    codes = [_detect_one(sample, adapters, fallback_code, min_confidence) for sample in samples]
    return codes[0] if single else codes


def _detect_one(sample: str | None, available: Sequence[str] | None, fallback: str, min_confidence: float) -> str:
    """Detect one (truncated) text; every failure ends in ``fallback`` so that batches never break halfway."""
    if sample is None or not _has_letters(sample):
        return fallback
    try:
        label, probability = _IDENTIFIER.classify(sample)
    except Exception:  # one undecodable text must not break a batch
        logger.debug("language identification failed for %r", sample[:80], exc_info=True)
        return fallback
    if probability < min_confidence:
        return fallback
    tag = _label_to_tag(label, sample)
    if tag is None:
        return fallback
    try:
        return resolve_language(tag, available)
    except UnknownLanguageError:
        return fallback

"""A few sentences per language: the training text of the tiny tokenizer and the demo's passages.

Kept in code rather than downloaded so that every build of the tiny checkpoints is identical.
"""

from __future__ import annotations

#: Passages by XMOD adapter code, about the same few topics in each language, so that a
#: cross-lingual query has a right answer in every language.
SAMPLE_PASSAGES: dict[str, list[str]] = {
    "en_XX": [
        "The Eiffel Tower was built in Paris for the 1889 World's Fair.",
        "Photosynthesis turns sunlight, water and carbon dioxide into sugar and oxygen.",
        "The Amazon is the largest rainforest on Earth and produces much of its oxygen.",
        "A cup of green tea contains less caffeine than a cup of coffee.",
    ],
    "fr_XX": [
        "La tour Eiffel a été construite à Paris pour l'Exposition universelle de 1889.",
        "La photosynthèse transforme la lumière, l'eau et le dioxyde de carbone en sucre et en oxygène.",
        "L'Amazonie est la plus grande forêt tropicale du monde.",
        "Une tasse de thé vert contient moins de caféine qu'une tasse de café.",
    ],
    "de_DE": [
        "Der Eiffelturm wurde für die Weltausstellung 1889 in Paris gebaut.",
        "Die Photosynthese wandelt Sonnenlicht, Wasser und Kohlendioxid in Zucker und Sauerstoff um.",
        "Der Amazonas-Regenwald ist der größte tropische Regenwald der Erde.",
        "Eine Tasse grüner Tee enthält weniger Koffein als eine Tasse Kaffee.",
    ],
    "es_XX": [
        "La Torre Eiffel se construyó en París para la Exposición Universal de 1889.",
        "La fotosíntesis convierte la luz solar, el agua y el dióxido de carbono en azúcar y oxígeno.",
        "La Amazonía es la selva tropical más grande del planeta.",
        "Una taza de té verde contiene menos cafeína que una taza de café.",
    ],
    "pt_XX": [
        "A Torre Eiffel foi construída em Paris para a Exposição Universal de 1889.",
        "A fotossíntese transforma luz solar, água e dióxido de carbono em açúcar e oxigênio.",
        "A Amazônia é a maior floresta tropical do mundo.",
    ],
    "it_IT": [
        "La Torre Eiffel fu costruita a Parigi per l'Esposizione universale del 1889.",
        "La fotosintesi trasforma la luce del sole, l'acqua e l'anidride carbonica in zucchero e ossigeno.",
    ],
    "nl_XX": [
        "De Eiffeltoren werd gebouwd in Parijs voor de Wereldtentoonstelling van 1889.",
        "Fotosynthese zet zonlicht, water en koolstofdioxide om in suiker en zuurstof.",
    ],
    "ru_RU": [
        "Эйфелева башня была построена в Париже к Всемирной выставке 1889 года.",
        "Фотосинтез превращает солнечный свет, воду и углекислый газ в сахар и кислород.",
    ],
    "zh_CN": [
        "埃菲尔铁塔是为1889年世界博览会在巴黎建造的。",
        "光合作用把阳光、水和二氧化碳转化为糖和氧气。",
        "亚马逊雨林是地球上最大的热带雨林。",
    ],
    "zh_TW": [
        "艾菲爾鐵塔是為1889年世界博覽會在巴黎建造的。",
        "光合作用把陽光、水和二氧化碳轉化為糖和氧氣。",
    ],
    "ja_XX": [
        "エッフェル塔は1889年の万国博覧会のためにパリに建てられました。",
        "光合成は太陽の光と水と二酸化炭素を糖と酸素に変えます。",
    ],
    "ar_AR": [
        "بني برج إيفل في باريس للمعرض العالمي عام 1889.",
        "يحول التمثيل الضوئي ضوء الشمس والماء وثاني أكسيد الكربون إلى سكر وأكسجين.",
    ],
    "hi_IN": ["एफिल टॉवर 1889 के विश्व मेले के लिए पेरिस में बनाया गया था।"],
    "ko_KR": ["에펠탑은 1889년 만국박람회를 위해 파리에 세워졌다."],
    "el_GR": ["Ο Πύργος του Άιφελ χτίστηκε στο Παρίσι για την Παγκόσμια Έκθεση του 1889."],
    "no_XX": ["Eiffeltårnet ble bygget i Paris til verdensutstillingen i 1889."],
    "sw_KE": ["Mnara wa Eiffel ulijengwa Paris kwa maonyesho ya dunia ya mwaka 1889."],
}

#: Queries for the demo, by language, each answered by a passage in every language above.
SAMPLE_QUERIES: dict[str, str] = {
    "en_XX": "When was the Eiffel Tower built?",
    "fr_XX": "Combien de caféine dans le thé vert ?",
    "de_DE": "Was ist Photosynthese?",
}


def synthetic_passages(count: int, *, seed: int = 0, min_words: int = 5, max_words: int = 30) -> list[dict]:
    """``count`` deterministic passages for index tests and benchmarks, as the command line's JSON lines.

    Each passage mixes words of one language's :data:`SAMPLE_PASSAGES` (cycling through the
    languages), with ``id`` (``"p0"``, ``"p1"``, ...), ``language`` (its adapter code), and two
    metadata fields to filter on: ``year`` (2000-2019) and ``source`` (``"news"`` for every third
    passage, else ``"wiki"``).
    """
    import random

    rng = random.Random(seed)
    languages = list(SAMPLE_PASSAGES)
    vocabulary = {code: " ".join(texts).split() for code, texts in SAMPLE_PASSAGES.items()}
    passages = []
    for position in range(count):
        code = languages[position % len(languages)]
        words = rng.choices(vocabulary[code], k=rng.randint(min_words, max_words))
        passages.append({"id": f"p{position}", "text": " ".join(words), "language": code,
                         "year": 2000 + position % 20, "source": "news" if position % 3 == 0 else "wiki"})
    return passages

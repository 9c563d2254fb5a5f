"""Real-looking multilingual text for synthetic events: names, site descriptions, participants' notes."""

import random

# Sentences a participant might jot down during a visit, in the languages of an international event.
NOTE_SENTENCES: dict[str, list[str]] = {
    "en": [
        "The time bank counts hours, not money: one hour of help is worth one hour, whoever gives it.",
        "About 300 members, most of them retired; the coordinator says the hard part is keeping younger people.",
        "They rent the ground floor from the city for a symbolic fee, renewed every six years.",
        "Ask how they measure social impact — they showed a yearly report but no indicators.",
        "Work integration: 40% of the workers come from long-term unemployment or prison.",
        "Repair café on Saturdays. Could we copy this in our district?",
        "The cooperative sells to the municipality through reserved public contracts (social clauses).",
        "Funding: a third from services, a third from grants, a third from members' fees.",
        "Very good translation during the visit; the host answered every question.",
        "Follow up: send them our training material on cooperative governance.",
    ],
    "fr": [
        "La maison de quartier est gérée par une association, mais le bâtiment appartient à la ville.",
        "Environ 60 salariés, dont la moitié en insertion ; les contrats durent deux ans au maximum.",
        "Idée à reprendre chez nous : un comptoir d'échange de services entre voisins.",
        "Ils insistent sur la gouvernance : une personne, une voix, quel que soit le capital apporté.",
        "Demander les statuts de la coopérative sociale de type B pour notre ministère.",
        "Le financement public baisse chaque année ; ils cherchent à vendre davantage aux entreprises.",
        "Visite très concrète, mais trop courte pour voir les ateliers.",
        "Les bénévoles tiennent l'accueil le soir et le week-end.",
    ],
    "es": [
        "La cooperativa recupera muebles y electrodomésticos y los vende en su tienda de segunda mano.",
        "Preguntar cómo funciona la cláusula social en las licitaciones del ayuntamiento.",
        "Tienen una red de casas de barrio que comparten personal administrativo.",
        "Muy interesante para nuestro programa de empleo juvenil en Bogotá.",
        "Los socios trabajadores eligen a la junta cada tres años.",
        "El edificio era una antigua fábrica; la rehabilitación la pagaron fondos europeos.",
        "Me gustaría un contacto para un intercambio de experiencias el próximo año.",
    ],
    "it": [
        "La casa del quartiere ospita più di 50 associazioni e un bar gestito da una cooperativa.",
        "Cooperativa sociale di tipo B: almeno il 30% dei lavoratori svantaggiati, come prevede la legge 381.",
        "Il comune concede gli spazi in comodato d'uso; le utenze sono a carico della cooperativa.",
        "Chiedere il bilancio sociale dell'anno scorso.",
        "Orari lunghi: aperto dalle 9 alle 23, sette giorni su sette.",
        "Progetto di portierato di quartiere molto interessante per i servizi agli anziani.",
    ],
    "ar": [
        "تعمل التعاونية مع البلدية من خلال عقود عامة مخصصة للمؤسسات الاجتماعية.",
        "يبلغ عدد الأعضاء حوالي ثلاثمئة، ومعظمهم من المتقاعدين.",
        "فكرة مفيدة لبلدنا: بنك الوقت لتبادل الخدمات بين الجيران.",
        "يجب أن أسأل عن طريقة قياس الأثر الاجتماعي.",
        "المبنى ملك للمدينة ويُؤجَّر للجمعية برسوم رمزية.",
    ],
    "pt-BR": [
        "A cooperativa de catadores separa o lixo reciclável para três bairros.",
        "Perguntar sobre a lei italiana das cooperativas sociais para o nosso projeto em Recife.",
        "A associação de moradores administra o espaço junto com a prefeitura.",
        "Muito parecido com os nossos empreendimentos de economia solidária.",
    ],
    "vi": [
        "Hợp tác xã xã hội tạo việc làm cho người khuyết tật và người thất nghiệp lâu năm.",
        "Cần hỏi thêm về cơ chế hỗ trợ của chính quyền thành phố.",
        "Mô hình nhà cộng đồng này có thể áp dụng ở Hà Nội.",
        "Ngân hàng thời gian: một giờ giúp đỡ đổi lấy một giờ giúp đỡ.",
    ],
    "sw": [
        "Chama cha ushirika kinauza bidhaa zake kwa manispaa kupitia zabuni maalum.",
        "Wanachama wanachagua bodi kila baada ya miaka mitatu.",
        "Wazo zuri kwa vikundi vya vijana nyumbani Nairobi.",
    ],
    "zh": [
        "这家社会合作社为长期失业者和残疾人提供工作岗位。",
        "社区之家由协会管理,但房屋属于市政府。",
        "可以借鉴他们的时间银行:一小时的帮助换一小时的帮助。",
        "需要询问他们如何衡量社会影响。",
    ],
    "ru": [
        "Кооператив получает муниципальные заказы через социальные условия в тендерах.",
        "Около трёхсот членов, в основном пенсионеры.",
        "Спросить о налоговых льготах для социальных кооперативов.",
    ],
    "ko": [
        "사회적 협동조합이 장기 실업자에게 일자리를 제공한다.",
        "마을회관은 시 소유 건물이며 협회가 운영한다.",
        "우리 지역에도 시간 은행을 도입할 수 있을 것 같다.",
    ],
    "tr": [
        "Kooperatif, belediyeyle sosyal maddeli ihaleler üzerinden çalışıyor.",
        "Mahalle evi bir dernek tarafından yönetiliyor, bina belediyenin.",
        "Sosyal etkiyi nasıl ölçtüklerini sormak gerekiyor.",
    ],
}
LANGUAGES = list(NOTE_SENTENCES)
TAGS = [
    "time-bank",
    "governance",
    "funding",
    "work-integration",
    "public-procurement",
    "follow-up",
    "housing",
    "youth",
    "circular-economy",
    "care",
    "legal-form",
    "idea",
]

# Country, language and given/family names, so names come in many scripts.
PEOPLE: list[tuple[str, str, list[str], list[str]]] = [
    ("IT", "it", ["Marta", "Luca", "Elena", "Giorgio", "Chiara"], ["Bianchi", "Ferrero", "Marchetti", "Rossi"]),
    ("VN", "vi", ["Hoa", "Minh", "Lan", "Tuấn"], ["Nguyễn Thị", "Trần Văn", "Lê Thị", "Phạm"]),
    ("FR", "fr", ["Camille", "Étienne", "Aïcha", "Hélène"], ["Dubois", "Lefèvre", "Benali", "Moreau"]),
    ("SN", "fr", ["Awa", "Mamadou", "Fatou", "Ousmane"], ["Diop", "Ndiaye", "Sow", "Fall"]),
    ("MA", "ar", ["يوسف", "فاطمة", "أمين", "سلمى"], ["العلوي", "بنعلي", "الإدريسي"]),
    ("EG", "ar", ["أحمد", "منى", "كريم"], ["حسن", "سعيد", "عبد الله"]),
    ("CO", "es", ["Camila", "Andrés", "Valentina", "Julián"], ["Gómez", "Rodríguez", "Muñoz", "Peña"]),
    ("ES", "es", ["Lucía", "Jordi", "Nuria"], ["García", "Puig", "Fernández"]),
    ("BR", "pt-BR", ["João", "Ana Clara", "Luíza", "Thiago"], ["Souza", "Oliveira", "Conceição", "Araújo"]),
    ("KE", "sw", ["Wanjiru", "Otieno", "Achieng", "Kamau"], ["Mwangi", "Odhiambo", "Njoroge"]),
    ("CN", "zh", ["伟", "芳", "静", "磊"], ["王", "李", "张", "刘"]),
    ("RU", "ru", ["Анна", "Дмитрий", "Ольга"], ["Иванова", "Смирнов", "Кузнецова"]),
    ("KR", "ko", ["지민", "서연", "민준"], ["김", "이", "박"]),
    ("TR", "tr", ["Ayşe", "Mehmet", "Zeynep"], ["Yılmaz", "Kaya", "Demir"]),
    ("GB", "en", ["Olivia", "Samuel", "Priya"], ["Smith", "Okafor", "Patel"]),
]
ORGANIZATIONS = [
    "Ministry of Labour",
    "National Cooperative Federation",
    "Municipality social services",
    "Workers' union",
    "Employers' association",
    "Social enterprise network",
    "",
]

SITE_WORDS: dict[str, list[str]] = {
    "prefix": ["Casa del Quartiere", "Cooperativa Sociale", "Associazione", "Bottega Solidale", "Rete", "Fondazione"],
    "name": ["San Salvario", "Barriera", "Aurora", "Vanchiglia", "Borgo Po", "Mirafiori", "Lingotto", "Crocetta"],
    "suffix": ["", " Insieme", " Aperta", " Futuro", " Comune", " Bene Comune"],
}
SITE_KINDS = [
    "social_cooperative",
    "worker_cooperative",
    "consumer_cooperative",
    "social_enterprise",
    "association",
    "foundation",
    "community_house",
    "network",
]
THEMES = [
    "neighbourhood welfare",
    "work integration",
    "circular economy",
    "housing",
    "food",
    "culture",
    "care for the elderly",
    "migrants' inclusion",
    "renewable energy",
    "fair trade",
]
DESCRIPTION_TEMPLATES: dict[str, str] = {
    "en": (
        "{name} works in {district} on {theme}. It was founded in {year} by residents and local "
        "associations, and today counts about {members} members and {workers} workers. Visitors see how "
        "it combines services sold to the city with volunteering, and how its members govern it: one "
        "person, one vote."
    ),
    "fr": (
        "{name} agit à {district} dans le domaine suivant : {theme}. Fondée en {year} par des habitants et "
        "des associations du quartier, elle compte aujourd'hui environ {members} membres et {workers} "
        "salariés. La visite montre comment elle associe des services vendus à la ville et le bénévolat, "
        "et comment ses membres la gouvernent : une personne, une voix."
    ),
    "es": (
        "{name} trabaja en {district} en el ámbito de {theme}. Fue fundada en {year} por vecinos y "
        "asociaciones locales y hoy cuenta con unos {members} socios y {workers} trabajadores. La visita "
        "muestra cómo combina servicios vendidos al ayuntamiento con voluntariado, y cómo la gobiernan sus "
        "socios: una persona, un voto."
    ),
    "it": (
        "{name} opera a {district} nel campo di {theme}. È nata nel {year} per iniziativa di abitanti e "
        "associazioni del territorio e oggi conta circa {members} soci e {workers} lavoratori. La visita "
        "mostra come unisce servizi venduti al Comune e volontariato, e come la governano i soci: una "
        "testa, un voto."
    ),
    "ar": (
        "تعمل {name} في حي {district} في مجال {theme}. تأسست عام {year} بمبادرة من السكان والجمعيات "
        "المحلية، ويبلغ عدد أعضائها اليوم نحو {members} عضوًا و{workers} عاملًا. تُظهر الزيارة كيف تجمع "
        "بين الخدمات التي تبيعها للمدينة والعمل التطوعي، وكيف يديرها أعضاؤها: شخص واحد، صوت واحد."
    ),
}


def person(rng: random.Random) -> tuple[str, str, str]:
    """A (name, language, country) triple."""
    country, language, given, family = rng.choice(PEOPLE)
    if language in ("zh", "ko"):
        return rng.choice(family) + rng.choice(given), language, country
    return f"{rng.choice(given)} {rng.choice(family)}", language, country


def note_body(rng: random.Random, language: str) -> str:
    """One to four sentences, mostly in the author's language, sometimes with an English line."""
    pool = NOTE_SENTENCES.get(language) or NOTE_SENTENCES["en"]
    sentences = [rng.choice(pool) for _ in range(rng.randint(1, 4))]
    if language != "en" and rng.random() < 0.2:
        sentences.append(rng.choice(NOTE_SENTENCES["en"]))
    return " ".join(sentences)


def site_name(rng: random.Random, number: int) -> str:
    """A plausible Turin SSE organisation name, unique by its number."""
    words = SITE_WORDS
    return f"{rng.choice(words['prefix'])} {rng.choice(words['name'])}{rng.choice(words['suffix'])} {number}"


def site_description(rng: random.Random, name: str, district: str, theme: str) -> dict[str, str]:
    """The site's description in en, fr, es, it and, for about a third of sites, ar."""
    values = {
        "name": name,
        "district": district,
        "theme": theme,
        "year": rng.randint(1975, 2022),
        "members": rng.randint(20, 900),
        "workers": rng.randint(2, 120),
    }
    languages = ["en", "fr", "es", "it"] + (["ar"] if rng.random() < 0.33 else [])
    return {lang: DESCRIPTION_TEMPLATES[lang].format(**values) for lang in languages}

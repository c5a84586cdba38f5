"""The words the zero-shot prior embeds for each Topics topic: its path plus a short description.

Every top-level topic has a short description written here (what pages under it are about); a
deeper topic is described by the words of its path, most specific first, so
``/Sports/Basketball`` reads ``Basketball. Sports``. :func:`topic_text` is what the categoriser's
prior (:mod:`vane.client.categorize`) and the evaluation embed.
"""

from __future__ import annotations

from vane.shared.topics import Topic, topics

#: One short description per top-level topic (keyed by path), in plain words.
TOP_LEVEL_DESCRIPTIONS: dict[str, str] = {
    "/Arts & Entertainment": "movies, music, television, celebrities, comics, theatre, concerts and art",
    "/Autos & Vehicles": "cars, motorcycles, trucks, bicycles, boats, car reviews, parts and repair",
    "/Beauty & Fitness": "make-up, skin and hair care, fashion and style, fitness, gyms and workouts",
    "/Books & Literature": "books, novels, authors, poetry, magazines, audiobooks and writing",
    "/Business & Industrial": "companies, marketing, industry, construction, logistics and business services",
    "/Computers & Electronics": "computers, software, programming, gadgets, consumer electronics and cyber security",
    "/Finance": "banking, money, investing, stocks, loans, credit cards, insurance and taxes",
    "/Food & Drink": "cooking, recipes, food, restaurants, drinks and food delivery",
    "/Games": "video games, computer games, board games and gaming consoles",
    "/Hobbies & Leisure": "hobbies, crafts, outdoors, fishing, camping, hiking and holidays",
    "/Home & Garden": "home improvement, furniture, interior decor, appliances, gardening and cleaning",
    "/Internet & Telecom": "internet services, email, web hosting, mobile phones and telecom providers",
    "/Jobs & Education": "jobs, careers, job listings, schools, universities, courses and learning",
    "/Law & Government": "law, courts, lawyers, government agencies, public services and regulation",
    "/News": "news, current events, politics, world news, local news and business news",
    "/Online Communities": "social networks, online forums, communities, dating and user discussions",
    "/People & Society": "family, parenting, relationships, religion, charity and social issues",
    "/Pets & Animals": "pets, dogs, cats, animals, wildlife and pet care",
    "/Real Estate": "houses and apartments for sale or rent, property listings and real estate agents",
    "/Shopping": "online shopping, stores, clothing, deals, coupons, gifts and product reviews",
    "/Sports": "sports, football, soccer, basketball, tennis, athletes, teams, matches and scores",
    "/Travel & Transportation": "travel, flights, hotels, vacations, tourism, trains, car rentals and maps",
}


def topic_text(topic: Topic) -> str:
    """The text embedded for ``topic``: a top-level topic's name and description, or a deeper one's path words."""
    if topic.parent is None:
        return f"{topic.name}: {TOP_LEVEL_DESCRIPTIONS[topic.path]}"
    return ". ".join(reversed(topic.parts))


def all_topic_texts() -> list[str]:
    """:func:`topic_text` for every topic, in ascending id order (the order of ``builtin:topics`` after ``other``)."""
    return [topic_text(t) for t in topics()]

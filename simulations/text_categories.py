"""Descriptions of HuffPost's 29 categories, the texts the zero-shot prior embeds for the text evaluation.

HuffPost's editors filed each headline under one of 29 sections of their own (not Topics paths), so the
evaluation's prior, centroids and heads are over these 29 labels. Each description is a short sentence
written here from the section's name (what such a section covers); the prior embeds
``"<name>: <description>"`` and scores a headline by the cosine of the two embeddings.
"""

from __future__ import annotations

DESCRIPTIONS: dict[str, str] = {
    "BLACK VOICES": "Black Americans, racism, civil rights, Black culture and communities",
    "BUSINESS": "companies, corporations, markets, jobs, the economy and industry",
    "COMEDY": "late-night comedy shows, comedians, jokes, satire and funny videos",
    "CRIME": "police, shootings, murders, arrests, courts and criminal trials",
    "CULTURE & ARTS": "art, museums, books, theatre, artists and culture",
    "EDUCATION": "schools, teachers, students, colleges and universities",
    "ENTERTAINMENT": "celebrities, movies, television, music, Hollywood stars",
    "ENVIRONMENT": "climate change, wildlife, pollution, wildfires and nature",
    "FOOD & DRINK": "recipes, cooking, restaurants, food and drinks",
    "HOME & LIVING": "home, house, decorating, cleaning, products to buy and living",
    "IMPACT": "charity, volunteering, helping others, poverty and social good",
    "LATINO VOICES": "Latinos, Hispanic Americans, Latin American culture and immigration",
    "MEDIA": "journalists, news media, Fox News, television networks and the press",
    "MONEY": "personal finance, saving money, taxes, debt, credit and investing",
    "PARENTING": "parents, children, kids, babies, moms and dads, family life",
    "POLITICS": "politics, Congress, Trump, Biden, Republicans, Democrats, elections",
    "QUEER VOICES": "LGBTQ people, gay, lesbian, transgender, queer rights and Pride",
    "RELIGION": "religion, church, faith, Christians, Muslims, the Pope and belief",
    "SCIENCE": "science, space, NASA, research, scientists and discoveries",
    "SPORTS": "sports, football, basketball, NFL, NBA, athletes and games",
    "STYLE & BEAUTY": "fashion, style, beauty, clothes, makeup and shopping",
    "TECH": "technology, apps, internet, social media companies, gadgets",
    "TRAVEL": "travel, vacations, flights, airlines, hotels and destinations",
    "U.S. NEWS": "news from across the United States, COVID, weather, disasters and accidents",
    "WEDDINGS": "weddings, brides, marriage proposals and couples",
    "WEIRD NEWS": "weird, strange and bizarre news, odd animals and unusual events",
    "WELLNESS": "health, wellness, fitness, sleep, mental health and medicine",
    "WOMEN": "women, feminism, gender equality, abortion rights and women's lives",
    "WORLD NEWS": "international news, Ukraine, Russia, China, wars and foreign countries",
}


def category_texts(categories: list[str]) -> list[str]:
    """``"<name>: <description>"`` for each category (the bare name when it has no description)."""
    return [f"{name.title()}: {DESCRIPTIONS[name]}" if name in DESCRIPTIONS else name.title() for name in categories]

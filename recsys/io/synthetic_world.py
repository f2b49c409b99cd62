"""The world the synthetic shop draws from: its catalogue, its customers' tastes and rhythms.

:mod:`recsys.io.synthetic` draws the events of each chunk of customers from a :class:`World`;
the catalogue side (:class:`ShopItems`) is drawn once and shared by every chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from recsys.schema import CATALOG_COLUMNS, EVENT_TYPES

CATEGORY_NOUNS: Final[dict[str, tuple[float, tuple[str, ...]]]] = {
    "kitchen & dining": (4.0, ("MUG", "TEAPOT", "CAKE STAND", "BOWL", "PLATE", "JUG")),
    "candles & lights": (3.0, ("CANDLE", "T-LIGHT HOLDER", "LANTERN", "FAIRY LIGHTS", "LAMP")),
    "stationery & wrap": (1.5, ("GREETING CARD", "WRAPPING PAPER", "NOTEBOOK", "STICKERS")),
    "bags": (2.5, ("SHOPPER BAG", "LUNCH BAG", "TOTE", "WASHBAG")),
    "christmas": (3.5, ("CHRISTMAS BAUBLE", "ADVENT CALENDAR", "CHRISTMAS STOCKING", "SANTA")),
    "jewellery & accessories": (6.0, ("NECKLACE", "BRACELET", "EARRINGS", "PURSE", "HAIR CLIP")),
    "storage": (5.0, ("STORAGE TIN", "TRINKET BOX", "BASKET", "STORAGE CRATE")),
    "garden & outdoor": (6.5, ("PLANT POT", "WATERING CAN", "BIRD FEEDER", "HAMMOCK")),
    "toys & games": (4.5, ("JIGSAW", "SKITTLES", "RAG DOLL", "SPINNING TOP")),
    "party & crafts": (2.0, ("PARTY BUNTING", "BIRTHDAY BANNER", "CONFETTI", "SEWING NEEDLES")),
    "bath & beauty": (3.0, ("SOAP", "BATH SPONGE", "HAND TOWEL", "LIP BALM")),
    "home decor": (8.0, ("CUSHION COVER", "PHOTO FRAME", "WALL CLOCK", "DOORMAT", "MIRROR")),
}
STYLES: Final[tuple[str, ...]] = (
    "VINTAGE",
    "RETROSPOT",
    "POLKADOT",
    "PAISLEY",
    "REGENCY",
    "SCANDINAVIAN",
    "FOLKART",
    "BAROQUE",
)
COLOURS: Final[tuple[str, ...]] = ("RED", "BLUE", "PINK", "GREEN", "IVORY", "WHITE", "BLACK")
OFFERS: Final[tuple[str, ...]] = ("WELCOME10", "WINBACK15", "LOYALTY5", "CART10")
EVENT_CODE = {name: code for code, name in enumerate(EVENT_TYPES)}
MINUTE: Final[float] = 1.0 / 1440.0


@dataclass
class Block:
    """A batch of events as parallel arrays (indices into the world; -1 for none)."""

    customer: np.ndarray
    kind: np.ndarray
    day: np.ndarray
    item: np.ndarray
    quantity: np.ndarray
    order: np.ndarray
    props: np.ndarray  # object: JSON text or None


def make_block(
    customer: np.ndarray,
    kind: int,
    day: np.ndarray,
    item: np.ndarray | None = None,
    quantity: np.ndarray | float | None = None,
    order: np.ndarray | None = None,
    props: np.ndarray | None = None,
) -> Block:
    n = len(customer)
    return Block(
        np.asarray(customer, dtype=np.int64),
        np.full(n, kind, dtype=np.int8),
        np.asarray(day, dtype=np.float64),
        np.full(n, -1, np.int64) if item is None else np.asarray(item, np.int64),
        np.broadcast_to(np.nan if quantity is None else quantity, (n,)).astype(np.float64),
        np.full(n, -1, np.int64) if order is None else np.asarray(order, np.int64),
        np.full(n, None, dtype=object) if props is None else np.asarray(props, dtype=object),
    )


@dataclass(frozen=True)
class World:
    rng: np.random.Generator
    days: int
    item_category: np.ndarray
    item_price: np.ndarray
    taste_cum: np.ndarray  # (customers, categories) cumulative taste
    item_key: np.ndarray  # category + cumulative popularity within it, ascending
    item_order: np.ndarray  # the item behind each key
    start: np.ndarray  # sign-up day
    end: np.ndarray  # churn day, or the end of the window
    favourites: np.ndarray  # (customers, 6)
    n_favourites: np.ndarray

    def pick(self, customers: np.ndarray) -> np.ndarray:
        """One item per entry, drawn from the customer's taste, then popularity in category."""
        categories = self.taste_cum.shape[1]
        u = self.rng.random(len(customers))
        cat = np.minimum((self.taste_cum[customers] < u[:, None]).sum(axis=1), categories - 1)
        pos = np.searchsorted(self.item_key, cat + self.rng.random(len(customers)), "right")
        return self.item_order[np.minimum(pos, len(self.item_order) - 1)]


def draw_catalog(rng: np.random.Generator, items: int) -> tuple[pd.DataFrame, np.ndarray, int]:
    names = list(CATEGORY_NOUNS)[: min(len(CATEGORY_NOUNS), items)]
    category = rng.permutation(np.arange(items) % len(names))
    level = np.array([CATEGORY_NOUNS[n][0] for n in names])[category]
    price = np.maximum(0.25, np.round(level * rng.lognormal(0.0, 0.4, items) / 0.05) * 0.05)
    nouns = [CATEGORY_NOUNS[n][1] for n in names]
    table = np.array([[*row, *row[:1] * (6 - len(row))] for row in nouns], dtype=object)
    sizes = np.array([len(row) for row in nouns])
    noun = table[category, rng.integers(0, sizes[category])]
    style = rng.choice(np.array(STYLES, dtype=object), items)
    colour = rng.choice(np.array(COLOURS, dtype=object), items)
    catalog = pd.DataFrame(
        {
            "item_id": [f"I{n:05d}" for n in range(1, items + 1)],
            "title": style + " " + colour + " " + noun,
            "category": np.array(names, dtype=object)[category],
            "price": np.round(price, 2),
            "in_stock": rng.random(items) > 0.03,
        }
    ).astype({"item_id": "string", "title": "string", "category": "string"})
    return catalog.loc[:, list(CATALOG_COLUMNS)], category, len(names)


@dataclass(frozen=True)
class ShopItems:
    """The catalogue side of the world, shared by every chunk of customers."""

    catalog: pd.DataFrame
    category: np.ndarray
    categories: int
    item_key: np.ndarray
    item_order: np.ndarray


def draw_items(rng: np.random.Generator, items: int) -> ShopItems:
    catalog, category, k = draw_catalog(rng, items)
    weight = rng.lognormal(0.0, 1.0, items)
    order = np.argsort(category, kind="stable")
    sorted_cat = category[order]
    running = np.cumsum(weight[order])
    total = np.bincount(sorted_cat, weights=weight[order], minlength=k)
    before = np.r_[0.0, np.cumsum(total)[:-1]]
    cum = (running - before[sorted_cat]) / total[sorted_cat]
    cum[np.r_[sorted_cat[1:] != sorted_cat[:-1], True]] = 1.0  # each category ends at exactly 1
    return ShopItems(catalog, category, k, sorted_cat + cum, order)


def draw_world(rng: np.random.Generator, shop: ShopItems, customers: int, days: int) -> World:
    k = shop.categories
    taste = rng.dirichlet(np.full(k, 0.25), customers)
    start = np.where(rng.random(customers) < 0.4, 0.0, rng.uniform(0, 0.75 * days, customers))
    churn = rng.random(customers) < 0.25
    end = np.where(churn, start + rng.uniform(0.2, 0.8, customers) * (days - start), days)
    world = World(
        rng,
        days,
        shop.category,
        shop.catalog["price"].to_numpy(),
        np.cumsum(taste, axis=1),
        shop.item_key,
        shop.item_order,
        start,
        end,
        np.zeros((customers, 6), np.int64),
        rng.integers(2, 7, customers),
    )
    world.favourites[:] = world.pick(np.repeat(np.arange(customers), 6)).reshape(customers, 6)
    return world

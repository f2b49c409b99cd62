"""The UCI Online Retail format and its quirks, handled on purpose and counted.

Columns ``InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID,
Country`` (the "Online Retail II" spellings ``Invoice``, ``Price`` and ``Customer ID`` are
accepted too). Each row becomes one interaction:

* an invoice line is a ``purchase``; a cancellation (``InvoiceNo`` starting with ``C``, negative
  ``Quantity``) is a ``return`` with the positive quantity (counted as
  ``cancellations_as_returns``); every line of an invoice has ``order_id = InvoiceNo``;
* identifiers are strings: ``CustomerID`` ``"17850.0"`` becomes ``"17850"``; ``StockCode`` is
  stripped and upper-cased (``"85123a"`` -> ``"85123A"``); a row without ``CustomerID`` keeps
  ``customer_id`` missing (a guest checkout: it counts for popularity only);
* non-product codes (postage, carriage, manual adjustments, discounts, samples, fees, bank
  charges, bad-debt adjustments, gift vouchers: :data:`NON_PRODUCT_CODES`,
  :data:`NON_PRODUCT_PREFIXES`, and any code whose description is one of
  :data:`NON_PRODUCT_DESCRIPTION`, such as 23444 "NEXT DAY CARRIAGE") are kept with
  ``is_product=False``, for the money they carry, and are never recommended;
* dropped and counted per reason, the first that applies: ``missing_invoice``, ``missing_item``
  (no StockCode), ``bad_quantity`` (missing or zero, or a sign that contradicts the invoice:
  the negative lines of ordinary invoices are stock write-offs such as "damaged"),
  ``bad_price`` (missing, negative, or zero);
* descriptions lose leading, trailing and repeated spaces; a missing one is counted
  (``missing_description_rows``) and the catalogue takes the item's latest non-empty one;
* ``Country`` goes to ``properties`` as ``{"country": ...}``;
* ``InvoiceDate`` is ``YYYY-MM-DD HH:MM:SS`` (or the original ``M/D/YYYY H:MM``, or ISO 8601),
  local time, kept naive.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

import numpy as np
import orjson
import pandas as pd

from recsys.io.tabular import (
    Normalized,
    RawTable,
    float_ids,
    item_id_column,
    number_column,
    per_unique,
    text_column,
    timestamp_column,
    upper_ids,
)

FORMAT: Final[str] = "online-retail"
#: Columns an Online Retail file must have, by canonical name (see :func:`canonical_names`).
REQUIRED: Final[tuple[str, ...]] = (
    "InvoiceNo",
    "StockCode",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
)
#: :func:`retail_key` of a column name -> canonical name; the spellings seen in exports (the
#: "Online Retail II" release renames three columns).
ALIASES: Final[dict[str, str]] = {
    "invoiceno": "InvoiceNo",
    "invoice": "InvoiceNo",
    "stockcode": "StockCode",
    "description": "Description",
    "quantity": "Quantity",
    "invoicedate": "InvoiceDate",
    "unitprice": "UnitPrice",
    "price": "UnitPrice",
    "customerid": "CustomerID",
    "country": "Country",
}

NON_PRODUCT_CODES: Final[frozenset[str]] = frozenset(
    {
        "POST",  # postage
        "DOT",  # dotcom postage
        "M",  # manual
        "C2",  # carriage
        "C3",
        "D",  # discount
        "S",  # samples
        "B",  # adjust bad debt
        "AMAZONFEE",
        "BANK CHARGES",
        "CRUK",  # charity commission
        "PADS",  # "PADS TO MATCH ALL CUSHIONS" at 0.001: a placeholder line
        "ADJUST",
        "ADJUST2",
        "TEST001",
        "TEST002",
    }
)
NON_PRODUCT_PREFIXES: Final[tuple[str, ...]] = ("GIFT_",)  # gift vouchers, gift_0001_20
#: Whole descriptions (upper case, single spaces) that mark a code as a service, not a product.
NON_PRODUCT_DESCRIPTION: Final[str] = (
    r"(DOTCOM |NEXT DAY )?POSTAGE|(NEXT DAY )?CARRIAGE|MANUAL|DISCOUNT|SAMPLES?|BANK CHARGES"
    r"|AMAZON FEE|PACKING CHARGE|CRUK COMMISSION|ADJUST.*|.*GIFT VOUCHER.*"
)
TIMESTAMP_FORMATS: Final[tuple[str, ...]] = ("%Y-%m-%d %H:%M:%S", "%m/%d/%Y %H:%M")


def clean_descriptions(descriptions: pd.Series) -> pd.Series:
    """Strip and collapse runs of white space; empty becomes NA."""

    def clean(unique: pd.Series) -> pd.Series:
        cleaned = unique.str.replace(r"\s+", " ", regex=True).str.strip()
        return cleaned.mask(cleaned == "")

    return per_unique(descriptions, clean)


def non_product_mask(codes: pd.Series, descriptions: pd.Series) -> np.ndarray:
    """True for rows whose code is a service (postage, fees, vouchers...), not a product."""
    listed = codes.isin(NON_PRODUCT_CODES) | codes.str.startswith(NON_PRODUCT_PREFIXES)
    service = descriptions.str.upper().str.fullmatch(NON_PRODUCT_DESCRIPTION)
    service_codes = codes[service.fillna(False).astype(bool)].dropna().unique()
    return (listed.fillna(False) | codes.isin(service_codes)).to_numpy(dtype=bool)


def _as_properties(countries: pd.Series) -> pd.Series:
    """``{"country": ...}`` for each distinct country (a few dozen JSON encodings)."""
    texts = [orjson.dumps({"country": c}).decode() for c in countries]
    return pd.Series(texts, index=countries.index, dtype=pd.StringDtype())


def retail_key(name: str) -> str:
    """A column name without spaces or underscores, lower-cased: ``"Customer ID"`` ->
    ``"customerid"``."""
    return re.sub(r"[\s_]+", "", str(name)).lower()


def canonical_names(columns: Sequence[str]) -> dict[str, str]:
    """Canonical name -> the file's column, for the columns that are known spellings."""
    return {ALIASES[key]: c for c in columns if (key := retail_key(c)) in ALIASES}


def missing_columns(columns: Sequence[str]) -> list[str]:
    """The required columns (canonical names) that ``columns`` lacks."""
    return [c for c in REQUIRED if c not in canonical_names(columns)]


def normalize(raw: RawTable) -> Normalized:
    """Online Retail rows into the interaction table; titles are the cleaned descriptions."""
    absent = missing_columns(list(raw.frame.columns))
    if absent:
        raise raw.error(None, f"missing required column(s) {absent} for the {FORMAT} format")
    frame = raw.frame
    names = canonical_names(list(frame.columns))

    def text(name: str) -> pd.Series:
        return text_column(frame, names.get(name))

    invoice = float_ids(upper_ids(text("InvoiceNo")), whole_column=False)
    code = item_id_column(frame, names.get("StockCode"), whole_column=False, upper=True)
    description = clean_descriptions(text("Description"))
    quantity = number_column(raw, names["Quantity"], "Quantity").to_numpy()
    price = number_column(raw, names["UnitPrice"], "UnitPrice").to_numpy()
    timestamp = timestamp_column(raw, names["InvoiceDate"], "InvoiceDate", TIMESTAMP_FORMATS)

    cancel = invoice.str.startswith("C").fillna(False).to_numpy(dtype=bool)
    missing_invoice = invoice.isna().to_numpy()
    missing_item = code.isna().to_numpy() & ~missing_invoice
    earlier = missing_invoice | missing_item
    with np.errstate(invalid="ignore"):
        wrong_sign = np.where(cancel, quantity > 0, quantity < 0)
        bad_quantity = ~earlier & (np.isnan(quantity) | (quantity == 0) | wrong_sign)
        bad_price = ~earlier & ~bad_quantity & ~(price > 0)
    keep = ~(earlier | bad_quantity | bad_price)

    table = pd.DataFrame(
        {
            "customer_id": float_ids(text("CustomerID"), whole_column=False),
            "event_type": np.where(cancel, "return", "purchase"),
            "timestamp": timestamp,
            "item_id": code,
            "quantity": np.abs(quantity),
            "price": price,
            "order_id": invoice,
            "properties": per_unique(text("Country"), _as_properties),
            "event_id": pd.Series(pd.NA, index=frame.index, dtype=pd.StringDtype()),
        }
    )[keep]
    # only kept rows decide: write-offs of real products carry notes such as "adjustment"
    table["is_product"] = ~non_product_mask(table["item_id"], description[keep])
    dropped = {
        "missing_invoice": int(missing_invoice.sum()),
        "missing_item": int(missing_item.sum()),
        "bad_quantity": int(bad_quantity.sum()),
        "bad_price": int(bad_price.sum()),
    }
    counts = {
        "cancellations_as_returns": int((cancel & keep).sum()),
        "adjustment_rows": int((invoice.str.startswith("A").fillna(False).to_numpy() & keep).sum()),
        "missing_description_rows": int((description.isna().to_numpy() & keep).sum()),
        "duplicate_rows": int((frame.duplicated().to_numpy() & keep).sum()),
    }
    return Normalized(table, dropped, counts, titles=description[keep])

"""Write ``tests/data/online_retail_sample.csv.gz``: a deterministic sample of the shared file.

The sample keeps whole customers, so repeat purchases, returns and churn survive: every row of
each customer whose id hashes into one bucket of three (``sha256(CustomerID) mod 3 == 0``), and
every row of each guest invoice (no ``CustomerID``) whose number hashes into one bucket of six
(``sha256(InvoiceNo) mod 6 == 0``). Rows are copied byte for byte, in the file's order, so the
quirks (cancellations, stock write-offs, non-product codes, zero prices, lower-case codes, stray
spaces) are the original ones. The gzip header carries no time stamp or name: the same input
gives the same bytes.

Run it from the repository root, with the shared data beside the checkout::

    .venv/bin/python benchmarks/make_test_sample.py [SOURCE] [OUT]

It lives in ``benchmarks/`` (which may read ``../shared``); the tests read the sample only.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "online_retail_2010-12_2011-08.csv.gz"
OUT = ROOT / "tests" / "data" / "online_retail_sample.csv.gz"
CUSTOMER_BUCKETS = 3
GUEST_INVOICE_BUCKETS = 6


def bucket(value: str, buckets: int) -> int:
    return int(hashlib.sha256(value.encode("utf-8")).hexdigest()[:16], 16) % buckets


def keep(invoice: str, customer: str) -> bool:
    if customer:
        return bucket(customer, CUSTOMER_BUCKETS) == 0
    return bucket(invoice, GUEST_INVOICE_BUCKETS) == 0


def sample_lines(source: Path) -> list[bytes]:
    """The header and the kept data lines, each exactly as in ``source``."""
    with gzip.open(source, "rb") as handle:
        lines = handle.read().splitlines(keepends=True)
    header = next(csv.reader([lines[0].decode("utf-8")]))
    invoice_at, customer_at = header.index("InvoiceNo"), header.index("CustomerID")
    kept = [lines[0]]
    for line in lines[1:]:
        fields = next(csv.reader([line.decode("utf-8")]))
        if keep(fields[invoice_at], fields[customer_at]):
            kept.append(line)
    return kept


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else SOURCE
    out = Path(argv[1]) if len(argv) > 1 else OUT
    lines = sample_lines(source)
    out.write_bytes(gzip.compress(b"".join(lines), compresslevel=9, mtime=0))
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"wrote {len(lines) - 1:,} rows to {out} ({out.stat().st_size:,} bytes, sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The offers batch with the items ranked at training and without them: the same bytes?

    python -m benchmarks.offers_parity --artifacts DIR [--channels email none web]

Serves the newest bundle under ``DIR`` twice in process (``RECSYS_SERVING__EMAIL_ITEMS`` on and
off, each with its own key prefix on one embedded Redis, no exploration), sends every customer
of the bundle through ``POST /v1/offers/batch`` 1,000 ids at a time on each channel, and prints
how many batches came back byte for byte the same; exits 1 when one did not.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient  # noqa: E402

from feature_store.embedded import EmbeddedRedis  # noqa: E402
from recsys.bundle import latest_version_dir, read_bundle  # noqa: E402
from recsys.config import OffersConfig, Settings  # noqa: E402
from serving.app import create_app  # noqa: E402

KEY = "parity-read-key-0123456789"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--channels", nargs="+", default=["email", "none", "web"])
    args = parser.parse_args()
    ids = read_bundle(latest_version_dir(args.artifacts)).customer_ids.astype(str).tolist()
    failed = False
    folder = tempfile.TemporaryDirectory()
    with folder, EmbeddedRedis(Path(folder.name), persist=False) as server:
        clients = []
        for on in (True, False):
            base = Settings(
                redis_url=server.url,
                redis_prefix=f"parity-{'on' if on else 'off'}",
                artifacts=args.artifacts,
                api_keys={KEY: frozenset({"read"})},
                offers=OffersConfig(explore_share=0.0),
            )
            serving = base.serving.model_copy(update={"email_items": on})
            clients.append(TestClient(create_app(base.model_copy(update={"serving": serving}))))
        with clients[0] as on_client, clients[1] as off_client:
            snapshot = on_client.app.state.serving.current()  # type: ignore[attr-defined]
            used = snapshot is not None and snapshot.model.email_items is not None
            print(f"precomputed items in the bundle and served: {used}")
            for channel in args.channels:
                same = total = 0
                for start in range(0, len(ids), 1000):
                    body = {
                        "customer_ids": ids[start : start + 1000],
                        "k": 3,
                        "channel": None if channel == "none" else channel,
                    }
                    answers = [
                        c.post("/v1/offers/batch", json=body, headers={"X-API-Key": KEY})
                        for c in (on_client, off_client)
                    ]
                    ok = all(a.status_code == 200 for a in answers)
                    same += ok and answers[0].content == answers[1].content
                    total += 1
                failed |= same != total
                n = f"{len(ids):,}"
                print(f"channel {channel}: {same}/{total} batches of {n} customers the same bytes")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

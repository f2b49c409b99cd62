"""All settings, in one pydantic-settings class.

Environment variables use the prefix ``RECSYS_``; nested groups use ``__`` (for example
``RECSYS_SERVING__REDIS_TIMEOUT_MS=50``). The top-level names the contract fixes
(``RECSYS_REDIS_URL``, ``RECSYS_API_KEYS``, ``RECSYS_ARTIFACTS``) are plain fields.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, field_validator
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


class ServingConfig(BaseModel):
    redis_timeout_ms: float = 50.0
    default_k: int = 10
    max_k: int = 100
    max_batch: int = 1000
    export_chunk: int = Field(default=1000, ge=1)  # customers per store read of the offers export
    #: catalogues of at least this many items score the page view on retrieved candidates
    #: (recsys.ranking.retrieval); smaller ones score every item exactly
    retrieval_min_items: int = Field(default=20_000, ge=1)
    #: a bulk load writes factor vectors as float16 (decoded to float32 for scoring)
    compact_vectors: bool = False
    #: a bulk load keeps at most this many history items per customer: the most recently
    #: bought (ties: the most often); None keeps the whole history
    max_history_items: int | None = Field(default=None, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RECSYS_", env_nested_delimiter="__", extra="ignore"
    )

    redis_url: str | None = None
    redis_prefix: str = "pl"
    artifacts: Path = Path("artifacts")
    api_keys: Annotated[dict[str, frozenset[str]], NoDecode] = Field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    event_stream_maxlen: int = 1_000_000
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)

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

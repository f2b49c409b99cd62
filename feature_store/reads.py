"""The customer read, described once: the commands of a :class:`~recsys.store.ReadPlan` and the
decoding of their replies, shared by every reader (:class:`feature_store.redis_store.
RedisFeatureStore`, :class:`feature_store.async_store.AsyncFeatureReader`,
:class:`feature_store.multiplexed.MultiplexedReader`): only their I/O differs.

The page view's plan may also carry a signature of the request (``ReadPlan.answer``): the read
then takes the live record's revision and the customer's stored answer too, in the same round
trip, and a stored answer whose tag still matches (:mod:`feature_store.answers`) is the result:
the records are not decoded at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from feature_store import answers, codec, feature_pack, keys
from recsys.errors import FeaturesMissingError, InvalidRequestError
from recsys.schema import is_customer_id
from recsys.store import CustomerState, ReadPlan, ReadResult

VERSION_PATTERN = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def check_customer_id(customer_id: str) -> str:
    if not is_customer_id(customer_id):
        raise InvalidRequestError(
            f"invalid customer id {customer_id!r}: expected 1-128 characters of "
            "letters, digits and . _ : @ + -"
        )
    return customer_id


def check_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
        raise InvalidRequestError(f"invalid model version {version!r}")
    return version


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


# -- the customer read, shared by this store and feature_store.async_store -------------------

#: What :func:`~feature_store.connection.store_errors` names when a customer read fails.
READ_OPERATION = "read of customers"


def read_commands(prefix: str, plan: ReadPlan, *, contacts_read: int) -> list[tuple[Any, ...]]:
    """The commands of ``plan``, in order (one description for every reader). Per customer: the
    batch hash of the plan's version and the live hash, ``HMGET`` of the record fields
    (:data:`~feature_store.keys.BATCH_RECORD`, :data:`~feature_store.keys.LIVE_RECORD`; the page
    view's only :data:`~feature_store.keys.BATCH_PAGE_VIEW` and
    :data:`~feature_store.keys.LIVE_PAGE_VIEW`: never the revision nor a legacy online state),
    and, when asked, the newest ``contacts_read`` contacts; then, with ``meta``, the catalogue
    revision, the active version and the version's loaded marker (``EXISTS``), so the decoder
    can tell a customer without a batch record from a store that lost the version's features;
    last, for a read of whole records, the version's feature schema (to unpack the features:
    ``feature_store.feature_pack``). Ids are checked first. A plan with an ``answer`` (one
    customer's page view) also reads the live record's revision (last of its ``HMGET``) and the
    customer's stored answer (``GET``, after the live hash)."""
    for customer_id in plan.customer_ids:
        check_customer_id(customer_id)
    if plan.answer is not None:
        return _answered_commands(prefix, plan)
    commands: list[tuple[Any, ...]] = []
    for customer_id in plan.customer_ids:
        batch = keys.customer_batch(prefix, customer_id, plan.version)
        live = keys.customer_live(prefix, customer_id)
        if plan.page_view:
            commands.append(("HMGET", batch, *keys.BATCH_PAGE_VIEW))
            commands.append(("HMGET", live, *keys.LIVE_PAGE_VIEW))
        else:
            commands.append(("HMGET", batch, *keys.BATCH_RECORD))
            commands.append(("HMGET", live, *keys.LIVE_RECORD))
        if plan.contacts:
            contacts = keys.customer_contacts(prefix, customer_id)
            commands.append(("ZRANGE", contacts, -contacts_read, -1, "WITHSCORES"))
    if plan.meta:
        commands.append(("GET", keys.item_revision(prefix)))
        commands.append(("GET", keys.active_version(prefix)))
        commands.append(("EXISTS", keys.loaded_marker(prefix, plan.version)))
    if not plan.page_view:
        commands.append(("GET", keys.feature_schema(prefix, plan.version)))
    return commands


def _answered_commands(prefix: str, plan: ReadPlan) -> list[tuple[Any, ...]]:
    if not (plan.page_view and plan.meta and len(plan.customer_ids) == 1):
        raise InvalidRequestError("only one customer's page view reads a stored answer")
    (customer_id,) = plan.customer_ids
    batch = keys.customer_batch(prefix, customer_id, plan.version)
    live = keys.customer_live(prefix, customer_id)
    return [
        ("HMGET", batch, *keys.BATCH_PAGE_VIEW),
        ("HMGET", live, *keys.LIVE_PAGE_VIEW, keys.LIVE_REVISION),
        ("GET", keys.customer_answer(prefix, customer_id)),
        ("GET", keys.item_revision(prefix)),
        ("GET", keys.active_version(prefix)),
        ("EXISTS", keys.loaded_marker(prefix, plan.version)),
    ]


def queue_read(client: Any, prefix: str, plan: ReadPlan, *, contacts_read: int) -> Any:
    """A non-transactional pipeline of ``client`` (redis-py or redis.asyncio: queueing is the
    same, only ``execute`` differs) with the commands of :func:`read_commands` queued. The
    caller executes it, awaiting or not, inside ``store_errors(READ_OPERATION)`` and decodes the
    replies with :func:`decode_read`."""
    pipe = client.pipeline(transaction=False)
    for command in read_commands(prefix, plan, contacts_read=contacts_read):
        pipe.execute_command(*command)
    return pipe


def _hash(reply: Any, fields: Sequence[bytes]) -> Mapping[bytes, bytes]:
    """An ``HMGET`` reply of ``fields`` (values in order, None where absent) as a mapping."""
    return {name: value for name, value in zip(fields, reply, strict=True) if value is not None}


def _pairs(reply: Any) -> list[tuple[bytes, float]]:
    """A ``ZRANGE ... WITHSCORES`` reply as (member, score) pairs, whichever client read it."""
    if reply and isinstance(reply[0], (tuple, list)):
        return [(member, float(score)) for member, score in reply]
    return [(member, float(score)) for member, score in zip(reply[::2], reply[1::2], strict=True)]


_BATCH_PAGE_VIEW = tuple(name.encode() for name in keys.BATCH_PAGE_VIEW)
_LIVE_PAGE_VIEW = tuple(name.encode() for name in keys.LIVE_PAGE_VIEW)
_BATCH_RECORD = tuple(name.encode() for name in keys.BATCH_RECORD)
_LIVE_RECORD = tuple(name.encode() for name in keys.LIVE_RECORD)


def decode_read(plan: ReadPlan, replies: Sequence[Any]) -> ReadResult:
    """The :class:`ReadResult` of ``plan`` from the replies to :func:`read_commands`.

    With ``meta`` (the serving reads), :class:`~recsys.errors.FeaturesMissingError` when the
    version's loaded marker is not there: a missing batch record then says nothing about the
    customer (Redis came back empty), so the read must not pass for "a customer the model does
    not know". With the plan's ``answer``: :func:`_decode_answered`."""
    if plan.answer is not None:
        return _decode_answered(plan, replies)
    if not plan.page_view:
        feature_pack.use(replies[-1])
        replies = replies[:-1]
    if plan.meta and not replies[-1]:
        raise FeaturesMissingError(plan.version, _text(replies[-2]))
    step = 3 if plan.contacts else 2
    batch_fields = _BATCH_PAGE_VIEW if plan.page_view else _BATCH_RECORD
    live_fields = _LIVE_PAGE_VIEW if plan.page_view else _LIVE_RECORD
    n = len(plan.customer_ids)
    batches = codec.decode_batches([_hash(replies[step * i], batch_fields) for i in range(n)])
    states = [
        CustomerState(
            customer_id=customer_id,
            batch=batches[i],
            live=codec.decode_live(
                _hash(replies[step * i + 1], live_fields),
                _pairs(replies[step * i + 2]) if step == 3 else None,
            ),
        )
        for i, customer_id in enumerate(plan.customer_ids)
    ]
    if not plan.meta:
        return ReadResult(states)
    revision, active, _ = replies[step * len(plan.customer_ids) :]
    return ReadResult(states, int(revision or 0), _text(active))


def _decode_answered(plan: ReadPlan, replies: Sequence[Any]) -> ReadResult:
    """The page view's read with its stored answer: the answer's body when its tag is the one
    this read expects (the records then stay undecoded), else the customer's state; the live
    revision either way (the write-back's condition)."""
    batch, live, stored, revision_reply, active, loaded = replies
    if not loaded:
        raise FeaturesMissingError(plan.version, _text(active))
    revision = int(revision_reply or 0)
    live_revision = answers.live_revision(live[-1])
    if stored:
        assert plan.answer is not None
        expected = answers.tag(plan.version, revision, live_revision, plan.answer)
        if stored.startswith(expected):
            body = bytes(stored[len(expected) :])
            return ReadResult([], revision, _text(active), live_revision, body)
    state = CustomerState(
        customer_id=plan.customer_ids[0],
        batch=codec.decode_batches([_hash(batch, _BATCH_PAGE_VIEW)])[0],
        live=codec.decode_live(_hash(live[:-1], _LIVE_PAGE_VIEW), None),
    )
    return ReadResult([state], revision, _text(active), live_revision)

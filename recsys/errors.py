"""What can go wrong, with meaning and without HTTP.

The tree::

    RecsysError
    ├── NotFoundError            a named thing (customer, item, model version) does not exist
    ├── InvalidRequestError      the caller sent something we cannot act on
    │   ├── InvalidEventError    an event of a request is invalid (names its index and problem)
    │   ├── UnknownValueError    a well-formed value the service does not know (a channel)
    │   ├── UnknownOfferError    an offer id the serving offer set does not hold
    │   └── DataFileError        an input file is malformed (names the file, row and problem)
    ├── UnauthorizedError        no or unknown API key
    ├── ForbiddenError           the key lacks the scope the operation needs
    ├── UnavailableError         a dependency is down or slow (store, model)
    │   ├── StoreUnavailableError
    │   │   └── FeaturesMissingError   the store answers but lacks the served version's features
    │   └── ModelUnavailableError
    └── InternalError            a bug or a broken invariant on our side

``serving/errors.py`` is the one place that maps these to HTTP status codes.
"""

from __future__ import annotations


class RecsysError(Exception):
    """Base of every error this project raises on purpose."""

    def details(self) -> dict[str, object]:
        """Machine-readable facts about the error beyond its message (none by default)."""
        return {}


class NotFoundError(RecsysError):
    def __init__(self, kind: str, identifier: str) -> None:
        super().__init__(f"{kind} {identifier!r} not found")
        self.kind = kind
        self.identifier = identifier


class InvalidRequestError(RecsysError):
    """The input is wrong; ``detail`` says what and with which value."""


class InvalidEventError(InvalidRequestError):
    """Event ``index`` of a request is invalid (None: the request's shape is); ``problem`` says
    which field and why."""

    def __init__(self, index: int | None, problem: str) -> None:
        super().__init__(problem if index is None else f"events[{index}]: {problem}")
        self.index = index
        self.problem = problem

    def details(self) -> dict[str, object]:
        return {} if self.index is None else {"index": self.index}


class UnknownOfferError(InvalidRequestError):
    def __init__(self, offer_id: str) -> None:
        super().__init__(f"offer_id {offer_id[:140]!r} is not an offer of the serving offer set")
        self.offer_id = offer_id


class UnknownValueError(InvalidRequestError):
    """A well-formed parameter naming something the service does not know (422, not 400)."""


class DataFileError(InvalidRequestError):
    def __init__(self, path: str, row: int | None, problem: str) -> None:
        where = f"{path}, row {row}" if row is not None else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.row = row
        self.problem = problem


class UnauthorizedError(RecsysError):
    pass


class ForbiddenError(RecsysError):
    pass


class UnavailableError(RecsysError):
    pass


class StoreUnavailableError(UnavailableError):
    pass


class FeaturesMissingError(StoreUnavailableError):
    """The store answered, but model version ``version``'s features are not in it (its loaded
    marker is gone: Redis restarted empty, say); ``active`` is the store's active version."""

    def __init__(self, version: str, active: str | None) -> None:
        super().__init__(f"the features of model version {version!r} are not in the store")
        self.version = version
        self.active = active


class ModelUnavailableError(UnavailableError):
    pass


class InternalError(RecsysError):
    pass

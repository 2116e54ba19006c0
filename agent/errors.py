"""The project's exception tree.

    AgentError
    ├── ConfigError                  a setting or argument is wrong; fix the configuration
    ├── InputError                   a question or problem the user gave cannot be solved as given
    ├── DataError                    a data file is missing or does not have the expected schema
    ├── ModelFetchError              a catalog model could not be fetched or verified
    ├── ServerStartError             a model server process did not come up healthy
    ├── GradingError                 the grader itself failed (not: the answer was wrong)
    └── EndpointError                talking to a model endpoint failed
        ├── TransientEndpointError   worth retrying: connection, timeout, 429, 5xx, a garbled answer
        │   ├── EndpointUnreachable
        │   ├── EndpointTimeout
        │   └── EndpointGarbled      a completion cut off or of the wrong shape (also a protocol error)
        ├── EndpointRejected         the server refused the request (4xx other than 429)
        │   └── PromptTooLong        the prompt does not fit the model's context
        └── EndpointProtocolError    the server answered something we cannot read

Retryability is a type: the one retry layer (agent.clients.endpoint) retries exactly the
``TransientEndpointError`` subtree. Vendor exceptions (httpx, openai) are translated at the client
boundary with ``raise ... from exc``; nothing above the clients sees them.
"""

from __future__ import annotations

__all__ = [
    "AgentError",
    "ConfigError",
    "DataError",
    "EndpointError",
    "EndpointGarbled",
    "EndpointProtocolError",
    "EndpointRejected",
    "EndpointTimeout",
    "EndpointUnreachable",
    "GradingError",
    "InputError",
    "ModelFetchError",
    "PromptTooLong",
    "ServerStartError",
    "TransientEndpointError",
    "single_error",
]


class AgentError(Exception):
    """Base of every error treeloop raises on purpose."""


class ConfigError(AgentError):
    """A setting, flag or argument is invalid."""


class InputError(AgentError):
    """A question or problem cannot be solved as given (empty, too long, ...)."""


class DataError(AgentError):
    """A data file is missing or malformed. The message names the file and line."""


class ModelFetchError(AgentError):
    """A catalog model (``servers.models``) could not be downloaded, verified or extracted."""


class ServerStartError(AgentError):
    """A model server process exited or never became healthy."""


class GradingError(AgentError):
    """The grader failed to run (a crashed worker), as opposed to judging an answer wrong."""


class EndpointError(AgentError):
    """A request to a model endpoint failed."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class TransientEndpointError(EndpointError):
    """A failure that may go away on retry: connection refused, timeout, 429, 5xx.

    ``retry_after`` is the wait in seconds the server asked for (HTTP ``Retry-After``), if any;
    the retry layer waits at least that long before the next attempt.
    """

    def __init__(
        self, message: str, *, url: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, url=url, status=status)
        self.retry_after = retry_after


class EndpointUnreachable(TransientEndpointError):
    """Nothing answered at the endpoint's address."""


class EndpointTimeout(TransientEndpointError):
    """One attempt took longer than its timeout."""


class EndpointRejected(EndpointError):
    """The server refused the request as invalid; retrying the same request will not help."""


class PromptTooLong(EndpointRejected):
    """The prompt (plus the requested completion) does not fit the model's context window."""


class EndpointProtocolError(EndpointError):
    """The server's answer could not be understood (not JSON, missing fields, wrong types)."""


class EndpointGarbled(TransientEndpointError, EndpointProtocolError):
    """A completion answer that was cut off or had the wrong shape (not JSON, a missing field,
    log-probabilities in an unknown format, fewer completions than asked). A healthy server of the
    configured dialect never sends one, so it is retried like a 5xx; if every attempt is garbled,
    the dialect (``--backend``) is probably wrong."""


def single_error(group: BaseExceptionGroup) -> BaseException:
    """The one error worth reporting from a task group's exception group.

    A task group wraps whatever its tasks raise; when the first failure is one of ours (say the
    endpoint went away), callers want that error, not a group of identical ones.
    """
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    ours = [e for e in leaves if isinstance(e, AgentError)]
    return ours[0] if ours else group

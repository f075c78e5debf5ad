"""The configured models: each one's endpoint and client, by the name users choose it by.

A :class:`ModelRegistry` holds every model a bot may ask (``[[llm.models]]``, or the one model
of the ``llm.*`` shorthand), which one answers by default, and the fallback chain: the models
asked, in order, when the one asked is unavailable. The engine picks a model per turn from it;
``bots.runtime`` builds it from the settings with :func:`configured_endpoints`.

Keys are read from the environment variables the tables name, once, at start. A default or
fallback model whose variable is unset stops the bot at start (it would fail every turn); any
other such model is left out, with one line saying so, so the rest of the bot still runs.
Neither the error nor the line ever holds a key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from core.client import LLMClient
from core.retry import ModelStream
from core.settings import SHORTHAND_MODEL, LLMSettings, ModelSettings, SettingsError

__all__ = [
    "ConfiguredModel",
    "ModelEndpoint",
    "ModelRegistry",
    "configured_endpoints",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelEndpoint:
    """Where one configured model is reached, and what it can take. ``name`` is what users
    type; ``model`` is the id the gateway knows it by; ``offline`` marks the built-in offline
    model."""

    name: str
    protocol: str
    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    supports_images: bool = True
    context_budget_tokens: int = 100_000
    offline: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfiguredModel:
    """A model ready to ask: its endpoint and the client that streams from it."""

    endpoint: ModelEndpoint
    client: ModelStream

    @property
    def name(self) -> str:
        return self.endpoint.name


class ModelRegistry:
    """The configured models by name, the default one and the fallback chain."""

    def __init__(
        self, models: Iterable[ConfiguredModel], *, default: str, fallback: Sequence[str] = ()
    ) -> None:
        self._models = {model.name: model for model in models}
        unknown = [name for name in (default, *fallback) if name not in self._models]
        if unknown:
            raise ValueError(f"not a configured model: {unknown[0]!r}")
        self._default = self._models[default]
        self._fallback = tuple(self._models[name] for name in fallback)

    @classmethod
    def single(
        cls, client: ModelStream, *, model: str, context_budget_tokens: int
    ) -> ModelRegistry:
        """One model named ``default`` behind ``client`` (an engine built with a bare client).
        Its gateway is whatever the client was built for; the registry does not know it."""
        protocol = client.protocol.name if isinstance(client, LLMClient) else "unknown"
        endpoint = ModelEndpoint(
            name=SHORTHAND_MODEL, protocol=protocol, base_url="", model=model,
            context_budget_tokens=context_budget_tokens,
        )  # fmt: skip
        return cls([ConfiguredModel(endpoint=endpoint, client=client)], default=SHORTHAND_MODEL)

    @property
    def default(self) -> ConfiguredModel:
        return self._default

    @property
    def fallback(self) -> tuple[ConfiguredModel, ...]:
        return self._fallback

    def names(self) -> tuple[str, ...]:
        """Every model's name, in configured order."""
        return tuple(self._models)

    def get(self, name: str) -> ConfiguredModel | None:
        return self._models.get(name)

    def __getitem__(self, name: str) -> ConfiguredModel:
        return self._models[name]

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def __iter__(self) -> Iterator[ConfiguredModel]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def chain(self, name: str | None = None) -> tuple[ConfiguredModel, ...]:
        """The models a turn may ask, in order: ``name`` (the default for ``None``), then every
        fallback model but that one. A channel's own model is protected by the same chain.
        Raises ``KeyError`` for a name that is not configured."""
        first = self._default if name is None else self._models[name]
        return (first, *(model for model in self._fallback if model is not first))


def configured_endpoints(
    llm: LLMSettings, environ: Mapping[str, str]
) -> tuple[tuple[ModelEndpoint, ...], list[str]]:
    """The endpoints of the configured models (not the offline one: ``bots.runtime`` starts
    it), with their keys read from ``environ``, and one line for each model left out because
    its key variable is unset. Raises :class:`SettingsError` when that model is the default or
    a fallback."""
    if not llm.models:
        key = llm.api_key.get_secret_value() if llm.api_key is not None else ""
        shorthand = ModelEndpoint(
            name=SHORTHAND_MODEL, protocol=llm.protocol, base_url=llm.resolved_base_url(),
            api_key=key, model=llm.resolved_model(), supports_images=llm.supports_images,
            context_budget_tokens=llm.context_budget_tokens,
        )  # fmt: skip
        return (shorthand,), []
    needed = {llm.resolved_default_model(), *llm.fallback}
    endpoints: list[ModelEndpoint] = []
    left_out: list[str] = []
    for table in llm.models:
        table_key = _key(table, environ)
        if table_key is None:
            problem = f"model {table.name!r}: the variable {table.api_key_env} is not set"
            if table.name in needed:
                role = "default" if table.name == llm.resolved_default_model() else "fallback"
                raise SettingsError(f"config error: llm.models: {problem} (it is the {role} "
                                    "model); set it, or remove api_key_env for a keyless "
                                    "endpoint")  # fmt: skip
            left_out.append(f"{problem}, so it cannot be chosen")
            continue
        endpoints.append(_endpoint(table, table_key, llm))
    return tuple(endpoints), left_out


def _key(table: ModelSettings, environ: Mapping[str, str]) -> str | None:
    """The table's key: ``""`` for a keyless endpoint, ``None`` when its variable is unset
    (an empty or blank variable counts as unset)."""
    if table.api_key_env is None:
        return ""
    return environ.get(table.api_key_env, "").strip() or None


def _endpoint(table: ModelSettings, key: str, llm: LLMSettings) -> ModelEndpoint:
    return ModelEndpoint(
        name=table.name, protocol=table.protocol, base_url=table.resolved_base_url(),
        api_key=key, model=table.model, supports_images=table.supports_images,
        context_budget_tokens=table.context_budget_tokens or llm.context_budget_tokens,
    )  # fmt: skip

"""The plug-in registries a run looks its extensions up in (engine.md §3.1–§3.3): actions by name
(with an optional fallback), item providers by `name()`, gate resolvers by `gate_type()`.

They live with the plug-in protocols, below the runtime, so a plug-in (the agent executor's
`register_agents`) can fill one without importing the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from runkon_flow.errors import WorkflowError
from runkon_flow.plugins.protocols import (
    ActionExecutor,
    ActionOutput,
    ActionParams,
    GateResolver,
    ItemProvider,
    RunContext,
    StepInfo,
)

__all__ = ["ActionRegistry", "GateResolverRegistry", "ItemProviderRegistry"]


class ActionRegistry:
    """Executors by name plus an optional fallback (engine.md §3.1)."""

    def __init__(
        self,
        named: Mapping[str, ActionExecutor] | Iterable[ActionExecutor] | None = None,
        fallback: ActionExecutor | None = None,
        explain_missing: Callable[[str], str] | None = None,
    ) -> None:
        self.named: dict[str, ActionExecutor] = {}
        if isinstance(named, Mapping):
            self.named.update(named)
        elif named is not None:
            for executor in named:
                self.named[executor.name()] = executor
        self.fallback = fallback
        self._explain_missing = explain_missing

    def missing_hint(self, name: str) -> str:
        """Why `name` has no executor, for validation: the host's own reason (e.g. "no agent file
        agents/x.md", or the agent file's error) when it gave one, else how to register one."""
        if self._explain_missing is not None:
            return self._explain_missing(name)
        return f"register an executor named '{name}' or add a fallback executor"

    def register(self, executor: ActionExecutor) -> None:
        self.named[executor.name()] = executor

    def has_action(self, name: str) -> bool:
        return name in self.named or self.fallback is not None

    def resolve(self, name: str) -> ActionExecutor | None:
        executor = self.named.get(name)
        return executor if executor is not None else self.fallback

    def dispatch(self, name: str, ctx: RunContext, info: StepInfo, params: ActionParams) -> ActionOutput:
        executor = self.resolve(name)
        if executor is None:
            raise WorkflowError(f"no registered ActionExecutor for '{name}' and no fallback configured")
        return executor.execute(ctx, info, params)

    def cancel(self, name: str, execution_id: str) -> None:
        executor = self.resolve(name)
        if executor is not None:
            cancel = getattr(executor, "cancel", None)
            if cancel is not None:
                cancel(execution_id)


class ItemProviderRegistry:
    """Item providers by `name()` (engine.md §3.2)."""

    def __init__(self, providers: Iterable[ItemProvider] = ()) -> None:
        self._providers: dict[str, ItemProvider] = {}
        for provider in providers:
            self.register(provider)

    def register(self, provider: ItemProvider) -> None:
        self._providers[provider.name()] = provider

    def get(self, name: str) -> ItemProvider | None:
        return self._providers.get(name)

    def names(self) -> list[str]:
        return sorted(self._providers)

    def __contains__(self, name: object) -> bool:
        return name in self._providers


class GateResolverRegistry:
    """Gate resolvers by `gate_type()` (engine.md §3.3)."""

    def __init__(self, resolvers: Iterable[GateResolver] = ()) -> None:
        self._resolvers: dict[str, GateResolver] = {}
        for resolver in resolvers:
            self.register(resolver)

    def register(self, resolver: GateResolver) -> None:
        self._resolvers[resolver.gate_type()] = resolver

    def has_type(self, gate_type: str) -> bool:
        return gate_type in self._resolvers

    def types(self) -> list[str]:
        """The registered gate types, sorted."""
        return sorted(self._resolvers)

    def get(self, gate_type: str) -> GateResolver | None:
        return self._resolvers.get(gate_type)

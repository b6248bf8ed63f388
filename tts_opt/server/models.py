"""GET /v1/models: the profiles (with what their artifact promises) and the pool models.

A profile's card carries the artifact's measured accuracy, its FLOPs, measured latency, a
summary of the graph and its comparison with the single model of its budget; a bare task name
is listed too, as an alias of its default profile.
"""

from __future__ import annotations

from collections import Counter

from litestar import get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.types import Guard

from tts_opt.graph.cost import graph_flops
from tts_opt.graph.render import to_text
from tts_opt.server.context import ServerContext
from tts_opt.server.errors import model_not_found, not_ready
from tts_opt.server.profiles import Profile, ProfileSet
from tts_opt.server.protocol import EngineInfo, GraphSummary, ModelCard, ModelList, ProfileInfo


def profile_info(profile: Profile, alias_of: str | None = None) -> ProfileInfo:
    a = profile.artifact
    return ProfileInfo(
        task=a.task,
        budget=a.budget,
        flops=graph_flops(a),
        accuracy=a.accuracy,
        latency=a.latency,
        graph=GraphSummary(
            nodes=len(a.nodes),
            edges=len(a.edges),
            sink=a.sink,
            node_models=dict(Counter(node.model for node in a.nodes)),
            text=to_text(a),
        ),
        baseline=a.baseline,
        alias_of=alias_of,
    )


def model_cards(profiles: ProfileSet, models: list[str]) -> list[ModelCard]:
    created = profiles.created
    cards = [ModelCard(name, created, profile_info(p)) for name, p in profiles.profiles.items()]
    cards += [
        ModelCard(task, created, profile_info(profiles.profiles[name], alias_of=name))
        for task, name in profiles.aliases.items()
    ]
    cards += [ModelCard(model, created, EngineInfo()) for model in models]
    return cards


def model_routes(ctx: ServerContext, guards: list[Guard]) -> list[HTTPRouteHandler]:
    def cards() -> list[ModelCard]:
        profiles = ctx.registry.current
        if profiles is None:
            raise not_ready()
        return model_cards(profiles, sorted(ctx.registry.engines))

    @get("/v1/models", guards=guards)
    async def list_models() -> ModelList:
        return ModelList(cards())

    @get("/v1/models/{model_id:str}", guards=guards)
    async def retrieve_model(model_id: FromPath[str]) -> ModelCard:
        for card in cards():
            if card.id == model_id:
                return card
        raise model_not_found(model_id)

    return [list_models, retrieve_model]

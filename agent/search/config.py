"""The search configuration: every algorithm knob of ηMCTS, frozen and stored with each result.

Deployment facts (URLs, concurrency limits, timeouts) are not here; they are ``agent.settings``.
The paper's parameter table is available as named presets; ``cpu-small`` is sized for the tiny
CPU model (narrow trees, short budgets) and is the default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

__all__ = ["PRESETS", "FinalSelector", "MergeKind", "SearchConfig", "Selection", "preset"]

Selection = Literal["uct", "puct"]
FinalSelector = Literal["vote", "greedy", "best_leaf", "orm_rerank"]
MergeKind = Literal["none", "edit", "embedding", "judge"]
OptionKind = Literal["line", "paragraph"]

_SELECTIONS = ("uct", "puct")
_FINALS = ("vote", "greedy", "best_leaf", "orm_rerank")
_MERGES = ("none", "edit", "embedding", "judge")


@dataclass(frozen=True, slots=True)
class SearchConfig:
    # --- selection ---
    selection: Selection = "uct"
    c: float = 1.0  # exploration constant
    virtual_loss: float = 1.0  # pseudo-visits of value 0 added per in-flight simulation on a path
    # --- importance-weighted expansion: n(s) = max(c_min(t), min(floor(alpha*I(s)) + 1, c_max(t))) ---
    alpha: float = 1.0
    c_max_root: int = 8
    c_max: int = 4
    c_min_root: int = 3
    c_min: int = 2
    # --- options (reasoning steps) ---
    option: OptionKind = "line"  # GSM8K-style: a step ends at a newline; MATH: at a blank line
    option_max_tokens: int = 96
    max_depth: int = 8  # at this depth the option is generated to the end of the solution
    final_max_tokens: int = 256
    first_child_greedy: bool = True
    temperature: float = 0.8
    top_p: float = 0.95
    # --- state merging ---
    merge: MergeKind = "edit"
    merge_threshold: float | None = (
        None  # edit: max normalized distance (default 0.2); embedding: min cosine (0.9)
    )
    # Re-sample a near-duplicate up to this many times before merging it. 0 by measurement: with
    # widening, a merged duplicate's slot is refilled elsewhere, while re-sampling spent ~30% of a
    # CPU tree's requests (100 generated test problems: 7.3 terminals per tree for 376 completion
    # tokens against 7.1 for 436; gold covered 21 vs 23 times, within noise).
    resample: int = 0
    # --- widening on saturation ---
    # A simulation that reaches a terminal node adds a child slot to the deepest node on its path
    # still below its c_max (a sibling of the terminal first), and expands there; it revisits the
    # terminal only when the whole path is at c_max. Without it a narrow tree stops growing once
    # every node is full, and the rest of the budget only re-counts the terminals it has.
    widen: bool = True
    # Widening passes over a node whose children are all terminals agreeing on one answer (another
    # sibling there, typically an answer line after the same computation, would repeat it) and
    # widens a shallower node instead, where a new step can still change the answer.
    skip_settled: bool = False
    # Sibling batching: an expansion reserves every free child slot of its node and generates the
    # options in one request with n completions (one prompt evaluation); near-duplicates within a
    # batch are merged at once (no re-sampling). The greedy first child is always generated alone.
    batch_siblings: bool = False
    # --- fast rollout ---
    rollouts: int = 0  # completions per new non-terminal node; 0 turns fast rollout off
    rollout_min_depth: int = 0
    rollout_max_tokens: int = 160  # shorter than final_max_tokens: rollouts are cheap estimates
    # --- node value = weighted mix of critics (a weight of 0 means the critic is never called) ---
    w_value: float = 1.0
    w_prm: float = 1.0
    w_orm: float = 1.0
    # --- budget ---
    simulations: int = 24  # completed simulations (expansions, merges, terminal revisits)
    min_terminals: int = 0  # keep going past `simulations` until this many terminal nodes exist...
    max_simulations: int = 64  # ...but never beyond this
    max_tokens: int | None = None  # completion tokens of the policy per tree
    deadline: float | None = None  # seconds; the best answer so far is returned when it passes
    workers: int = 4  # simulations of one tree in flight at once
    # --- answer ---
    final: FinalSelector = "vote"
    seed: int | None = None

    def __post_init__(self) -> None:
        from agent.errors import ConfigError

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(f"invalid search config: {message}")

        need(self.selection in _SELECTIONS, f"selection must be one of {_SELECTIONS}")
        need(self.final in _FINALS, f"final must be one of {_FINALS}")
        need(self.merge in _MERGES, f"merge must be one of {_MERGES}")
        need(self.option in ("line", "paragraph"), "option must be 'line' or 'paragraph'")
        need(
            self.c >= 0 and self.alpha >= 0 and self.virtual_loss >= 0, "c, alpha, virtual_loss must be >= 0"
        )
        need(1 <= self.c_min <= self.c_max, "need 1 <= c_min <= c_max")
        need(1 <= self.c_min_root <= self.c_max_root, "need 1 <= c_min_root <= c_max_root")
        need(self.max_depth >= 1, "max_depth must be >= 1")
        need(
            min(self.option_max_tokens, self.final_max_tokens, self.rollout_max_tokens) >= 1,
            "token caps >= 1",
        )
        need(
            self.merge_threshold is None or 0 <= self.merge_threshold <= 1,
            "merge_threshold must be in [0, 1]",
        )
        need(self.resample >= 0 and self.rollouts >= 0 and self.rollout_min_depth >= 0, "counts must be >= 0")
        need(min(self.w_value, self.w_prm, self.w_orm) >= 0, "critic weights must be >= 0")
        need(1 <= self.simulations <= self.max_simulations, "need 1 <= simulations <= max_simulations")
        need(self.min_terminals >= 0 and self.workers >= 1, "min_terminals >= 0 and workers >= 1")
        need(self.max_tokens is None or self.max_tokens >= 1, "max_tokens must be >= 1")
        need(self.deadline is None or self.deadline > 0, "deadline must be > 0 seconds")
        need(self.temperature >= 0 and 0 < self.top_p <= 1, "temperature >= 0 and 0 < top_p <= 1")

    def c_min_at(self, depth: int) -> int:
        return self.c_min_root if depth == 0 else self.c_min

    def c_max_at(self, depth: int) -> int:
        return self.c_max_root if depth == 0 else self.c_max

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, **changes: Any) -> SearchConfig:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            from agent.errors import ConfigError

            raise ConfigError(f"unknown search settings: {', '.join(unknown)}")
        return replace(self, **changes)


_PAPER = SearchConfig(
    alpha=1.0,
    c_max_root=60,
    c_max=10,
    simulations=55,
    max_simulations=400,
    min_terminals=40,
    rollouts=4,
    resample=2,  # the reference code re-samples near-duplicates (up to 5 times); not measured here
)

PRESETS: dict[str, SearchConfig] = {
    # Sized for a tiny model on a CPU: narrow and shallow.
    "cpu-small": SearchConfig(),
    # The paper's table (AlphaLLM, Table 6): GSM8K small/large budgets, MATH small/large.
    "gsm8k-small": replace(_PAPER, c=1.0, c_min_root=10, c_min=2),
    "gsm8k-large": replace(_PAPER, c=1.5, c_min_root=40, c_min=2, simulations=230),
    "math-small": replace(_PAPER, c=1.0, c_min_root=10, c_min=3, option="paragraph", option_max_tokens=256),
    "math-large": replace(
        _PAPER, c=1.0, c_min_root=20, c_min=3, option="paragraph", option_max_tokens=256, simulations=230
    ),
}


def preset(name: str) -> SearchConfig:
    try:
        return PRESETS[name]
    except KeyError:
        from agent.errors import ConfigError

        raise ConfigError(f"unknown search preset {name!r}; choose one of {', '.join(PRESETS)}") from None

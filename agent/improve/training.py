"""The cycle's training jobs, each in its own process: the policy's SFT (``finetune.sft``) and,
when the critics are refreshed, the value, PRM and ORM (``finetune.critics --trajectories``, or
``finetune.verifier --trajectories`` for the feature verifier).

Each job writes ``manifest.json`` last, which marks it done: a rerun does not train again.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import Process

from agent.errors import AgentError
from agent.improve.critic_data import Trajectory
from agent.runs import write_lines_atomic

if TYPE_CHECKING:
    from agent.improve.cycle import CycleConfig

__all__ = ["CRITIC_ROLES", "VERIFIER", "critic_trajectories", "step_critics", "step_train"]

CRITIC_ROLES = ("orm", "value", "prm")
VERIFIER = "verifier"  # refreshed feature-verifier weights: served in-process, not on the policy server


async def step_train(
    cfg: CycleConfig, data: Path, out: Path, *, init_adapter: Path | None = None
) -> dict[str, Any]:
    """``python -m finetune.sft`` in its own process (its manifest marks it done); with
    ``init_adapter`` it continues that PEFT adapter."""
    manifest = anyio.Path(out / "manifest.json")
    if await manifest.exists():
        return json.loads(await manifest.read_text())
    command = [sys.executable, "-m", "finetune.sft", "--data", str(data), "--out", str(out)]
    command += ["--epochs", str(cfg.sft_epochs), "--lr", str(cfg.sft_lr), "--seed", str(cfg.seed)]
    if cfg.sft_max_steps:
        command += ["--max-steps", str(cfg.sft_max_steps)]
    if cfg.base:
        command += ["--base", cfg.base]
    if init_adapter is not None:
        command += ["--init-adapter", str(init_adapter)]
    return await _run_job(command, out, what="fine-tuning")


async def _run_job(command: list[str], out: Path, *, what: str) -> dict[str, Any]:
    """Run a training process writing ``out/manifest.json`` (its log: ``out/train.log``)."""
    manifest = anyio.Path(out / "manifest.json")
    await anyio.Path(out).mkdir(parents=True, exist_ok=True)
    command = [*command, "--parent-pid", str(os.getpid())]  # the job ends if this process is killed
    async with await anyio.open_file(out / "train.log", "ab") as logfile:
        process = await anyio.open_process(command, stdout=logfile.wrapped, stderr=logfile.wrapped)
        try:
            returncode = await process.wait()
        except BaseException:
            # Ctrl-C or a cancelled cycle stops the job now, not when it would have finished
            # (anyio.run_process waits for the child before it lets a KeyboardInterrupt through).
            await _stop(process)
            raise
    if returncode != 0 or not await manifest.exists():
        raise AgentError(f"{what} failed (exit {returncode}); see {out / 'train.log'}")
    return json.loads(await manifest.read_text())


async def _stop(process: Process, grace: float = 10.0) -> None:
    """Terminate ``process``, kill it if it is still there after ``grace`` seconds, and reap it."""
    with anyio.CancelScope(shield=True):
        if process.returncode is None:
            process.terminate()
            with anyio.move_on_after(grace):
                await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


def critic_trajectories(k: int, cfg: CycleConfig) -> list[Trajectory]:
    """Every graded terminal path of the search trees of cycles 1..k (a prompt's paths share
    prefixes, so the value and PRM targets are Monte-Carlo rates over the tree's rollouts)."""
    trajectories = []
    for j in range(1, k + 1):
        results = cfg.root / f"cycle_{j}" / "search" / "results.jsonl"
        for line in results.read_text().splitlines():
            record = json.loads(line)
            for t in record.get("terminals", []):
                if t["correct"] is not None and t["steps"]:
                    problem_id = f"{j}/{record['id']}"  # a prompt searched again is a new tree
                    trajectories.append(
                        Trajectory(
                            problem_id, record["question"], None, tuple(t["steps"]), t["answer"], t["correct"]
                        )
                    )
    return trajectories


async def step_critics(k: int, cfg: CycleConfig, out: Path) -> dict[str, tuple[str, Path]] | str:
    """Retrain the critics on the search trees so far, or say why not.

    With ``verifier`` critics the feature verifier's weights are refitted (``finetune.verifier``,
    seconds, no model): ``{VERIFIER: (name, verifier.json)}``. Otherwise the LoRA critic is trained
    (``finetune.critics``): its adapter by role."""
    manifest = anyio.Path(out / "manifest.json")
    if not await manifest.exists():
        trajectories = await anyio.to_thread.run_sync(critic_trajectories, k, cfg)
        right = sum(t.correct for t in trajectories)
        if right == 0 or right == len(trajectories):
            return f"critics kept: {right} of {len(trajectories)} graded paths right, need both kinds"
        path = out / "trajectories.jsonl"
        lines = [json.dumps(asdict(t)) for t in trajectories]
        await anyio.to_thread.run_sync(write_lines_atomic, path, lines)
        verifier = cfg.critics == VERIFIER
        module = "finetune.verifier" if verifier else "finetune.critics"
        command = [sys.executable, "-m", module, "--trajectories", str(path), "--out", str(out)]
        command += ["--seed", str(cfg.seed)]
        if not verifier:
            command += ["--no-calibrate", "--max-steps", str(cfg.critic_steps), "--problems", "0"]
            command += ["--synthetic-problems", str(cfg.critic_synthetic_problems)]
            if cfg.base:
                command += ["--base", cfg.base]
        await _run_job(command, out, what="fitting the verifier" if verifier else "critic training")
    done = json.loads(await manifest.read_text())
    if "training" not in done:  # the verifier's manifest: one weights file for the three roles
        return {VERIFIER: (f"cycle_{k}_{VERIFIER}", out / "verifier.json")}
    # one adapter answers the three roles' questions; each role names it (served once per name)
    return {role: (f"cycle_{k}_{role}", out / done["training"][role]["served"]) for role in CRITIC_ROLES}
